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
import { createHasher, type DigestName, type Hasher } from '../digest/registry.js';
import type { StagedFile } from '../fs/staged-file.js';
import { isConnectionFailure, type Channel, type DataSink, type FloorWatch, type RateFloor } from '../protocol/channel.js';

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
  /** Called as bytes arrive, with the count so far (a resumed file's count starts at its offset). */
  onProgress?: ((bytesReceived: number) => void) | undefined;
  /** A resumed file: its data starts at `offset`, and `hasher` has hashed the bytes before it. */
  startAt?: { offset: number; hasher: Hasher } | undefined;
}

/** Where incoming data goes: a staged file, or a stream (a receiver writing to stdout). */
export interface ByteWriter {
  /** Writes all of `bytes` at `position` (a stream takes them in order: positions only grow). */
  writeAt(bytes: Buffer, position: number): Promise<void>;
  /** For messages about a failed write. */
  readonly finalPath: string;
  /** A cut transfer keeps what it wrote (a resumable staged file): its messages say so. */
  readonly resumable?: boolean;
}

/** A Writable as a ByteWriter: writes in order, each resolved once the stream has taken it. */
export function streamWriter(stream: NodeJS.WritableStream, label: string): ByteWriter {
  return {
    finalPath: label,
    writeAt: (bytes) => new Promise<void>((resolve, reject) => void stream.write(bytes, (error?: Error | null) => (error ? reject(error) : resolve()))),
  };
}

/**
 * One entry's data on its way in: taken from the channel in one piece (protocol 1) or in
 * several (the Data frames of protocol 2), hashed, and written through two buffers.
 */
export class IncomingData {
  readonly #writer: ByteWriter;
  readonly #filler: FileFiller;
  readonly #hash: Hasher;
  #received = 0;

  private constructor(writer: ByteWriter, hash: Hasher, bufferBytes: number, onProgress: ((bytesReceived: number) => void) | undefined, offset: number) {
    this.#writer = writer;
    this.#hash = hash;
    this.#received = offset;
    this.#filler = new FileFiller(writer, bufferBytes, offset, (bytes) => {
      hash.update(bytes);
      this.#received += bytes.length;
      onProgress?.(this.#received);
    });
  }

  /** `expectedBytes` sizes the buffers (a 4 KiB file needs no 4 MiB buffers); undefined for a stream. */
  static async open(writer: ByteWriter, algorithm: DigestName, expectedBytes: number | undefined, options: Pick<IncomingDataOptions, 'bufferBytes' | 'onProgress' | 'startAt'>): Promise<IncomingData> {
    const bufferBytes = options.bufferBytes ?? DEFAULT_FILE_BUFFER_BYTES;
    const offset = options.startAt?.offset ?? 0;
    const hash = options.startAt?.hasher ?? (await createHasher(algorithm));
    const toCome = expectedBytes === undefined ? bufferBytes : expectedBytes - offset;
    return new IncomingData(writer, hash, Math.max(1, Math.min(bufferBytes, toCome)), options.onProgress, offset);
  }

  get received(): number {
    return this.#received;
  }

  /** Takes exactly `length` more bytes from the channel. */
  async take(channel: Channel, length: number, floor?: RateFloor | FloorWatch): Promise<void> {
    try {
      await channel.readDataInto(length, this.#filler, floor);
    } catch (error) {
      await this.#filler.settle();
      throw describeFailure(error, channel, this.#writer);
    }
  }

  /** Writes what is buffered, waits for every write, and returns the digest of all that was taken. */
  async finish(channel: Channel): Promise<string> {
    try {
      await this.#filler.finish();
    } catch (error) {
      throw describeFailure(error, channel, this.#writer);
    }
    return this.#hash.digest();
  }

  /** After a failure: waits for writes in flight (before the staged file is discarded). */
  settle(): Promise<void> {
    return this.#filler.settle();
  }

  /** After a failure, for a file kept to resume: writes what is buffered too, and waits (a write failure only means less is kept). */
  async settleKeeping(): Promise<void> {
    await this.#filler.finish().catch(() => this.#filler.settle());
  }
}

/** Streams exactly `size` bytes from the channel into the staged file, hashing them (protocol 1). */
export async function receiveData(channel: Channel, size: number, algorithm: DigestName, staged: StagedFile, options: IncomingDataOptions): Promise<{ digest: string; received: number }> {
  const incoming = await IncomingData.open(staged, algorithm, size, options);
  await incoming.take(channel, size, options.floor);
  const digest = await incoming.finish(channel);
  return { digest, received: incoming.received };
}

/**
 * Two buffers the channel reads into, each written to the file at its position once
 * full. A buffer is handed out again only once its write has completed, so a read never
 * lands in bytes still on their way to the disk.
 */
class FileFiller implements DataSink {
  readonly #writer: ByteWriter;
  readonly #onBytes: (bytes: Buffer) => void;
  readonly #buffers: [Buffer, Buffer];
  /** The write in flight from each buffer, if any. */
  readonly #writing: [Promise<void> | undefined, Promise<void> | undefined] = [undefined, undefined];
  #current: 0 | 1 = 0;
  #filled = 0;
  /** File position of the current buffer's first byte. */
  #position = 0;
  #error: unknown;

  constructor(writer: ByteWriter, bufferBytes: number, position: number, onBytes: (bytes: Buffer) => void) {
    this.#writer = writer;
    this.#onBytes = onBytes;
    this.#position = position;
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
    const write = this.#writer.writeAt(bytes, this.#position).then(
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

/**
 * A write failure is ours to report (disk full); a read failure is the connection's, told
 * with ours: nothing is kept.
 */
function describeFailure(error: unknown, channel: Channel, writer: ByteWriter): FtxError {
  if (!isFtxError(error)) {
    const code = (error as NodeJS.ErrnoException | undefined)?.code;
    if (code && !isConnectionFailure(error)) return localIoError(error, 'write', writer.finalPath);
  }
  const failure = channel.explain(error);
  const fate = writer.resumable ? 'what arrived is kept, and sending again resumes from there' : 'the partial file was discarded';
  if (failure instanceof ConnectionLostError) return new ConnectionLostError(`${failure.message}; ${fate}`, { cause: failure });
  if (failure instanceof TimeoutError) return new TimeoutError(`${failure.message}; ${fate}`, { cause: failure, ...(failure.remedy ? { remedy: failure.remedy } : {}) });
  return failure;
}
