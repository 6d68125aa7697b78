/**
 * The receiving side of one connection (handleConnection), from greeting to receipt,
 * in either protocol. Who accepts connections and what ends the wait is decided
 * elsewhere: receive-one.ts (`ftx recv`) and serve.ts (`ftx recv --serve`).
 *
 * Data path: socket chunks -> digest -> a temporary file with a large write buffer
 * (pipeline gives backpressure both ways). The file gets its final name only after the
 * sender's digest matched and the data is fsync'd; then the receipt goes out.
 */
import { lstat, stat, statfs } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { basename, dirname, join } from 'node:path';
import type { Duplex } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Channel } from './channel.js';
import {
  ConnectionLostError,
  FtxError,
  IntegrityError,
  interruptionOf,
  localIoError,
  RefusedError,
  type RefusalReason,
} from './errors.js';
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
import { silentLog, type Log } from './log.js';
import { nudgeGarbageCollector } from './gc-nudge.js';
import { createHasher } from './hashing.js';
import { ctime, PROTOCOL_VERSION, type HashAlgorithm, type Header, type Ping, type Protocol } from './messages.js';
import { problemWithName } from './names.js';
import { remoteOf } from './net.js';
import { CLASSIC_ACK, readClassicSize } from './classic.js';
import { StagedFile, type ConflictPolicy } from './staged-file.js';
import { formatBytes } from './units.js';

/** After an error, how long to keep reading (and dropping) the peer's bytes so it can read ours. */
const LINGER_MS = 2_000;

export interface ReceiveOptions {
  /** A file path, or an existing folder where the file is stored under the sender's name. */
  target: string;
  /** What to do when the target name is taken: refuse the file, pick "name-N", or replace. */
  onConflict: ConflictPolicy;
  /** Give up on a connection after this long without traffic. */
  idleTimeoutMs: number;
  /** Refuse files larger than this many bytes. */
  maxSize?: number;
  /** How much a transfer buffers on its way to disk (see DEFAULT_WRITE_BUFFER_BYTES). */
  writeBufferBytes?: number;
  log?: Log;
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
  path: string;
  size: number;
  /** Free bytes in the target's file system (statfs), when known. */
  freeBytes: number | undefined;
}

export interface Refusal {
  reason: RefusalReason;
  message: string;
}

/**
 * Lets the caller decide, once a request passed the per-file checks, whether this
 * connection may take it now (one-shot: only one file; serve mode: a limit on
 * concurrent transfers, names in flight, space reserved by transfers in flight).
 */
export interface ConnectionPolicy {
  /** Returns why not, or undefined to go ahead; a claim is held until release(). */
  claim(request: TransferRequest): Refusal | undefined;
  release(request: TransferRequest): void;
}

const alwaysAccept: ConnectionPolicy = { claim: () => undefined, release: () => {} };

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
  const log = options.log ?? silentLog;
  let speaksClassic = false;
  channel.farewell = (error) => (speaksClassic ? classicErrorLine(error.message) : errorFrame(error));
  const onAbort = () => channel.hangUp(interruptionOf(options.signal));
  if (options.signal?.aborted) onAbort();
  else options.signal?.addEventListener('abort', onAbort, { once: true });
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
        await answerPing(channel, opening.ping);
        await lingerThenClose(channel);
        return { kind: 'ping', message: opening.ping.message };
      case 'classic': {
        speaksClassic = true;
        const result = await receiveClassicFile(channel, options, policy, peer, log);
        return { kind: 'file', result };
      }
      case 'header': {
        const result = await receiveFile(channel, opening.header, options, policy, peer, log);
        await lingerThenClose(channel);
        return { kind: 'file', result };
      }
      default:
        return opening satisfies never;
    }
  } catch (error) {
    const failure = error instanceof FtxError ? error : channel.describeStreamError(error);
    // A refusal has already been sent; everything else is told here, in the peer's protocol.
    if (!(failure instanceof RefusedError)) {
      if (speaksClassic) await channel.write(classicErrorLine(failure.message)).catch(() => {});
      else await sendError(channel, failure);
    }
    await lingerThenClose(channel);
    throw failure;
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
  }
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
): Promise<ReceiveResult> {
  const startedAt = performance.now();
  const refuse = async (reason: RefusalReason, message: string): Promise<never> => {
    await sendRefuse(channel, reason, message).catch(() => {});
    throw new RefusedError(reason, message);
  };
  const request = await decideTarget(header, options, policy, refuse);
  const path = request.path;
  let staged: StagedFile | undefined;
  try {
    staged = await StagedFile.create(path, header.mode);
    await sendAccept(channel);
    log.debug({ peer, name: header.name, size: header.size, path, temp: staged.tempPath }, 'accepted');
    options.onStart?.({ name: header.name, path, size: header.size, peer, protocol: 'ftx' });

    const { digest, received } = await writeData(channel, header.size, header.hash, staged, options);
    const trailer = await readTrailer(channel, header.size);
    if (trailer.hash !== header.hash || trailer.digest !== digest) {
      throw new IntegrityError(
        `the data received for ${basename(path)} does not match the sender's ${trailer.hash} (${trailer.digest.slice(0, 12)}… vs ${digest.slice(0, 12)}…); nothing was saved, send it again`,
      );
    }

    const file = staged;
    const stored = await withKeepAlives(channel, options.idleTimeoutMs, () =>
      file.commit(options.onConflict, header.mtime === undefined ? {} : { mtimeMs: header.mtime }),
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
 * A classic tutorial client: ASCII size, "ko", exactly that many bytes, close. It
 * sends no name and gets no receipt; the same temp-fsync-rename safety applies.
 */
async function receiveClassicFile(channel: Channel, options: ReceiveOptions, policy: ConnectionPolicy, peer: string, log: Log): Promise<ReceiveResult> {
  const startedAt = performance.now();
  const size = await readClassicSize(channel);
  // A classic client cannot read a refusal; it gets a line of text instead of "ko", then EOF.
  const refuse = async (reason: RefusalReason, message: string): Promise<never> => {
    await channel.write(classicErrorLine(message)).catch(() => {});
    throw new RefusedError(reason, message);
  };
  const name = classicFileName(new Date());
  const request = await decideTarget({ name, size }, options, policy, refuse);
  const path = request.path;
  let staged: StagedFile | undefined;
  try {
    staged = await StagedFile.create(path);
    await channel.write(Buffer.from(CLASSIC_ACK, 'latin1'));
    log.info({ peer, size, path }, `${peer} speaks the classic tutorial protocol: no name, no digest, no receipt`);
    options.onStart?.({ name: basename(path), path, size, peer, protocol: 'classic' });
    const { digest, received } = await writeData(channel, size, 'sha256', staged, options);
    const stored = await staged.commit(options.onConflict);
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
  return Buffer.from(`error: ${message}\n`, 'utf8');
}

/** Classic senders send no name; when storing into a folder, name the file by its arrival time. */
function classicFileName(now: Date): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z').replace('T', '-');
  return `classic-${stamp}.bin`;
}

/** Streams exactly `size` bytes from the channel into the staged file, hashing them. */
async function writeData(
  channel: Channel,
  size: number,
  algorithm: HashAlgorithm,
  staged: StagedFile,
  { onProgress, writeBufferBytes }: Pick<ReceiveOptions, 'onProgress' | 'writeBufferBytes'>,
): Promise<{ digest: string; received: number }> {
  const hash = await createHasher(algorithm);
  let received = 0;
  const hashAndCount = (chunk: Buffer) => {
    hash.update(chunk);
    nudgeGarbageCollector(chunk.length);
    received += chunk.length;
    onProgress?.(received);
  };
  await pipeline(channel.readData(size, hashAndCount), staged.createWriteStream(writeBufferBytes)).catch((error: unknown) => {
    throw describeWriteError(error, channel, staged);
  });
  return { digest: hash.digest(), received };
}

interface IncomingFile {
  name: string;
  size: number;
}

/**
 * Decides where the file goes and whether to take it; `refuse` tells the sender why
 * not (in its protocol) and throws. On success the policy's claim is held: the caller
 * must release it.
 */
async function decideTarget(
  incoming: IncomingFile,
  options: ReceiveOptions,
  policy: ConnectionPolicy,
  refuse: (reason: RefusalReason, message: string) => Promise<never>,
): Promise<TransferRequest> {
  const targetIsFolder = await isFolder(options.target);
  let path = options.target;
  if (targetIsFolder) {
    const problem = problemWithName(incoming.name);
    if (problem) await refuse('bad-name', `cannot store a file named ${JSON.stringify(incoming.name)}: ${problem}; send it with a plain name (ftx send --name)`);
    path = join(options.target, incoming.name);
  }

  if (options.maxSize !== undefined && incoming.size > options.maxSize) {
    await refuse('too-large', `${formatBytes(incoming.size)} is more than the ${formatBytes(options.maxSize)} this receiver takes (--max-size)`);
  }

  const existing = await lstat(path).catch(() => undefined);
  if (existing?.isDirectory()) await refuse('exists', `${path} is a folder on the receiver`);
  if (existing && options.onConflict === 'refuse') {
    await refuse('exists', `${path} already exists on the receiver; remove it, send under another name (--name), or run the receiver with --force`);
  }

  const freeBytes = await freeBytesIn(dirname(path));
  if (freeBytes !== undefined && incoming.size > freeBytes) {
    await refuse('no-space', `not enough free space for ${formatBytes(incoming.size)} on the receiver (${formatBytes(freeBytes)} free in ${dirname(path)})`);
  }

  const request: TransferRequest = { path, size: incoming.size, freeBytes };
  const refusal = policy.claim(request);
  if (refusal) await refuse(refusal.reason, refusal.message);
  return request;
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
  return channel.describeStreamError(error);
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
