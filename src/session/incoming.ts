/**
 * The receiver's data path: exactly the announced bytes, from the socket into two file
 * buffers (straight in where the transport allows, else one copy per chunk), hashed as
 * they arrive, each full buffer written at its position in the staged file while the
 * other fills. Reading pauses while both buffers wait for the disk, so memory is fixed
 * at two buffers whatever the file size, and TCP pushes back on a sender that outruns
 * the disk.
 *
 * Measured on the 2-core build machine (1 GiB, loopback, tmpfs): reading straight into
 * the buffers costs the receiver 1.1-1.2 CPU s/GiB with BLAKE3, as much as nc; taking
 * Node's 64 KiB chunks through a stream pipeline cost 1.8-2.7.
 */
import { ConnectionLostError, isFtxError, localIoError, TimeoutError, type FtxError } from '../errors.js';
import { createHasher, type DigestName } from '../digest/registry.js';
import type { StagedFile } from '../fs/staged-file.js';
import { isConnectionFailure, type Channel, type DataSink, type RateFloor } from '../protocol/channel.js';

/**
 * Each of the two file buffers, by default. 4 MiB: reads into it come in at whatever the
 * kernel has queued (0.5-1 MiB), and a write per 4 MiB keeps syscalls few; serve mode
 * asks for less, since it multiplies by the transfers in flight.
 */
export const DEFAULT_FILE_BUFFER_BYTES = 4 * 1024 * 1024;

export interface IncomingDataOptions {
  /** Size of each of the two file buffers (default DEFAULT_FILE_BUFFER_BYTES). */
  bufferBytes?: number | undefined;
  /** A floor under the sender's rate while the receiver waits on it; none when undefined. */
  floor?: RateFloor | undefined;
  /** Called as bytes arrive, with the count so far. */
  onProgress?: ((bytesReceived: number) => void) | undefined;
}

/** Streams exactly `size` bytes from the channel into the staged file, hashing them. */
export async function receiveData(channel: Channel, size: number, algorithm: DigestName, staged: StagedFile, options: IncomingDataOptions): Promise<{ digest: string; received: number }> {
  const hash = await createHasher(algorithm);
  let received = 0;
  const onProgress = options.onProgress;
  const filler = new FileFiller(staged, Math.min(options.bufferBytes ?? DEFAULT_FILE_BUFFER_BYTES, Math.max(size, 1)), (bytes) => {
    hash.update(bytes);
    received += bytes.length;
    onProgress?.(received);
  });
  try {
    await channel.readDataInto(size, filler, options.floor);
    await filler.finish();
  } catch (error) {
    await filler.settle();
    const failure = describeFailure(error, channel, staged);
    // The sender's side of the story, completed with ours: nothing is kept.
    if (failure instanceof ConnectionLostError) throw new ConnectionLostError(`${failure.message}; the partial file was discarded`, { cause: failure });
    if (failure instanceof TimeoutError) throw new TimeoutError(`${failure.message}; the partial file was discarded`, { cause: failure, ...(failure.remedy ? { remedy: failure.remedy } : {}) });
    throw failure;
  }
  return { digest: hash.digest(), received };
}

/**
 * Two buffers the channel reads into, each written to the file at its position once
 * full. A buffer is handed out again only once its write has completed, so a read never
 * lands in bytes still on their way to the disk.
 */
class FileFiller implements DataSink {
  readonly #staged: StagedFile;
  readonly #onBytes: (bytes: Buffer) => void;
  readonly #buffers: [Buffer, Buffer];
  /** The write in flight from each buffer, if any. */
  readonly #writing: [Promise<void> | undefined, Promise<void> | undefined] = [undefined, undefined];
  #current: 0 | 1 = 0;
  #filled = 0;
  /** File position of the current buffer's first byte. */
  #position = 0;
  #error: unknown;

  constructor(staged: StagedFile, bufferBytes: number, onBytes: (bytes: Buffer) => void) {
    this.#staged = staged;
    this.#onBytes = onBytes;
    this.#buffers = [Buffer.allocUnsafeSlow(bufferBytes), Buffer.allocUnsafeSlow(bufferBytes)];
  }

  region(limit: number): Buffer {
    const buffer = this.#buffers[this.#current];
    return buffer.subarray(this.#filled, this.#filled + Math.min(limit, buffer.length - this.#filled));
  }

  filled(bytes: Buffer): boolean {
    if (this.#error !== undefined) throw this.#error;
    this.#onBytes(bytes);
    this.#filled += bytes.length;
    if (this.#filled < this.#buffers[this.#current].length) return true;
    this.#flush();
    return this.#writing[this.#current] === undefined;
  }

  room(): Promise<void> {
    const pending = this.#writing[this.#current];
    if (this.#error !== undefined) return Promise.reject(this.#error);
    return pending ?? Promise.resolve();
  }

  /** Writes what the current buffer holds and waits for every write. */
  async finish(): Promise<void> {
    if (this.#filled > 0) {
      await this.room();
      this.#flush();
    }
    await Promise.all(this.#writing);
    if (this.#error !== undefined) throw this.#error;
  }

  /** Waits for writes in flight (after a failure: before the staged file is discarded). */
  async settle(): Promise<void> {
    await Promise.allSettled(this.#writing.filter((write): write is Promise<void> => write !== undefined));
  }

  /** Starts writing the current buffer, and moves on to the other. */
  #flush(): void {
    const slot = this.#current;
    const bytes = this.#buffers[slot].subarray(0, this.#filled);
    const write = this.#staged.writeAt(bytes, this.#position).then(
      () => {
        this.#writing[slot] = undefined;
      },
      (error: unknown) => {
        this.#error ??= error;
        this.#writing[slot] = undefined;
        throw error;
      },
    );
    write.catch(() => {}); // Reported through room(), filled() and finish().
    this.#writing[slot] = write;
    this.#position += this.#filled;
    this.#filled = 0;
    this.#current = slot === 0 ? 1 : 0;
  }
}

/** A write failure is ours to report (disk full); a read failure is the connection's. */
function describeFailure(error: unknown, channel: Channel, staged: StagedFile): FtxError {
  if (isFtxError(error)) return error;
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (code && !isConnectionFailure(error)) return localIoError(error, 'write', staged.finalPath);
  return channel.explain(error);
}
