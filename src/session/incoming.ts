/**
 * The receiver's data path: socket chunks -> digest -> a staged file with a large write
 * buffer (pipeline gives backpressure both ways), exactly the announced byte count.
 */
import { pipeline } from 'node:stream/promises';
import { ConnectionLostError, isFtxError, localIoError, TimeoutError, type FtxError } from '../errors.js';
import { createHasher, type DigestName } from '../digest/registry.js';
import type { StagedFile } from '../fs/staged-file.js';
import { isConnectionFailure, type Channel, type RateFloor } from '../protocol/channel.js';
import { nudgeGarbageCollector } from '../util/gc-nudge.js';

export interface IncomingDataOptions {
  /** How much the file writer buffers on its way to disk (see DEFAULT_WRITE_BUFFER_BYTES). */
  writeBufferBytes?: number | undefined;
  /** A floor under the sender's rate while the receiver waits on it; none when undefined. */
  floor?: RateFloor | undefined;
  /** Called as bytes arrive, with the count so far. */
  onProgress?: ((bytesReceived: number) => void) | undefined;
}

/** Runs of small chunks are copied into buffers of this size before they queue for the disk. */
const COALESCED_BYTES = 64 * 1024;
const SMALL_CHUNK_BYTES = 16 * 1024;

/** Streams exactly `size` bytes from the channel into the staged file, hashing them. */
export async function receiveData(channel: Channel, size: number, algorithm: DigestName, staged: StagedFile, options: IncomingDataOptions): Promise<{ digest: string; received: number }> {
  const hash = await createHasher(algorithm);
  let received = 0;
  const onProgress = options.onProgress;
  const hashAndCount = (chunk: Buffer) => {
    hash.update(chunk);
    nudgeGarbageCollector(chunk.length);
    received += chunk.length;
    onProgress?.(received);
  };
  await pipeline(coalesced(channel.readData(size, hashAndCount, options.floor)), staged.createWriteStream(options.writeBufferBytes)).catch((error: unknown) => {
    const failure = describeFailure(error, channel, staged);
    // The sender's side of the story, completed with ours: nothing is kept.
    if (failure instanceof ConnectionLostError) throw new ConnectionLostError(`${failure.message}; the partial file was discarded`, { cause: failure });
    if (failure instanceof TimeoutError) throw new TimeoutError(`${failure.message}; the partial file was discarded`, { cause: failure, ...(failure.remedy ? { remedy: failure.remedy } : {}) });
    throw failure;
  });
  return { digest: hash.digest(), received };
}

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

/** A write failure is ours to report (disk full); a read failure is the connection's. */
function describeFailure(error: unknown, channel: Channel, staged: StagedFile): FtxError {
  if (isFtxError(error)) return error;
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (code && !isConnectionFailure(error)) return localIoError(error, 'write', staged.finalPath);
  return channel.explain(error);
}
