/**
 * The sending side: open the file first (so a wrong path fails before any network
 * work), then greet, announce, stream, and wait for the receiver's receipt.
 *
 * Data path: file -> SHA-256 -> socket via pipeline (backpressure: the file is read
 * only as fast as the socket drains). Reads are 1 MiB: with the default 64 KiB the
 * thread-pool round trips, not the network, cap the rate. While data flows the
 * channel keeps reading, so an Error frame from the receiver (its disk is full)
 * stops the transfer at once and is what the user sees.
 */
import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { basename } from 'node:path';
import type { Duplex } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as delay } from 'node:timers/promises';
import { Channel } from './channel.js';
import { FtxError, IntegrityError, InterruptedError, LocalIoError, localIoError, ProtocolError } from './errors.js';
import { readDecision, readGreeting, readReceipt, sendHeader, sendTrailer } from './handshake.js';
import { silentLog, type Log } from './log.js';
import type { Greeting, Receipt } from './messages.js';
import { remoteOf } from './net.js';
import { problemWithName } from './names.js';

export const DEFAULT_IDLE_TIMEOUT_MS = 30_000;

const READ_CHUNK_BYTES = 1024 * 1024;

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

/** Opens and stats the file to send. The handle keeps size and content consistent. */
export async function openSource(path: string, nameOverride?: string): Promise<SourceFile> {
  const name = nameOverride ?? basename(path);
  const problem = problemWithName(name);
  if (problem) throw new LocalIoError(`cannot send under the name ${JSON.stringify(name)}: ${problem}; choose another with --name`);
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (error) {
    throw localIoError(error, 'read', path);
  }
  try {
    const stats = await handle.stat();
    if (stats.isDirectory()) throw localIoError(Object.assign(new Error('is a directory'), { code: 'EISDIR' }), 'send', path);
    if (!stats.isFile()) throw new LocalIoError(`cannot send ${path}: it is not a regular file (a device, pipe or socket)`);
    return { path, name, size: stats.size, mode: stats.mode & 0o7777, mtimeMs: stats.mtimeMs, handle };
  } catch (error) {
    await handle.close();
    throw error;
  }
}

export interface SendOptions {
  idleTimeoutMs: number;
  signal?: AbortSignal;
  log?: Log;
  /** Called once the receiver accepted, before the first data byte. */
  onStart?: (transfer: { size: number; greeting: Greeting }) => void;
  /** Called as bytes are read into the socket, with the count so far. */
  onProgress?: (bytesSent: number) => void;
}

export interface SendResult {
  /** The name the receiver stored the file under. */
  name: string;
  bytes: number;
  hash: 'sha256';
  digest: string;
  seconds: number;
  peer: string;
  /** True when the receiver confirmed bytes and digest (always, for ftx peers). */
  verified: boolean;
}

/** Runs the whole conversation over a connected stream. Does not close the file. */
export async function sendFile(stream: Duplex, source: SourceFile, options: SendOptions): Promise<SendResult> {
  const log = options.log ?? silentLog;
  const peer = 'remoteAddress' in stream ? remoteOf(stream as import('node:net').Socket) : 'stream';
  const channel = new Channel(stream, { idleTimeoutMs: options.idleTimeoutMs, peerRole: 'the receiver' });
  const onAbort = () => {
    const reason: unknown = options.signal?.reason;
    channel.destroy(reason instanceof InterruptedError ? reason : new InterruptedError('interrupted'));
  };
  if (options.signal?.aborted) onAbort();
  options.signal?.addEventListener('abort', onAbort, { once: true });
  const startedAt = performance.now();
  try {
    const greeting = await readGreeting(channel);
    log.debug({ peer, greeting }, 'greeted');
    await sendHeader(channel, { name: source.name, size: source.size, hash: 'sha256', mode: source.mode, mtime: source.mtimeMs });
    await readDecision(channel);
    options.onStart?.({ size: source.size, greeting });

    // From here the receiver may speak at any time (an Error frame), so listen now.
    const receipt = readReceipt(channel);
    receipt.catch(() => {}); // Observed below; this only stops an unhandled rejection.
    const { digest, bytesRead } = await streamData(channel, source, receipt, options);
    if (bytesRead !== source.size) {
      throw new LocalIoError(`${source.path} shrank while it was being sent (${bytesRead} of ${source.size} bytes); send it again when nothing writes to it`);
    }
    await sendTrailer(channel, { hash: 'sha256', digest });
    const confirmed = await receipt;
    checkReceipt(confirmed, source.size, digest);
    channel.end();
    return {
      name: confirmed.name,
      bytes: confirmed.bytes,
      hash: 'sha256',
      digest,
      seconds: (performance.now() - startedAt) / 1000,
      peer,
      verified: true,
    };
  } catch (error) {
    channel.destroy();
    if (options.signal?.aborted) throw new InterruptedError('interrupted; the receiver discards the partial file');
    throw error instanceof FtxError ? error : channel.describeStreamError(error);
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
  }
}

async function streamData(
  channel: Channel,
  source: SourceFile,
  receipt: Promise<Receipt>,
  options: SendOptions,
): Promise<{ digest: string; bytesRead: number }> {
  const hash = createHash('sha256');
  let bytesRead = 0;
  if (source.size === 0) return { digest: hash.digest('hex'), bytesRead };

  const stop = new AbortController();
  // If the receiver speaks up mid-transfer it is an error (or a premature receipt): stop reading.
  receipt.then(
    () => stop.abort(new ProtocolError('the receiver sent a receipt before the data was complete')),
    (error: unknown) => stop.abort(error),
  );
  const onProgress = options.onProgress;
  try {
    await pipeline(
      source.handle.createReadStream({ start: 0, end: source.size - 1, highWaterMark: READ_CHUNK_BYTES, autoClose: false }),
      async function* hashAndCount(chunks: AsyncIterable<Buffer>) {
        for await (const chunk of chunks) {
          hash.update(chunk);
          bytesRead += chunk.length;
          onProgress?.(bytesRead);
          yield chunk;
        }
      },
      channel.stream,
      { end: false, signal: stop.signal },
    );
  } catch (error) {
    if (stop.signal.aborted && stop.signal.reason instanceof FtxError) throw stop.signal.reason;
    if (options.signal?.aborted) throw new InterruptedError('interrupted');
    const code = (error as NodeJS.ErrnoException | undefined)?.code;
    const fromFile = code !== undefined && !code.startsWith('ERR_STREAM') && !['EPIPE', 'ECONNRESET'].includes(code);
    if (fromFile && !(error instanceof FtxError)) throw localIoError(error, 'read', source.path);
    // The connection broke: the receiver's Error frame, if it is on its way, says why.
    const explanation = await Promise.race([receipt.then(() => undefined, (reason: unknown) => reason), delay(EXPLANATION_WAIT_MS)]);
    if (explanation instanceof FtxError) throw explanation;
    throw error instanceof FtxError ? error : channel.describeStreamError(error);
  }
  return { digest: hash.digest('hex'), bytesRead };
}

function checkReceipt(receipt: Receipt, size: number, digest: string): void {
  if (receipt.bytes !== size || receipt.digest !== digest) {
    throw new IntegrityError(
      `the receiver stored ${receipt.bytes} bytes with ${receipt.hash} ${receipt.digest.slice(0, 12)}…, but ${size} bytes with ${digest.slice(0, 12)}… were sent; send it again`,
    );
  }
}
