/**
 * send(): one call sends one file and owns everything it opens (the file, the
 * connection), closing them whatever happens.
 */
import { DEFAULT_TIMEOUT_MS } from '../defaults.js';
import { DIGEST_NAMES, isDigestName, type DigestName } from '../digest/registry.js';
import { stat } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { LocalIoError, UsageError } from '../errors.js';
import { silentLog } from '../util/log.js';
import { guarded } from './callbacks.js';
import { keyFromCode, parseSenderKey } from '../transport/keys.js';
import { openSource } from '../fs/source.js';
import type { Protocol } from '../protocol/messages.js';
import { sendOverConnection, type SendPlan, type SentFile } from '../sender.js';
import type { OutgoingItem, SentEntry } from '../session/send-session.js';
import type { ResumeEvent } from '../session/receive-session.js';
import { SKIP_REASONS, walk, type TreeTotals, type WalkEntry, type WalkSkip } from '../fs/walk.js';
import { problemWithName } from '../fs/names.js';
import { connect, formatHostPort } from '../transport/tcp.js';
import type { Log } from '../util/log.js';
import { resolveDestination, validateTimeout, type Destination } from './options.js';

export interface SendOptions {
  /**
   * What to send: a file, a folder (recursively), or several of them in one session (each
   * lands under its own name on the receiver). Exactly one of `path`, `paths` and `stream`.
   */
  path?: string | undefined;
  paths?: readonly string[] | undefined;
  /** A stream of unknown size (a pipe: `pg_dump | ftx send -`), sent under `name`. Needs a receiver of ftx 0.2 or newer. */
  stream?: Readable | undefined;
  /** The receiver: "host", "host:port", "[ipv6]:port", or { host, port }. The port defaults to 9999. */
  to: Destination;
  /** Announce a single file or a stream under this name (default: the file's own base name; required for a stream). */
  name?: string | undefined;
  /** Folders: send what a symbolic link points to instead of skipping the link (default false). */
  followSymlinks?: boolean | undefined;
  /** The digest both ends compute and compare (default: BLAKE3, or SHA-256 for receivers that predate it). */
  hash?: DigestName | undefined;
  /** Give up when the receiver sends nothing for this long (TimeoutError), and when connecting takes this long (ConnectError), in ms (default 30000; 0: never). */
  timeoutMs?: number | undefined;
  /** Fail with UnverifiedError, before sending any data, if the receiver cannot confirm the file (a classic peer). */
  verifiedOnly?: boolean | undefined;
  /**
   * Prove this key to the receiver and send inside TLS 1.3: the text of the sender's key
   * file (one `IDENTITY:KEY` line, as generateKey makes it; readKeyFile reads one,
   * refusing a file others can read). A receiver without keys, or a classic one, is
   * refused with AuthError before anything is sent: never a silent downgrade.
   */
  key?: string | undefined;
  /** Prove the code a one-shot receiver printed instead (as `key`, derived from the code). Not with `key`. */
  code?: string | undefined;
  /**
   * Aborting stops the transfer (the receiver keeps a large file's part to resume, when
   * `resume` is on, else removes it). send() rejects with the abort reason when it is an
   * FtxError (an InterruptedError gains "; sending again resumes where it stopped", or
   * "; the receiver discards the partial file" without resume, once data may have moved),
   * else with an InterruptedError.
   */
  signal?: AbortSignal | undefined;
  /** Where diagnostic lines go (debug details, warnings such as an unverified classic receiver); none by default. */
  log?: Log | undefined;
  /** Called once the receiver accepted the file or session, before the first byte of data. `size`: the bytes to send, when known (0 for a folder or a stream). */
  onStart?: ((transfer: { size: number; protocol: Protocol; peer: string }) => void) | undefined;
  /** Called as data is read into the connection; `total` is 0 when not known (folders, streams: see `totals`). */
  onProgress?: ((progress: { bytes: number; total: number }) => void) | undefined;
  /** Folders and several files: each entry's outcome, as it is known (stored, refused, failed, or skipped here: a symbolic link, a device). */
  onEntry?: ((entry: SentEntry) => void) | undefined;
  /**
   * Totals announced to the receiver for a session, so both ends can show progress: what
   * countTree() returns for the same paths and followSymlinks can be passed as it is.
   */
  totals?: Pick<TreeTotals, 'files' | 'folders' | 'bytes'> | undefined;
  /**
   * Resume (default true): a receiver that kept part of a file from an earlier, cut
   * attempt continues it once both ends have shown they hold the same first bytes, and a
   * file it already has (same size and modification time) is skipped. False sends
   * everything whole. Needs a receiver of ftx 0.3 or newer; older ones get it whole.
   */
  resume?: boolean | undefined;
  /** A file the receiver offered to resume: resumed from `offset` (that many bytes not sent), or sent whole (`why`). */
  onResume?: ((event: ResumeEvent) => void) | undefined;
}

export interface SendResult extends SentFile {
  /** What was sent: the file, the paths joined by ", ", or "-" for a stream. */
  path: string;
}

/**
 * Sends and resolves once the receiver has confirmed everything: each file complete,
 * checked against its digest, and durable under its final name (`result.name` for one
 * file). Against a classic tutorial receiver, which confirms nothing, one file resolves
 * with `verified: false` (or fails with UnverifiedError when `verifiedOnly`). A session
 * in which some entries failed rejects with PartialError (which lists them); one of a
 * single entry, with that entry's error. Rejects with an FtxError.
 */
export async function send(options: SendOptions): Promise<SendResult> {
  const destination = resolveDestination(options.to);
  const timeoutMs = validateTimeout('timeoutMs', options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  if (options.hash !== undefined && !isDigestName(options.hash)) throw new UsageError(`hash must be one of ${DIGEST_NAMES.join(', ')}, not ${String(options.hash)}`);
  const what = [options.path, options.paths, options.stream].filter((given) => given !== undefined).length;
  if (what !== 1) throw new UsageError('send() needs exactly one of path, paths and stream');
  const paths = options.paths ?? (options.path === undefined ? [] : [options.path]);
  if (options.paths && paths.length === 0) throw new UsageError('paths is empty: give at least one file or folder to send');
  const log = options.log ?? silentLog;
  const onStart = guarded(log, 'onStart', options.onStart);
  const onProgress = guarded(log, 'onProgress', options.onProgress);
  const onEntry = guarded(log, 'onEntry', options.onEntry);
  if (options.key !== undefined && options.code !== undefined) throw new UsageError('give either key or code, not both');
  const key = options.key !== undefined ? parseSenderKey(options.key, 'the key') : options.code !== undefined ? await keyFromCode(options.code) : undefined;
  const plan = await planSend(options, paths);
  const total = plan.single?.size ?? options.totals?.bytes ?? 0;
  try {
    const socket = await connect(destination, { timeoutMs, signal: options.signal });
    const peer = formatHostPort(destination);
    options.log?.debug({ destination: peer }, 'connected');
    try {
      const sent = await sendOverConnection(socket, plan, {
        idleTimeoutMs: timeoutMs,
        hash: options.hash,
        verifiedOnly: options.verifiedOnly,
        key,
        signal: options.signal,
        log: options.log,
        onStart: ({ protocol }) => onStart?.({ size: total, protocol, peer }),
        onProgress: onProgress && ((bytes) => onProgress({ bytes, total })),
        onEntry,
        resume: options.resume,
        onResume: guarded(log, 'onResume', options.onResume),
      });
      return { ...sent, peer, path: options.stream ? '-' : paths.join(', ') };
    } finally {
      socket.destroy();
    }
  } finally {
    await plan.single?.handle.close();
  }
}

/**
 * One regular file is opened now (a receiver of protocol 1 can take it too); anything
 * else is a session only, walked as it is sent (fs/walk.ts checks the roots first).
 */
async function planSend(options: SendOptions, paths: readonly string[]): Promise<SendPlan> {
  if (options.stream) {
    const name = options.name;
    if (name === undefined || name === '') throw new UsageError('a stream needs a name to be stored under (name)');
    const problem = problemWithName(name);
    if (problem) throw new LocalIoError(`cannot send under the name ${JSON.stringify(name)}: ${problem}`, { remedy: 'rename' });
    const stream = options.stream;
    return { session: () => ({ entries: 1, bytes: null, items: streamItems(name, stream) }) };
  }
  const only = paths.length === 1 ? (paths[0] as string) : undefined;
  const isFile = only !== undefined && (await stat(only).then((stats) => stats.isFile(), () => false));
  if (options.name !== undefined && !isFile) {
    if (only === undefined) throw new UsageError('name renames a single file or a stream; several paths are sent under their own names');
    // Not a file: let openSource say what it is (missing, a folder, a pipe).
    if (!(await stat(only).then((stats) => stats.isDirectory(), () => false))) await openSource(only, options.name);
    throw new UsageError(`name renames a single file or a stream; the folder ${only} is sent under its own name`);
  }
  if (only !== undefined && isFile) {
    const single = await openSource(only, options.name);
    const item: OutgoingItem = { kind: 'file', path: single.name, absolute: single.path, size: single.size, mode: single.mode, mtimeMs: single.mtimeMs };
    return { single, session: () => ({ entries: 1, bytes: single.size, items: oneItem(item) }) };
  }
  const walked = walk(paths, { followSymlinks: options.followSymlinks === true });
  // The roots are checked before the first entry comes out: a missing one fails now.
  const first = await walked.next();
  return {
    session: () => ({
      entries: options.totals ? options.totals.files + options.totals.folders : null,
      bytes: options.totals?.bytes ?? null,
      items: walkItems(first, walked),
    }),
  };
}

async function* oneItem(item: OutgoingItem): AsyncGenerator<OutgoingItem> {
  yield item;
}

async function* streamItems(name: string, stream: Readable): AsyncGenerator<OutgoingItem> {
  yield { kind: 'stream', path: name, stream };
}

/** Skips that lose data (an unreadable file, a name that cannot be sent) count as failures; links and devices are only warnings. */
const HARMLESS_SKIPS = new Set<string>([SKIP_REASONS.symlink, SKIP_REASONS.brokenSymlink, SKIP_REASONS.fifo, SKIP_REASONS.device, SKIP_REASONS.socket, SKIP_REASONS.loop, SKIP_REASONS.vanished]);

async function* walkItems(first: IteratorResult<WalkEntry | WalkSkip>, rest: AsyncGenerator<WalkEntry | WalkSkip>): AsyncGenerator<OutgoingItem> {
  for (let next = first; !next.done; next = await rest.next()) {
    const found = next.value;
    if (found.kind === 'skipped') {
      const remedy = found.reason === SKIP_REASONS.symlink ? ('follow-symlinks' as const) : undefined;
      yield { kind: 'skipped', path: found.path, reason: found.reason, failed: !HARMLESS_SKIPS.has(found.reason), remedy };
    }
    else if (found.kind === 'dir') yield { kind: 'dir', path: found.path, absolute: found.absolute, mode: found.mode, mtimeMs: found.mtimeMs };
    else yield { kind: 'file', path: found.path, absolute: found.absolute, size: found.size, mode: found.mode, mtimeMs: found.mtimeMs };
  }
}
