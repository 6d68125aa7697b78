/**
 * Streams a file into a writable (the socket) through a small ring of reused buffers.
 *
 * Why not createReadStream + pipeline: a read stream allocates a fresh 1 MiB buffer per
 * read, and freed buffers pile up until the garbage collector notices them, which
 * put tens of MB on the sender's peak RSS. Here POOL_SIZE buffers are read into in
 * turn; a buffer is reused only after the socket's write callback said the kernel has
 * its bytes, so memory is fixed at POOL_SIZE * CHUNK_BYTES whatever the file size.
 * Reading the next buffer overlaps with the socket sending the previous ones.
 *
 * Reads are synchronous (readSync on the handle's descriptor): for a regular file they
 * come from the page cache or a short disk read, and skipping the thread-pool round trip
 * and its promise per MiB took the sender from 1.02-1.10 to 0.92-0.96 CPU s/GiB on the
 * build machine. The cost is that a slow disk blocks the event loop for the length of a
 * 1 MiB read; the sender has nothing else to do meanwhile.
 */
import { readSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import type { Writable } from 'node:stream';
import { localIoError } from '../errors.js';

/** Large reads: with 64 KiB reads, thread-pool round trips rather than the network cap the rate. */
export const CHUNK_BYTES = 1024 * 1024;
const POOL_SIZE = 4;

export interface PumpOptions {
  handle: FileHandle;
  /** For error messages. */
  path: string;
  /** The file's size: bytes are sent up to here; the file may hold more (it grew) but not fewer. */
  size: number;
  /** Where to start (a resumed transfer: the bytes the receiver has); default 0. */
  start?: number | undefined;
  destination: Writable;
  /** Sees every chunk, in order, before it is written (hashing, progress). */
  onChunk: (chunk: Buffer) => void;
  /** Aborting stops the loop; the reason is thrown. */
  signal?: AbortSignal;
  /**
   * Cut the data into frames of at most this many bytes, each preceded by
   * `frameHeader(length)`: protocol 2's Data frames.
   */
  frames?: { maxBytes: number; header: (length: number) => Buffer } | undefined;
  /** The ring's buffers, when the caller reuses them across files (a session): POOL_SIZE of CHUNK_BYTES. */
  buffers?: Buffer[] | undefined;
}

/** A ring of buffers for pumpFile, for a caller that sends many files. */
export function pumpBuffers(): Buffer[] {
  return Array.from({ length: POOL_SIZE }, () => Buffer.allocUnsafeSlow(CHUNK_BYTES));
}

/** Resolves with the position reached (less than `size` only if the file shrank). */
export async function pumpFile(options: PumpOptions): Promise<number> {
  const { handle, destination, signal } = options;
  const buffers = options.buffers ?? pumpBuffers();
  const frames = options.frames;
  const released: Array<Promise<void>> = buffers.map(() => Promise.resolve());
  let position = options.start ?? 0;
  /** Bytes the current Data frame still announces. */
  let frameLeft = 0;
  for (let slot = 0; position < options.size; slot = (slot + 1) % POOL_SIZE) {
    await released[slot];
    signal?.throwIfAborted();
    const buffer = buffers[slot] as Buffer;
    // A read never straddles two frames: each frame's bytes are exactly what it announced.
    const want = Math.min(CHUNK_BYTES, options.size - position, frames && frameLeft > 0 ? frameLeft : Number.POSITIVE_INFINITY);
    let bytesRead: number;
    try {
      bytesRead = readSync(handle.fd, buffer, 0, want, position);
    } catch (error) {
      throw localIoError(error, 'read', options.path);
    }
    if (bytesRead === 0) break; // The file shrank; the caller reports it.
    signal?.throwIfAborted();
    const chunk = buffer.subarray(0, bytesRead);
    if (frames && frameLeft === 0) {
      // A frame announced and then cut short by a shrinking file is reported as fatal by the caller.
      frameLeft = Math.min(frames.maxBytes, options.size - position);
      write(destination, frames.header(frameLeft)).catch(() => {});
    }
    if (frames) frameLeft -= bytesRead;
    position += bytesRead;
    options.onChunk(chunk);
    const written = write(destination, chunk);
    // Awaited when the slot comes round again; until then a failed write must not count
    // as an unhandled rejection (the loop may be waiting on a drain or a read).
    written.catch(() => {});
    released[slot] = written;
    if (destination.writableNeedDrain) await drained(destination);
  }
  await Promise.all(released);
  return position;
}

function write(destination: Writable, chunk: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    destination.write(chunk, (error) => (error ? reject(error) : resolve()));
  });
}

/** Resolves on 'drain'; rejects if the stream closes or fails first. Removes its listeners. */
function drained(stream: Writable): Promise<void> {
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      stream.removeListener('drain', onDrain);
      stream.removeListener('close', onClose);
      stream.removeListener('error', onError);
    };
    const onDrain = () => {
      cleanup();
      resolve();
    };
    const onClose = () => {
      cleanup();
      reject(Object.assign(new Error('the connection closed while sending'), { code: 'ERR_STREAM_PREMATURE_CLOSE' }));
    };
    const onError = (error: Error) => {
      cleanup();
      reject(error);
    };
    stream.on('drain', onDrain);
    stream.on('close', onClose);
    stream.on('error', onError);
  });
}
