/**
 * What receive() and serve() share before they take a connection: the options both
 * understand, checks of the target that fail before anything listens, and the clean-up
 * of temporary files that transfers cut short left behind.
 */
import { constants } from 'node:fs';
import { access, lstat, stat } from 'node:fs/promises';
import { dirname, resolve, sep } from 'node:path';
import { DEFAULT_HANDSHAKE_TIMEOUT_MS, DEFAULT_MIN_BYTES_PER_SECOND, DEFAULT_PARTIAL_MAX_AGE_MS, DEFAULT_PER_HOST_CONNECTIONS, DEFAULT_TIMEOUT_MS } from '../defaults.js';
import { LocalIoError, localIoError, RefusedError, UsageError } from '../errors.js';
import { CONFLICT_POLICIES, removeStaleLeftovers, type ConflictPolicy, type Leftover } from '../fs/staged-file.js';
import type { Socket } from 'node:net';
import type { ByteSource } from '../protocol/channel.js';
import type { ConnectionOptions } from '../receiver.js';
import type { ResumeEvent } from '../session/receive-session.js';
import { parseKeys } from '../transport/keys.js';
import { adoptForDirectReads } from '../transport/direct-reads.js';
import { silentLog, type Log } from '../util/log.js';
import { guarded } from './callbacks.js';
import { validateBytes, validateCount, validatePort, validateTimeout } from './options.js';

/** Options receive() and serve() share. */
export interface ReceivingOptions {
  /**
   * Take only senders that prove one of these keys: the text of a key file, one
   * `IDENTITY:KEY` line per sender as `ftx keygen` (generateKey) makes them. The
   * conversation then runs inside TLS 1.3 with the sender's pre-shared key; senders
   * without a key, with another one, or classic ones are refused (AuthError) before they
   * can name a file. Read a file with readKeyFile(), which refuses one others can read.
   */
  keys?: string | undefined;
  /** TCP port to listen on (default 9999; 0: any free port, see the handle's `port`). */
  port?: number | undefined;
  /** Address to listen on (default: every interface, IPv6 and IPv4). */
  host?: string | undefined;
  /** When the name is taken: 'refuse' the file (default), store it as "name-N" ('rename'), or replace ('overwrite'). */
  onConflict?: ConflictPolicy | undefined;
  /** Give up on a sender that sends nothing for this long, in ms (default 30000; 0: never). */
  timeoutMs?: number | undefined;
  /** Drop a connection that has not sent its header this long after connecting, in ms (default 5000; 0: never). */
  handshakeTimeoutMs?: number | undefined;
  /** Cut a transfer that brings less than this many bytes per second over a `timeoutMs` window (default 1024; 0: no floor; none either when `timeoutMs` is 0). */
  minBytesPerSecond?: number | undefined;
  /** Refuse files larger than this many bytes (default: no limit). */
  maxSize?: number | undefined;
  /** Accept names starting with a dot (.bashrc) into a target folder (default false: refused). */
  allowDotFiles?: boolean | undefined;
  /** Connections at once from one host, handshaking or transferring; an IPv6 /64 is one host (default 16). */
  perHostConnections?: number | undefined;
  /**
   * Partial files kept to resume cut transfers, and other temporary files, untouched this
   * long are removed (when receiving starts; hourly in serve mode) and never resumed, in
   * ms (default 7 days; 0: kept, and resumed whatever their age).
   */
  partialMaxAgeMs?: number | undefined;
  /** A file was offered the part of it kept from an earlier attempt: resumed from `offset`, or received whole (`why`). */
  onResume?: ((event: ResumeEvent & { peer: string }) => void) | undefined;
  /** A file was cut short; `bytes` of it are kept for the sender's next attempt to resume. */
  onPartialKept?: ((partial: { path: string; bytes: number; size: number; peer: string }) => void) | undefined;
  /** Aborting stops the receiver, as close() does. */
  signal?: AbortSignal | undefined;
  /** Where diagnostic lines go (debug details, warnings); none by default. */
  log?: Log | undefined;
  /** Temporary files found when receiving starts: those removed (older than `partialMaxAgeMs`) and those kept. */
  onLeftovers?: ((leftovers: { removed: Leftover[]; kept: Leftover[] }) => void) | undefined;
}

/** The callbacks about kept partials, for one connection from `peer` (guarded: a throwing callback is logged, not fatal). */
export function partialCallbacks(options: ReceivingOptions, peer: string, notify: (call: () => void) => void = (call) => call()): Pick<ConnectionOptions, 'onResume' | 'onPartialKept'> {
  const log = options.log ?? silentLog;
  const onResume = guarded(log, 'onResume', options.onResume);
  const onPartialKept = guarded(log, 'onPartialKept', options.onPartialKept);
  return {
    onResume: onResume && ((event) => notify(() => onResume({ ...event, peer }))),
    onPartialKept: onPartialKept && ((partial) => notify(() => onPartialKept({ ...partial, peer }))),
  };
}

/** The per-connection options a receiver's settings make, checked. */
export function connectionOptions(target: string, options: ReceivingOptions): Omit<ConnectionOptions, 'signal' | 'onOpened' | 'onStart' | 'onProgress' | 'onSession' | 'onEntry'> {
  if (options.port !== undefined) validatePort('port', options.port, true);
  if (options.onConflict !== undefined && !CONFLICT_POLICIES.includes(options.onConflict)) {
    throw new UsageError(`onConflict must be one of ${CONFLICT_POLICIES.join(', ')}, not ${String(options.onConflict)}`);
  }
  if (options.partialMaxAgeMs !== undefined) validateBytes('partialMaxAgeMs', options.partialMaxAgeMs);
  if (options.perHostConnections !== undefined) validateCount('perHostConnections', options.perHostConnections);
  if (options.maxSize !== undefined) validateBytes('maxSize', options.maxSize);
  return {
    target,
    onConflict: options.onConflict ?? 'refuse',
    idleTimeoutMs: validateTimeout('timeoutMs', options.timeoutMs ?? DEFAULT_TIMEOUT_MS),
    handshakeTimeoutMs: validateTimeout('handshakeTimeoutMs', options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS),
    minBytesPerSecond: validateBytes('minBytesPerSecond', options.minBytesPerSecond ?? DEFAULT_MIN_BYTES_PER_SECOND),
    allowDotFiles: options.allowDotFiles ?? false,
    maxSize: options.maxSize,
    partialMaxAgeMs: options.partialMaxAgeMs ?? DEFAULT_PARTIAL_MAX_AGE_MS,
    log: options.log,
    ...(options.keys !== undefined ? { auth: { keys: parseKeys(options.keys, 'the keys') } } : {}),
  };
}

export function perHostConnections(options: ReceivingOptions): number {
  return options.perHostConnections ?? DEFAULT_PER_HOST_CONNECTIONS;
}

/**
 * Fails before listening when the target cannot possibly work. A trailing slash says the
 * target is a folder (as it does to cp), which resolving the path would forget.
 * Returns the absolute target, and whether it is a folder.
 */
export async function checkTarget(typed: string, mayReplace: boolean): Promise<{ target: string; isFolder: boolean }> {
  const target = resolve(typed);
  const existing = await stat(target).catch(() => undefined);
  if (existing?.isDirectory()) {
    await requireWritable(target);
    return { target, isFolder: true };
  }
  if (typed.endsWith('/') || typed.endsWith(sep)) {
    if (existing) throw new LocalIoError(`cannot save into ${typed}: it is not a folder; drop the trailing slash to replace the file, or name a folder`);
    throw new LocalIoError(`cannot save into ${typed}: no such folder; create it first (mkdir -p ${typed}), or drop the trailing slash to save a file of that name`);
  }
  const folder = dirname(target);
  const parent = await stat(folder).catch((error: unknown) => {
    throw localIoError(error, 'save into', folder);
  });
  if (!parent.isDirectory()) throw new LocalIoError(`cannot save into ${folder}: it is not a folder`);
  await requireWritable(folder);
  const link = await lstat(target).catch(() => undefined);
  if (link && !mayReplace) throw new RefusedError('exists', `${target} already exists; remove it or choose another name`, { remedy: 'overwrite' });
  return { target, isFolder: false };
}

/**
 * An accepted connection, ready for receiveConnection: moved to a socket that reads into
 * the receiver's own buffers where that works, else as it is (its reads then start when
 * the channel first reads: the server pauses new connections).
 */
export function takeConnection(socket: Socket, encrypted = false): { socket: Socket; source?: ByteSource } {
  // TLS reads the socket itself: its bytes are records to decrypt, not data to place.
  if (encrypted) return { socket };
  return adoptForDirectReads(socket) ?? { socket };
}

/** Fails unless this process may create files in `folder`. */
export async function requireWritable(folder: string): Promise<void> {
  await access(folder, constants.W_OK).catch((error: unknown) => {
    throw localIoError(error, 'write into', folder);
  });
}

/**
 * Removes stale temporary files in `folder` (and, with `recursive`, the folders under it:
 * a serving receiver's folder is its own) and reports what it found.
 */
export async function sweepLeftovers(folder: string, options: ReceivingOptions, recursive = false): Promise<void> {
  const maxAgeMs = options.partialMaxAgeMs ?? DEFAULT_PARTIAL_MAX_AGE_MS;
  const found = await removeStaleLeftovers(folder, maxAgeMs > 0 ? maxAgeMs : Number.POSITIVE_INFINITY, { recursive });
  if (found.removed.length > 0 || found.kept.length > 0) guarded(options.log ?? silentLog, 'onLeftovers', options.onLeftovers)?.(found);
}
