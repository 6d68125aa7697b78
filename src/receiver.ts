/**
 * The receiving side of one connection (handleConnection), from greeting to receipt,
 * in either protocol. Who accepts connections and what ends the wait is decided
 * elsewhere: receive-one.ts (`ftx recv`) and serve.ts (`ftx recv --serve`).
 *
 * Data path: socket chunks -> digest -> a temporary file with a large write buffer
 * (pipeline gives backpressure both ways). The file gets its final name only after the
 * sender's digest matched and the data is fsync'd; then the receipt goes out.
 *
 * A connection is untrusted until its header is in, and bounded all along:
 * - before the header: a fixed deadline (dribbling does not extend it) and a frame
 *   limit that fits a header, so a connection costs at most a few KiB for a few seconds;
 * - after the Accept: the idle timeout, and a floor under the data rate, so a transfer
 *   that barely moves cannot hold a slot or a space reservation for long;
 * - every failure after the Accept is told to the sender in an Error frame, refusals
 *   included (the name was taken meanwhile), so it never sees a bare close.
 */
import { lstat, stat, statfs } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { basename, dirname, join } from 'node:path';
import type { Duplex } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Channel, type RateFloor } from './protocol/channel.js';
import {
  ConnectionLostError,
  FtxError,
  IntegrityError,
  interruptionOf,
  localIoError,
  RefusedError,
  TimeoutError,
  type RefusalReason,
} from './errors.js';
import { FrameType } from './framing.js';
import {
  errorFrame,
  readOpening,
  readTrailer,
  sendAccept,
  sendError,
  sendGreeting,
  sendKeepAlive,
  sendPong,
  sendReceipt,
  sendRefuse,
} from './handshake.js';
import { silentLog, type Log } from './util/log.js';
import { nudgeGarbageCollector } from './util/gc-nudge.js';
import { createHasher } from './digest/registry.js';
import { boundedText, ctime, jsonFrame, MAX_NAME_BYTES, PROTOCOL_NAME, PROTOCOL_VERSION, type HashAlgorithm, type Header, type Ping, type Protocol } from './protocol/messages.js';
import { canonicalName, isDotFile, problemWithName } from './fs/names.js';
import { remoteOf } from './transport/tcp.js';
import { CLASSIC_ACK, readClassicSize } from './protocol/classic.js';
import { isNameTaken, pickFreeName, StagedFile, type ConflictPolicy } from './fs/staged-file.js';
import { formatBytes } from './util/units.js';
import { SOFTWARE } from './util/version.js';

/** After an error, how long to keep reading (and dropping) the peer's bytes so it can read ours. */
const LINGER_MS = 2_000;

/**
 * From connect to a complete header (or ping, or classic size): a sender sends its
 * header the moment it reads the greeting, so one round trip is all it needs. Fixed,
 * not reset by traffic: a peer dribbling a byte every few seconds is cut all the same.
 */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 5_000;

/**
 * After the Accept, the sender must average at least this many bytes per second over
 * every idle-timeout window spent waiting for it (1 KiB/s: any real link does far more).
 */
export const DEFAULT_MIN_BYTES_PER_SECOND = 1024;

/**
 * The largest frame a sender ever sends: a header (a 255-byte name is at most ~1.5 KiB
 * of JSON even when every character is escaped), a trailer, or an Error (at most 1024
 * characters, ~6 KiB escaped). Nothing a sender says needs the protocol's 64 KiB.
 */
export const MAX_SENDER_FRAME_PAYLOAD = 8 * 1024;

/** Longest path the receiver will create (PATH_MAX is 4096 bytes, with its NUL). */
const MAX_PATH_BYTES = 4095;

/** How many times a name that was taken meanwhile is picked again (--on-conflict rename). */
const MAX_NAME_PICKS = 4;

export interface ReceiveOptions {
  /** A file path, or an existing folder where the file is stored under the sender's name. */
  target: string;
  /** What to do when the target name is taken: refuse the file, pick "name-N", or replace. */
  onConflict: ConflictPolicy;
  /** Give up on a connection after this long without traffic. */
  idleTimeoutMs: number;
  /** From connect to a complete header; 0 disables (default DEFAULT_HANDSHAKE_TIMEOUT_MS). */
  handshakeTimeoutMs?: number;
  /** Floor under the data rate after the Accept, bytes/s; 0 disables (default DEFAULT_MIN_BYTES_PER_SECOND). */
  minBytesPerSecond?: number;
  /** Store names starting with a dot (.bashrc) at the top of a target folder; refused by default. */
  allowDotFiles?: boolean;
  /** Refuse files larger than this many bytes. */
  maxSize?: number;
  /** How much a transfer buffers on its way to disk (see DEFAULT_WRITE_BUFFER_BYTES). */
  writeBufferBytes?: number;
  log?: Log;
  /** Called once the connection is past its handshake: a header, a ping or a classic size is in. */
  onOpened?: () => void;
  /** Called once a file is accepted, before its bytes arrive. */
  onStart?: (transfer: { name: string; path: string; size: number; peer: string; protocol: Protocol }) => void;
  /** Called as bytes arrive, with the count so far. */
  onProgress?: (bytesReceived: number) => void;
  /**
   * Aborting cuts the connection: the peer is told why (the abort reason, an
   * InterruptedError), and any partial file is removed before the handler settles.
   */
  signal?: AbortSignal;
}

export interface ReceiveResult {
  /** The classic protocol has no digest to check against: its transfers are unverified. */
  protocol: Protocol;
  path: string;
  bytes: number;
  hash: HashAlgorithm;
  digest: string;
  seconds: number;
  peer: string;
}

export type ConnectionOutcome =
  | { kind: 'file'; result: ReceiveResult }
  | { kind: 'ping'; message: string }
  | { kind: 'silent' };

/** A sender's request, once the receiver knows where the file would go. */
export interface TransferRequest {
  /** Where the file goes: the name the sender gave, or for 'rename' a free name picked before the Accept. */
  path: string;
  size: number;
  /** Free bytes in the target's file system (statfs), when known. */
  freeBytes: number | undefined;
  /** The sender's address, "host:port". */
  peer: string;
  /** Bytes of this transfer already on disk (statfs no longer counts them as free). */
  bytesWritten(): number;
}

export interface Refusal {
  reason: RefusalReason;
  message: string;
}

/**
 * Lets the caller decide, once a request passed the per-file checks, whether this
 * connection may take it now (one-shot: only one file; serve mode: limits on transfers
 * in flight, names in flight, space reserved by transfers in flight).
 */
export interface ConnectionPolicy {
  /** Returns why not, or undefined to go ahead; a claim is held until release(). */
  claim(request: TransferRequest): Refusal | undefined;
  release(request: TransferRequest): void;
  /** True when a transfer in flight is writing `path` (a renaming receiver picks past it). */
  isInFlight?(path: string): boolean;
}

const alwaysAccept: ConnectionPolicy = { claim: () => undefined, release: () => {} };

/** What one connection's conversation has reached, for what to tell the peer on failure. */
interface Progress {
  speaksClassic: boolean;
  /** A Refuse (or a classic error line) went out: nothing more to say. */
  refused: boolean;
}

/**
 * Runs one connection from greeting to receipt. Resolves with what the peer wanted;
 * rejects with an FtxError after telling the peer why and removing any partial file.
 */
export async function handleConnection(
  stream: Duplex,
  options: ReceiveOptions,
  policy: ConnectionPolicy = alwaysAccept,
): Promise<ConnectionOutcome> {
  const peer = isSocket(stream) ? remoteOf(stream) : 'stream';
  const channel = new Channel(stream, { idleTimeoutMs: options.idleTimeoutMs, peerRole: 'the sender' });
  channel.maxFramePayload = MAX_SENDER_FRAME_PAYLOAD;
  const log = options.log ?? silentLog;
  const progress: Progress = { speaksClassic: false, refused: false };
  channel.farewell = (error) => (progress.speaksClassic ? classicErrorLine(error.message) : errorFrame(error));
  // The reason says why we hang up (shutting down, dropped for a newer connection).
  const onAbort = () => {
    const reason: unknown = options.signal?.reason;
    channel.hangUp(reason instanceof FtxError ? reason : interruptionOf(options.signal));
  };
  if (options.signal?.aborted) onAbort();
  else options.signal?.addEventListener('abort', onAbort, { once: true });

  const handshakeMs = options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
  const deadline =
    handshakeMs > 0
      ? setTimeout(() => channel.hangUp(new TimeoutError(`the sender sent no complete header within ${handshakeMs / 1000} s of connecting`)), handshakeMs)
      : undefined;
  const opened = () => {
    clearTimeout(deadline);
    options.onOpened?.();
  };
  try {
    try {
      await sendGreeting(channel);
    } catch (error) {
      // Gone before our first byte reached it: a probe that resets at once.
      if (error instanceof ConnectionLostError) {
        channel.destroy();
        return { kind: 'silent' };
      }
      throw error;
    }
    const opening = await readOpening(channel);
    switch (opening.kind) {
      case 'silent':
        channel.destroy();
        return { kind: 'silent' };
      case 'ping':
        opened();
        await answerPing(channel, opening.ping);
        await lingerThenClose(channel);
        return { kind: 'ping', message: opening.ping.message };
      case 'classic': {
        progress.speaksClassic = true;
        const result = await receiveClassicFile(channel, options, policy, peer, log, progress, opened);
        return { kind: 'file', result };
      }
      case 'header': {
        opened();
        const result = await receiveFile(channel, opening.header, options, policy, peer, log, progress);
        await lingerThenClose(channel);
        return { kind: 'file', result };
      }
      default:
        return opening satisfies never;
    }
  } catch (error) {
    const failure = channel.explain(error);
    if (!progress.refused) {
      if (progress.speaksClassic) await channel.write(classicErrorLine(failure.message)).catch(() => {});
      else await sendError(channel, failure);
    }
    await lingerThenClose(channel);
    throw failure;
  } finally {
    clearTimeout(deadline);
    options.signal?.removeEventListener('abort', onAbort);
  }
}

/**
 * Turns a connection away before its conversation starts (too many from one address):
 * a greeting and a Refuse, so an ftx sender reports "busy" (exit 5) with the reason,
 * then the connection closes. Costs nothing to keep: no reads, closed within a second.
 */
export function refuseConnection(socket: Socket, reason: RefusalReason, message: string): void {
  socket.on('error', () => {});
  socket.setTimeout(0);
  const greeting = jsonFrame(FrameType.Greeting, { protocol: PROTOCOL_NAME, version: PROTOCOL_VERSION, software: SOFTWARE });
  socket.end(Buffer.concat([greeting, jsonFrame(FrameType.Refuse, { reason, message: boundedText(message) })]));
  setTimeout(() => socket.destroy(), 1_000).unref();
}

async function answerPing(channel: Channel, ping: Ping): Promise<void> {
  const now = new Date();
  await sendPong(channel, { reply: `[${ctime(now)}] ${ping.message}`, version: PROTOCOL_VERSION, time: now.toISOString() });
}

async function receiveFile(
  channel: Channel,
  header: Header,
  options: ReceiveOptions,
  policy: ConnectionPolicy,
  peer: string,
  log: Log,
  progress: Progress,
): Promise<ReceiveResult> {
  const startedAt = performance.now();
  const refuse = async (reason: RefusalReason, message: string): Promise<never> => {
    progress.refused = true;
    await sendRefuse(channel, reason, message).catch(() => {});
    throw new RefusedError(reason, message);
  };
  const request = await decideTarget(header, peer, options, policy, refuse);
  let staged: StagedFile | undefined;
  try {
    staged = await StagedFile.create(request.path, header.mode);
    const file = staged;
    request.bytesWritten = () => file.bytesWritten;
    await sendAccept(channel);
    log.debug({ peer, name: header.name, size: header.size, path: request.path, temp: staged.tempPath }, 'accepted');
    options.onStart?.({ name: header.name, path: request.path, size: header.size, peer, protocol: 'ftx' });

    const { digest, received } = await writeData(channel, header.size, header.hash, staged, options);
    const trailer = await readTrailer(channel, header.size);
    if (trailer.hash !== header.hash || trailer.digest !== digest) {
      throw new IntegrityError(
        `the data received for ${quoteName(header.name)} does not match the sender's ${trailer.hash} (${trailer.digest.slice(0, 12)}… vs ${digest.slice(0, 12)}…); nothing was saved, send it again`,
      );
    }

    const stored = await withKeepAlives(channel, options.idleTimeoutMs, () =>
      commit(file, request, header, options, policy),
    );
    // The file is complete, verified and durable: that is the receiver's verdict, whether or
    // not the receipt gets through (if it does not, the sender reports a lost connection).
    await sendReceipt(channel, { bytes: received, hash: header.hash, digest, name: basename(stored) }).catch((error: unknown) => {
      log.warn(
        { peer, path: stored, cause: String(error) },
        `stored ${stored}, but the receipt could not be sent (${channel.describeStreamError(error).message}); the sender will not know it arrived`,
      );
    });
    return { path: stored, bytes: received, hash: header.hash, digest, seconds: (performance.now() - startedAt) / 1000, peer, protocol: 'ftx' };
  } finally {
    await staged?.discard();
    policy.release(request);
  }
}

/**
 * Seals the data and gives it its final name. A name taken meanwhile (another program
 * created it) is never clobbered: under 'rename' another free name is picked, a few
 * times at most; under 'refuse' it is a refusal, told to the sender in an Error frame.
 */
async function commit(staged: StagedFile, request: TransferRequest, header: Header, options: ReceiveOptions, policy: ConnectionPolicy): Promise<string> {
  await staged.seal(header.mtime === undefined ? {} : { mtimeMs: header.mtime });
  let path = request.path;
  for (let pick = 1; ; pick++) {
    try {
      await staged.place(path, { replace: options.onConflict === 'overwrite' });
      return path;
    } catch (error) {
      if (!isNameTaken(error)) throw error;
      const again = options.onConflict === 'rename' && pick < MAX_NAME_PICKS ? await pickFreeName(request.path, (candidate) => candidate !== request.path && (policy.isInFlight?.(candidate) ?? false)) : undefined;
      if (!again) {
        throw new RefusedError(
          'exists',
          `a file named ${quoteName(basename(path))} appeared on the receiver while this one was being received; it was left untouched and this one was not stored`,
        );
      }
      path = again;
    }
  }
}

/**
 * A classic tutorial client: ASCII size, "ko", exactly that many bytes, close. It
 * sends no name and gets no receipt; the same temp-fsync-rename safety applies.
 */
async function receiveClassicFile(
  channel: Channel,
  options: ReceiveOptions,
  policy: ConnectionPolicy,
  peer: string,
  log: Log,
  progress: Progress,
  opened: () => void,
): Promise<ReceiveResult> {
  const startedAt = performance.now();
  const size = await readClassicSize(channel);
  opened();
  // A classic client cannot read a refusal; it gets a line of text instead of "ko", then EOF.
  const refuse = async (reason: RefusalReason, message: string): Promise<never> => {
    progress.refused = true;
    await channel.write(classicErrorLine(message)).catch(() => {});
    throw new RefusedError(reason, message);
  };
  const name = classicFileName(new Date());
  const request = await decideTarget({ name, size }, peer, options, policy, refuse);
  let staged: StagedFile | undefined;
  try {
    staged = await StagedFile.create(request.path);
    const file = staged;
    request.bytesWritten = () => file.bytesWritten;
    await channel.write(Buffer.from(CLASSIC_ACK, 'latin1'));
    log.info({ peer, size, path: request.path }, `${peer} speaks the classic tutorial protocol: no name, no digest, no receipt`);
    options.onStart?.({ name: basename(request.path), path: request.path, size, peer, protocol: 'classic' });
    const { digest, received } = await writeData(channel, size, 'sha256', staged, options);
    const stored = await commit(staged, request, { name, size, hash: 'sha256' }, options, policy);
    const extra = await lingerThenClose(channel);
    if (extra > 0) {
      log.warn({ peer, extra }, `the classic sender sent ${extra} bytes more than the ${size} it announced; kept the first ${size}`);
    }
    return { path: stored, bytes: received, hash: 'sha256', digest, seconds: (performance.now() - startedAt) / 1000, peer, protocol: 'classic' };
  } finally {
    await staged?.discard();
    policy.release(request);
  }
}

/** What a classic peer gets instead of a frame: one line of text. */
function classicErrorLine(message: string): Buffer {
  return Buffer.from(`error: ${message.replace(/[\r\n]+/g, ' ')}\n`, 'utf8');
}

/** Classic senders send no name; when storing into a folder, name the file by its arrival time. */
function classicFileName(now: Date): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z').replace('T', '-');
  return `classic-${stamp}.bin`;
}

/** Runs of small chunks are copied into buffers of this size before they queue for the disk. */
const COALESCED_BYTES = 64 * 1024;
const SMALL_CHUNK_BYTES = 16 * 1024;

/**
 * The chunks as they come, except that small ones are copied together first: a sender
 * that dribbles one byte per TCP segment would otherwise queue one Buffer object (a few
 * hundred bytes of RSS) per byte in the write buffer. Socket reads of normal size pass
 * through untouched.
 */
async function* coalesced(chunks: AsyncIterable<Buffer>): AsyncGenerator<Buffer, void, undefined> {
  let pending: Buffer | undefined;
  let filled = 0;
  for await (const chunk of chunks) {
    if (chunk.length >= SMALL_CHUNK_BYTES) {
      if (pending && filled > 0) yield pending.subarray(0, filled);
      pending = undefined;
      filled = 0;
      yield chunk;
      continue;
    }
    if (pending && filled + chunk.length > pending.length) {
      yield pending.subarray(0, filled);
      pending = undefined;
      filled = 0;
    }
    pending ??= Buffer.allocUnsafe(COALESCED_BYTES);
    chunk.copy(pending, filled);
    filled += chunk.length;
  }
  if (pending && filled > 0) yield pending.subarray(0, filled);
}

/** Streams exactly `size` bytes from the channel into the staged file, hashing them. */
async function writeData(
  channel: Channel,
  size: number,
  algorithm: HashAlgorithm,
  staged: StagedFile,
  options: Pick<ReceiveOptions, 'onProgress' | 'writeBufferBytes' | 'minBytesPerSecond' | 'idleTimeoutMs'>,
): Promise<{ digest: string; received: number }> {
  const hash = await createHasher(algorithm);
  let received = 0;
  const onProgress = options.onProgress;
  const hashAndCount = (chunk: Buffer) => {
    hash.update(chunk);
    nudgeGarbageCollector(chunk.length);
    received += chunk.length;
    onProgress?.(received);
  };
  const minRate = options.minBytesPerSecond ?? DEFAULT_MIN_BYTES_PER_SECOND;
  const floor: RateFloor | undefined = minRate > 0 && options.idleTimeoutMs > 0 ? { bytesPerSecond: minRate, windowMs: options.idleTimeoutMs } : undefined;
  await pipeline(coalesced(channel.readData(size, hashAndCount, floor)), staged.createWriteStream(options.writeBufferBytes)).catch((error: unknown) => {
    const failure = describeWriteError(error, channel, staged);
    // The sender's side of the story, completed with ours (nothing is kept).
    if (failure instanceof ConnectionLostError) throw new ConnectionLostError(`${failure.message}; the partial file was discarded`, { cause: failure });
    if (failure instanceof TimeoutError) throw new TimeoutError(`${failure.message}; the partial file was discarded`, { cause: failure });
    throw failure;
  });
  return { digest: hash.digest(), received };
}

interface IncomingFile {
  name: string;
  size: number;
}

/** A sender's name as messages quote it: JSON-escaped and cut short. */
function quoteName(name: string): string {
  return JSON.stringify(name.length > 80 ? `${name.slice(0, 80)}…` : name);
}

/**
 * Decides where the file goes and whether to take it; `refuse` tells the sender why
 * not (in its protocol) and throws. On success the policy's claim is held: the caller
 * must release it.
 *
 * Refusals say what the sender needs to know (the name it sent, the size that does not
 * fit), never the receiver's layout (its absolute paths, its free space).
 */
async function decideTarget(
  incoming: IncomingFile,
  peer: string,
  options: ReceiveOptions,
  policy: ConnectionPolicy,
  refuse: (reason: RefusalReason, message: string) => Promise<never>,
): Promise<TransferRequest> {
  const targetIsFolder = await isFolder(options.target);
  const quoted = quoteName(incoming.name);
  let path = options.target;
  if (targetIsFolder) {
    // NFC: a Mac's decomposed "café" and everyone else's composed one are one name (names.ts).
    const name = canonicalName(incoming.name);
    const problem = problemWithName(name);
    if (problem) await refuse('bad-name', `cannot store a file named ${quoted}: ${problem}; send it with a plain name (ftx send --name)`);
    if (isDotFile(name) && !options.allowDotFiles) {
      await refuse('bad-name', `cannot store ${quoted}: names starting with a dot (hidden files such as .bashrc) are refused unless the receiver allows them (--allow-dotfiles); send it with --name`);
    }
    path = join(options.target, name);
    if (Buffer.byteLength(path, 'utf8') > MAX_PATH_BYTES) await refuse('bad-name', `cannot store ${quoted}: the name is too long for the receiver's folder; send it with a shorter --name`);
  }
  const what = targetIsFolder ? `a file named ${quoted}` : "the receiver's target file";

  if (options.maxSize !== undefined && incoming.size > options.maxSize) {
    await refuse('too-large', `${formatBytes(incoming.size)} is more than the ${formatBytes(options.maxSize)} this receiver takes`);
  }

  const existing = await lstat(path).catch(() => undefined);
  if (existing?.isDirectory()) await refuse('exists', `${what} is a folder on the receiver; send under another name (--name)`);
  if (existing && options.onConflict === 'refuse') {
    await refuse('exists', `${what} already exists on the receiver; send under another name (--name), or ask for it to be removed`);
  }

  const freeBytes = await freeBytesIn(dirname(path));
  if (freeBytes !== undefined && incoming.size > freeBytes) {
    await refuse('no-space', `not enough free space on the receiver for ${formatBytes(incoming.size)}`);
  }

  // Under 'rename' the free name is chosen now, before the Accept, so a name that cannot
  // be had is a refusal the sender hears before it sends a byte.
  const wanted = path;
  for (let pick = 1; ; pick++) {
    if (options.onConflict === 'rename') {
      const free = await pickFreeName(wanted, (candidate) => policy.isInFlight?.(candidate) ?? false);
      if (!free) await refuse('exists', `${what} and too many numbered copies of it exist on the receiver`);
      path = free as string;
      if (Buffer.byteLength(basename(path), 'utf8') > MAX_NAME_BYTES) {
        await refuse('bad-name', `${what} exists on the receiver, and its numbered copy ${quoteName(basename(path))} would be longer than ${MAX_NAME_BYTES} bytes; send it with a shorter --name`);
      }
    }
    const request: TransferRequest = { path, size: incoming.size, freeBytes, peer, bytesWritten: () => 0 };
    const refusal = policy.claim(request);
    if (!refusal) return request;
    // Another transfer claimed the name we picked while we looked: pick again.
    if (refusal.reason === 'exists' && options.onConflict === 'rename' && pick < MAX_NAME_PICKS) continue;
    await refuse(refusal.reason, refusal.message);
  }
}

async function isFolder(path: string): Promise<boolean> {
  const stats = await lstat(path).catch(() => undefined);
  if (stats?.isSymbolicLink()) {
    // A target given by the user may be a link to a folder; follow it once, on purpose.
    return (await stat(path).catch(() => undefined))?.isDirectory() ?? false;
  }
  return stats?.isDirectory() ?? false;
}

async function freeBytesIn(folder: string): Promise<number | undefined> {
  try {
    const stats = await statfs(folder);
    return stats.bavail * stats.bsize;
  } catch {
    return undefined; // Not every file system answers; the write will tell.
  }
}

/** While the receiver is busy (fsync of a large file), keep the sender's idle timer from firing. */
async function withKeepAlives<T>(channel: Channel, idleTimeoutMs: number, work: () => Promise<T>): Promise<T> {
  const everyMs = Math.max(100, Math.min(5_000, idleTimeoutMs / 3 || 5_000));
  const timer = setInterval(() => sendKeepAlive(channel).catch(() => {}), everyMs);
  try {
    return await work();
  } finally {
    clearInterval(timer);
  }
}

/** A write failure is ours to report (disk full); a read failure is the connection's. */
function describeWriteError(error: unknown, channel: Channel, staged: StagedFile): FtxError {
  if (error instanceof FtxError) return error;
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (code && !code.startsWith('ERR_STREAM') && code !== 'ECONNRESET' && code !== 'EPIPE') {
    return localIoError(error, 'write', staged.finalPath);
  }
  return channel.explain(error);
}

/**
 * Ends our side, then reads and drops whatever the peer still sends until it closes
 * (or LINGER_MS passes): closing with unread bytes would send a reset, and the peer
 * could lose our last frame (the receipt or the error) with it. Returns how many bytes
 * were dropped (a classic sender's surplus).
 */
async function lingerThenClose(channel: Channel): Promise<number> {
  if (channel.stream.destroyed) return 0;
  channel.end();
  let dropped = 0;
  const timer = setTimeout(() => channel.destroy(), LINGER_MS);
  try {
    for (let chunk = await channel.readRaw(); chunk; chunk = await channel.readRaw()) dropped += chunk.length;
  } catch {
    // Closed under us: nothing left to wait for.
  } finally {
    clearTimeout(timer);
    channel.destroy();
  }
  return dropped;
}

function isSocket(stream: Duplex): stream is Socket {
  return 'remoteAddress' in stream;
}
