/**
 * The sending side: open the file first (so a wrong path fails before any network
 * work), then greet, announce, stream, and wait for the receiver's receipt.
 *
 * Data path: file -> digest -> socket through a fixed ring of 1 MiB buffers
 * (file-pump.ts: the file is read only as fast as the socket drains, and memory stays
 * flat whatever the file size). While data flows the channel keeps reading, so an
 * Error frame from the receiver (its disk is full) stops the transfer at once and is
 * what the user sees.
 */
import { constants, type Stats } from 'node:fs';
import { open, stat, type FileHandle } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { basename } from 'node:path';
import type { Duplex } from 'node:stream';
import { Channel } from './protocol/channel.js';
import { awaitClassicClose, classicAnnounce, readClassicGreeting } from './protocol/classic.js';
import {
  ConnectionLostError,
  FtxError,
  IntegrityError,
  InterruptedError,
  interruptionOf,
  LocalIoError,
  localIoError,
  ProtocolError,
  TimeoutError,
  UnverifiedError,
} from './errors.js';
import { pumpFile } from './fs/file-pump.js';
import { FrameType } from './framing.js';
import { errorFrame, readDecision, readGreeting, readReceipt, sendHeader, sendTrailer } from './handshake.js';
import type { Log } from './util/log.js';
import { createHasher } from './digest/registry.js';
import type { HashAlgorithm, Protocol, Receipt } from './protocol/messages.js';
import { remoteOf } from './transport/tcp.js';
import { problemWithName } from './fs/names.js';
import { formatProgress } from './util/units.js';

/** After the data pipe fails, how long to wait for the receiver's explanation. */
const EXPLANATION_WAIT_MS = 1_000;

export interface SourceFile {
  path: string;
  /** The name announced to the receiver. */
  name: string;
  size: number;
  mode: number;
  mtimeMs: number;
  handle: FileHandle;
}

/**
 * Opens and stats the file to send. The handle keeps size and content consistent.
 *
 * Only a regular file has a size to announce. Opening a FIFO for reading blocks until
 * a writer turns up (in a thread-pool thread that not even process.exit() can take
 * back), so the type is checked on the path first, the file is opened with O_NONBLOCK
 * in case it was swapped for a FIFO in between, and checked again on the handle.
 */
export async function openSource(path: string, nameOverride?: string): Promise<SourceFile> {
  const name = nameOverride ?? basename(path);
  const problem = problemWithName(name);
  if (problem) throw new LocalIoError(`cannot send under the name ${JSON.stringify(name)}: ${problem}; choose another with --name`);
  let handle: FileHandle;
  try {
    requireRegularFile(await stat(path), path);
    handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (error) {
    throw error instanceof LocalIoError ? error : localIoError(error, 'read', path);
  }
  try {
    const stats = await handle.stat();
    requireRegularFile(stats, path);
    return { path, name, size: stats.size, mode: stats.mode & 0o7777, mtimeMs: stats.mtimeMs, handle };
  } catch (error) {
    await handle.close();
    throw error;
  }
}

function requireRegularFile(stats: Stats, path: string): void {
  if (stats.isFile()) return;
  if (stats.isDirectory()) throw localIoError(Object.assign(new Error('is a directory'), { code: 'EISDIR' }), 'send', path);
  const kind = stats.isFIFO()
    ? 'a named pipe (FIFO)'
    : stats.isCharacterDevice()
      ? 'a character device'
      : stats.isBlockDevice()
        ? 'a block device'
        : stats.isSocket()
          ? 'a socket'
          : 'not a regular file';
  throw new LocalIoError(`cannot send ${path}: it is ${kind}, and ftx sends regular files, whose size it announces first; copy the data into a file and send that`);
}

export interface SendOptions {
  idleTimeoutMs: number;
  /** Digest both ends compute; sha256 unless asked (classic transfers always use sha256 locally). */
  hash?: HashAlgorithm;
  /** Fail, before sending any data, if the receiver cannot confirm the file (a classic peer). */
  verifiedOnly?: boolean;
  signal?: AbortSignal;
  log?: Log;
  /** Called once the receiver accepted, before the first data byte. */
  onStart?: (transfer: { size: number; protocol: Protocol }) => void;
  /** Called as bytes are read into the socket, with the count so far. */
  onProgress?: (bytesSent: number) => void;
}

export interface SendResult {
  protocol: Protocol;
  /** The name the receiver stored the file under (classic receivers do not say: the name sent). */
  name: string;
  bytes: number;
  hash: HashAlgorithm;
  digest: string;
  seconds: number;
  peer: string;
  /** True when the receiver confirmed bytes and digest; false for classic receivers. */
  verified: boolean;
}

/**
 * Runs the whole conversation over a connected stream, in whichever protocol the
 * receiver's greeting shows it speaks. Does not close the file.
 */
export async function sendFile(stream: Duplex, source: SourceFile, options: SendOptions): Promise<SendResult> {
  const peer = 'remoteAddress' in stream ? remoteOf(stream as Socket) : 'stream';
  const channel = new Channel(stream, { idleTimeoutMs: options.idleTimeoutMs, peerRole: 'the receiver' });
  channel.farewell = errorFrame;
  // Destroy, not hangUp: mid-data, an Error frame would be taken for file bytes.
  const onAbort = () => channel.destroy(interruptionOf(options.signal));
  if (options.signal?.aborted) onAbort();
  options.signal?.addEventListener('abort', onAbort, { once: true });
  const startedAt = performance.now();
  try {
    const first = await channel.peekByte().catch((error: unknown) => {
      if (error instanceof TimeoutError) {
        throw new TimeoutError(
          `${peer} accepted the connection but sent no greeting within ${options.idleTimeoutMs / 1000} s: is \`ftx recv\` listening there, or another service on that port?`,
          { cause: error },
        );
      }
      throw error;
    });
    if (first === null) throw new ConnectionLostError(`${peer} closed the connection without a greeting: is \`ftx recv\` listening there, or another service on that port?`);
    const sent = first === FrameType.Greeting
      ? await sendOverFtx(channel, source, options, peer)
      : await sendOverClassic(channel, source, options, peer);
    return { ...sent, seconds: (performance.now() - startedAt) / 1000, peer };
  } catch (error) {
    channel.destroy();
    if (options.signal?.aborted) {
      // Say which signal: "stopped by SIGHUP (the terminal closed...)" tells more than "interrupted".
      const interruption = interruptionOf(options.signal);
      throw new InterruptedError(`${interruption.message}; the receiver discards the partial file`, interruption.signal);
    }
    throw error instanceof FtxError ? error : channel.describeStreamError(error);
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
  }
}

type Sent = Omit<SendResult, 'seconds' | 'peer'>;

async function sendOverFtx(channel: Channel, source: SourceFile, options: SendOptions, peer: string): Promise<Sent> {
  const greeting = await readGreeting(channel);
  options.log?.debug({ peer, greeting }, 'greeted');
  const algorithm = options.hash ?? 'sha256';
  await sendHeader(channel, { name: source.name, size: source.size, hash: algorithm, mode: source.mode, mtime: source.mtimeMs });
  await readDecision(channel);
  options.onStart?.({ size: source.size, protocol: 'ftx' });

  // From here the receiver may speak at any time (an Error frame), so listen now.
  const receipt = readReceipt(channel);
  receipt.catch(() => {}); // Observed below; this only stops an unhandled rejection.
  const digest = await streamData(channel, source, algorithm, receipt, options);
  await sendTrailer(channel, { hash: algorithm, digest });
  const confirmed = await receipt;
  checkReceipt(confirmed, source.size, algorithm, digest);
  channel.end();
  return { protocol: 'ftx', name: confirmed.name, bytes: confirmed.bytes, hash: algorithm, digest, verified: true };
}

/**
 * The classic tutorial server: its greeting is free text, it wants the size as ASCII
 * digits, answers "ko", and closes once it has read the data. It sends no receipt, so
 * success here means "delivered and the server closed", not "verified".
 */
async function sendOverClassic(channel: Channel, source: SourceFile, options: SendOptions, peer: string): Promise<Sent> {
  const greeting = await readClassicGreeting(channel);
  const quoted = JSON.stringify(greeting.trim().slice(0, 80));
  if (options.verifiedOnly) {
    throw new UnverifiedError(
      `${peer} speaks the classic tutorial protocol (it greeted ${quoted}), which confirms nothing; nothing was sent because of --verified-only`,
    );
  }
  options.log?.warn(
    { peer, greeting },
    `${peer} speaks the classic tutorial protocol (it greeted ${quoted}): delivery will not be verified (use --verified-only to refuse such receivers)`,
  );
  await classicAnnounce(channel, source.size);
  options.onStart?.({ size: source.size, protocol: 'classic' });
  const digest = await streamData(channel, source, 'sha256', undefined, options);
  channel.end();
  await awaitClassicClose(channel);
  return { protocol: 'classic', name: source.name, bytes: source.size, hash: 'sha256', digest, verified: false };
}

/**
 * Streams exactly the file's size into the channel and returns the digest of what was
 * read. `peerVerdict`, when given, is a read that settles if the receiver speaks up
 * mid-transfer: an Error frame stops the data at once and becomes the error thrown.
 */
async function streamData(
  channel: Channel,
  source: SourceFile,
  algorithm: HashAlgorithm,
  peerVerdict: Promise<unknown> | undefined,
  options: SendOptions,
): Promise<string> {
  const hash = await createHasher(algorithm);
  let bytesRead = 0;
  if (source.size > 0) {
    const stop = new AbortController();
    peerVerdict?.then(
      () => stop.abort(new ProtocolError('the receiver sent a receipt before the data was complete')),
      (error: unknown) => stop.abort(error),
    );
    // Stopping cuts the connection, which unblocks any write or drain being awaited.
    stop.signal.addEventListener('abort', () => channel.destroy(), { once: true });
    const onProgress = options.onProgress;
    let sent = 0;
    try {
      bytesRead = await pumpFile({
        handle: source.handle,
        path: source.path,
        size: source.size,
        destination: channel.stream,
        signal: stop.signal,
        onChunk: (chunk) => {
          hash.update(chunk);
          sent += chunk.length;
          onProgress?.(sent);
        },
      });
    } catch (error) {
      if (stop.signal.aborted && stop.signal.reason instanceof FtxError) throw lostMidTransfer(stop.signal.reason, channel, sent, source.size);
      if (options.signal?.aborted) throw new InterruptedError('interrupted');
      if (error instanceof LocalIoError) throw error; // Reading our own file failed.
      // The connection broke: the receiver's Error frame, if it is on its way, says why.
      if (peerVerdict) {
        const explanation = await settledWithin(peerVerdict.then(() => undefined, (reason: unknown) => reason), EXPLANATION_WAIT_MS);
        if (explanation instanceof FtxError) throw lostMidTransfer(explanation, channel, sent, source.size);
      }
      throw lostMidTransfer(error instanceof FtxError ? error : channel.describeStreamError(error), channel, sent, source.size);
    }
  }
  if (bytesRead !== source.size) {
    throw new LocalIoError(`${source.path} shrank while it was being sent (${bytesRead} of ${source.size} bytes); send it again when nothing writes to it`);
  }
  return hash.digest();
}

/** What `promise` resolves to, or undefined once `ms` have passed; the timer never outlives the wait. */
async function settledWithin<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeUp = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  try {
    return await Promise.race([promise, timeUp]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A connection lost while data flowed, told as such: "the receiver reset the connection
 * mid-transfer, after 120.0 MiB of 200.0 MiB (60%)". Without this the user reads what
 * the stalled read said ("closed the connection while ftx waited for a receipt"), as
 * if all the data had gone. What the receiver itself reported (an Error frame, turned
 * into a ConnectionLostError for an interruption) is its own explanation and kept.
 */
function lostMidTransfer(error: FtxError, channel: Channel, sentBytes: number, size: number): FtxError {
  // handshake.ts's errorFromPeer prefixes what the peer said with "<role> reports:".
  if (!(error instanceof ConnectionLostError) || error.message.startsWith(`${channel.peerRole} reports:`)) return error;
  const code = (error.cause as NodeJS.ErrnoException | undefined)?.code;
  const how = code === 'ECONNRESET' ? 'reset' : 'closed';
  return new ConnectionLostError(
    `${channel.peerRole} ${how} the connection mid-transfer, after ${formatProgress(sentBytes, size)} had been sent (was it stopped, or did it crash?); send the file again once it is back`,
    { cause: error },
  );
}

function checkReceipt(receipt: Receipt, size: number, algorithm: HashAlgorithm, digest: string): void {
  if (receipt.bytes !== size || receipt.hash !== algorithm || receipt.digest !== digest) {
    throw new IntegrityError(
      `the receiver stored ${receipt.bytes} bytes with ${receipt.hash} ${receipt.digest.slice(0, 12)}…, but ${size} bytes with ${digest.slice(0, 12)}… were sent; send it again`,
    );
  }
}
