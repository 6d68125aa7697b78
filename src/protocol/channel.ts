/**
 * A pull-based view of one connection: read a control frame, read exactly N raw data
 * bytes, write with backpressure. Works over any Duplex, so tests can drive the
 * conversation without TCP.
 *
 * Reading pulls chunks from the stream's async iterator only when a caller asks, so
 * an unread socket stops being read from the kernel and TCP pushes back on the peer.
 * Bytes that arrive glued to a frame (the data after a header, a trailer right after
 * the data) stay in the decoder until the next read asks for them.
 */
import type { Duplex } from 'node:stream';
import { Socket } from 'node:net';
import { ConnectionLostError, FtxError, InternalError, TimeoutError } from '../errors.js';
import { FrameDecoder, type Frame } from '../framing.js';
import { formatBytes } from '../util/units.js';

export interface ChannelOptions {
  /** Destroy the connection after this long without any traffic; 0 disables. */
  idleTimeoutMs?: number;
  /** Who is at the other end, for messages ("the receiver", "the sender"). */
  peerRole?: string;
}

/**
 * A floor under the data rate while readData() waits on the peer: over every stretch of
 * `windowMs` spent waiting for its bytes, the peer must deliver at least
 * `bytesPerSecond`. Time the reader spends elsewhere (its own disk pushing back) does not
 * count, so only a slow peer is cut, never a slow receiver.
 */
export interface RateFloor {
  bytesPerSecond: number;
  windowMs: number;
}

/** Codes node:net uses when the other end vanished rather than closed politely. */
const LOST_CONNECTION_CODES = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED', 'ERR_STREAM_PREMATURE_CLOSE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ERR_STREAM_DESTROYED']);

export class Channel {
  readonly stream: Duplex;
  readonly peerRole: string;
  /**
   * Last words on a timeout: the bytes that tell the peer why we hang up (an Error
   * frame, or a text line for a classic peer). Written just before the socket closes.
   */
  farewell: ((error: FtxError) => Buffer) | undefined;
  readonly #decoder = new FrameDecoder();
  readonly #chunks: AsyncIterator<Buffer>;
  #ended = false;
  #filling: Promise<boolean> | undefined;

  constructor(stream: Duplex, options: ChannelOptions = {}) {
    this.stream = stream;
    this.peerRole = options.peerRole ?? 'the peer';
    this.#chunks = stream[Symbol.asyncIterator]();
    // Errors reach callers through reads and write callbacks. Without a listener, one
    // emitted before the first read (a reset right after connect) would crash the process.
    stream.on('error', () => {});
    this.setIdleTimeout(options.idleTimeoutMs ?? 0);
  }

  /** (Re)arms the idle timer; only real sockets have one. */
  setIdleTimeout(ms: number): void {
    if (!(this.stream instanceof Socket)) return;
    const socket = this.stream;
    socket.setTimeout(ms);
    socket.removeAllListeners('timeout');
    if (ms > 0) {
      socket.once('timeout', () => {
        const error = new TimeoutError(
          `${this.peerRole} sent nothing for ${ms / 1000} s; it may have crashed or the network is down (raise --timeout for slow links)`,
        );
        // Everything sent to us was read (we were idle), so closing sends FIN, not RST,
        // and the peer gets to read this before it sees the end.
        this.hangUp(error);
      });
    }
  }

  /**
   * The next control frame, or null when the peer closed cleanly between frames.
   * EOF in the middle of a frame is a ConnectionLostError.
   */
  async readFrame(): Promise<Frame | null> {
    for (;;) {
      const frame = this.#decoder.shift();
      if (frame) return frame;
      if (!(await this.#fill())) {
        if (this.#decoder.bufferedBytes > 0) {
          throw new ConnectionLostError(`${this.peerRole} closed the connection in the middle of a message`);
        }
        return null;
      }
    }
  }

  /**
   * Waits for at least one unread byte and returns it without consuming it; null if the
   * peer closed without sending anything.
   */
  async peekByte(): Promise<number | null> {
    while (this.#decoder.bufferedBytes === 0) {
      if (!(await this.#fill())) return null;
    }
    return this.#decoder.peekByte() as number;
  }

  /**
   * Waits up to `ms` for unread bytes: 'data' if some are buffered, 'eof' if the peer
   * closed, 'quiet' if nothing came in time. A read still pending when time runs out
   * is not lost: the next read picks it up.
   */
  async waitForBytes(ms: number): Promise<'data' | 'eof' | 'quiet'> {
    if (this.#decoder.bufferedBytes > 0) return 'data';
    let timer: NodeJS.Timeout | undefined;
    const quiet = new Promise<'quiet'>((resolve) => {
      timer = setTimeout(() => resolve('quiet'), ms);
    });
    try {
      return await Promise.race([this.#fill().then((more) => (more ? 'data' : 'eof')), quiet]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * The next raw bytes as they come (buffered bytes first), or null at EOF. For
   * unframed data and for protocols without frames (the classic one).
   */
  async readRaw(): Promise<Buffer | null> {
    if (this.#decoder.bufferedBytes === 0 && !(await this.#fill())) return null;
    const [first, ...rest] = this.#decoder.takeRemainder();
    for (const chunk of rest) this.#decoder.append(chunk);
    return first ?? null;
  }

  /** Largest control frame accepted from the peer from now on (see FrameDecoder). */
  set maxFramePayload(bytes: number) {
    this.#decoder.maxPayload = bytes;
  }

  /** Puts bytes back in front of whatever is buffered. */
  unread(chunk: Buffer): void {
    this.#decoder.prepend(chunk);
  }

  /**
   * Yields exactly `byteCount` raw bytes, then stops; bytes beyond them stay buffered
   * for the next readFrame(). Throws ConnectionLostError if the peer closes early, and
   * TimeoutError if it falls below `floor`.
   * `onChunk` sees each chunk before it is yielded (hashing without another stage).
   */
  async *readData(byteCount: number, onChunk?: (chunk: Buffer) => void, floor?: RateFloor): AsyncGenerator<Buffer, void, undefined> {
    let remaining = byteCount;
    let waitedMs = 0;
    let bytesInWindow = 0;
    while (remaining > 0) {
      const waitStarted = floor ? performance.now() : 0;
      let chunk = await this.readRaw();
      if (!chunk) {
        const received = byteCount - remaining;
        throw new ConnectionLostError(
          `${this.peerRole} closed the connection after ${formatBytes(received)} of ${formatBytes(byteCount)} (${Math.floor((100 * received) / byteCount)}%)`,
        );
      }
      if (chunk.length > remaining) {
        this.unread(chunk.subarray(remaining));
        chunk = chunk.subarray(0, remaining);
      }
      remaining -= chunk.length;
      if (floor) {
        waitedMs += performance.now() - waitStarted;
        bytesInWindow += chunk.length;
        if (waitedMs >= floor.windowMs) {
          if (bytesInWindow < (floor.bytesPerSecond * waitedMs) / 1000) {
            throw new TimeoutError(
              `${this.peerRole} sent only ${formatBytes(bytesInWindow)} in ${Math.round(waitedMs / 1000)} s, below the minimum rate of ${formatBytes(floor.bytesPerSecond)}/s; the link is too slow or the peer stalled`,
            );
          }
          waitedMs = 0;
          bytesInWindow = 0;
        }
      }
      onChunk?.(chunk);
      yield chunk;
    }
  }

  /** Writes bytes and resolves once they are handed to the kernel. */
  write(bytes: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      this.stream.write(bytes, (error) => (error ? reject(this.describeStreamError(error)) : resolve()));
    });
  }

  /** Half-closes: no more writes from this side. */
  end(): void {
    if (!this.stream.writableEnded) this.stream.end();
  }

  /**
   * Ends the connection now, saying why first (see farewell); pending reads and writes
   * fail with `error`. Best effort: if bytes from the peer are still unread, the close
   * is a reset and the peer may not get to read the farewell.
   */
  hangUp(error: FtxError): void {
    if (this.farewell && this.stream.writable && !this.stream.destroyed) this.stream.write(this.farewell(error));
    this.destroy(error);
  }

  destroy(error?: Error): void {
    this.setIdleTimeout(0);
    this.stream.destroy(error);
  }

  /**
   * Any error caught around a conversation, as an FtxError: ours as they are, the
   * stream's (they carry a code: ECONNRESET, ERR_STREAM_...) as a lost connection, and
   * anything else as what it is, a bug (exit 1), never disguised as a network fault.
   */
  explain(error: unknown): FtxError {
    if (error instanceof FtxError) return error;
    if (typeof (error as NodeJS.ErrnoException | undefined)?.code === 'string') return this.describeStreamError(error);
    const detail = error instanceof Error ? error.message : String(error);
    return new InternalError(`unexpected failure while talking to ${this.peerRole}: ${detail}`, { cause: error });
  }

  /** Turns whatever the stream failed with into an FtxError that names the peer. */
  describeStreamError(error: unknown): FtxError {
    if (error instanceof FtxError) return error;
    const code = (error as NodeJS.ErrnoException | undefined)?.code;
    if (code && LOST_CONNECTION_CODES.has(code)) {
      return new ConnectionLostError(`${this.peerRole} dropped the connection (${code})`, { cause: error });
    }
    const detail = error instanceof Error ? error.message : String(error);
    return new ConnectionLostError(`connection to ${this.peerRole} failed: ${detail}`, { cause: error });
  }

  /**
   * Reads one more chunk from the stream into the decoder's buffer; false at EOF.
   * Concurrent callers share one read, so a read abandoned by waitForBytes() is
   * simply finished by whoever reads next.
   */
  #fill(): Promise<boolean> {
    this.#filling ??= this.#readChunk().then(
      (chunk) => {
        this.#filling = undefined;
        if (!chunk) return false;
        this.#decoder.append(chunk);
        return true;
      },
      (error: unknown) => {
        this.#filling = undefined;
        throw error;
      },
    );
    return this.#filling;
  }

  /** The next non-empty chunk from the stream, or null at EOF. */
  async #readChunk(): Promise<Buffer | null> {
    for (;;) {
      if (this.#ended) return null;
      let result: IteratorResult<Buffer>;
      try {
        result = await this.#chunks.next();
      } catch (error) {
        // The error the stream was destroyed with, if any, is the real story.
        throw this.describeStreamError(error);
      }
      if (result.done) {
        this.#ended = true;
        return null;
      }
      if (result.value.length > 0) return result.value;
    }
  }
}
