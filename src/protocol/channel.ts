/**
 * A pull-based view of one connection: read a control frame, read exactly N raw data
 * bytes, write with backpressure. Works over any Duplex, so tests can drive the
 * conversation without TCP.
 *
 * Reading pulls chunks from the stream's async iterator only when a caller asks, so
 * an unread socket stops being read from the kernel and TCP pushes back on the peer.
 * Bytes that arrive glued to a frame (the data after a header, a trailer right after
 * the data) stay in the decoder until the next read asks for them.
 *
 * The channel also knows the conversation's phase in the one place that matters: while
 * this side streams raw file data (beginSendingData … endSendingData), every byte it
 * writes is file data to the peer, so a control frame there would be taken for data.
 * Control writes in that phase are refused (a bug), and a farewell is not attempted.
 */
import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { ConnectionLostError, InternalError, isFtxError, TimeoutError, type FtxError } from '../errors.js';
import { FrameDecoder, type Frame } from '../framing.js';
import { within } from '../util/timers.js';
import { formatBytes, formatProgress } from '../util/units.js';

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
 * count, so only a slow peer is cut, never a slow receiver. The check runs when the
 * window is over, whether or not a byte has just arrived.
 */
export interface RateFloor {
  bytesPerSecond: number;
  windowMs: number;
}

/** Codes node:net and node:stream use when the other end vanished rather than closed politely. */
const LOST_CONNECTION_CODES = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH']);

/** True for an error that means the connection broke (as opposed to, say, a disk failing). */
export function isConnectionFailure(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' && (LOST_CONNECTION_CODES.has(code) || code.startsWith('ERR_STREAM'));
}

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
  #sendingData = false;

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
        const error = new TimeoutError(`${this.peerRole} sent nothing for ${ms / 1000} s; it may have crashed or the network is down`, { remedy: 'raise-timeout' });
        // Everything sent to us was read (we were idle), so closing sends FIN, not RST,
        // and the peer gets to read this before it sees the end.
        this.hangUp(error);
      });
    }
  }

  /** Largest control frame accepted from the peer from now on (see FrameDecoder). */
  set maxFramePayload(bytes: number) {
    this.#decoder.maxPayload = bytes;
  }

  /** From here until endSendingData(), everything this side writes is raw file data. */
  beginSendingData(): void {
    this.#sendingData = true;
  }

  endSendingData(): void {
    this.#sendingData = false;
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
    return this.#fillWithin(ms, (more) => (more ? 'data' : 'eof'), 'quiet');
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
    const window = { waitedMs: 0, bytes: 0 };
    const checkFloor = () => {
      if (!floor || window.waitedMs < floor.windowMs) return;
      if (window.bytes < (floor.bytesPerSecond * window.waitedMs) / 1000) {
        throw new TimeoutError(
          `${this.peerRole} sent only ${formatBytes(window.bytes)} in ${Math.round(window.waitedMs / 1000)} s, below the minimum rate of ${formatBytes(floor.bytesPerSecond)}/s; the link is too slow or the peer stalled`,
        );
      }
      window.waitedMs = 0;
      window.bytes = 0;
    };
    while (remaining > 0) {
      let chunk = floor ? await this.#readRawTimed(floor, window, checkFloor) : await this.readRaw();
      if (!chunk) {
        throw new ConnectionLostError(`${this.peerRole} closed the connection after ${formatProgress(byteCount - remaining, byteCount)}`);
      }
      if (chunk.length > remaining) {
        this.unread(chunk.subarray(remaining));
        chunk = chunk.subarray(0, remaining);
      }
      remaining -= chunk.length;
      window.bytes += chunk.length;
      checkFloor();
      onChunk?.(chunk);
      yield chunk;
    }
  }

  /**
   * readRaw(), but the time spent waiting counts against the rate floor's window, and
   * when the window runs out while waiting the floor is checked there and then: a peer
   * that dribbles a byte just before each idle timeout is cut at the end of its window,
   * not whenever its next byte happens to come.
   */
  async #readRawTimed(floor: RateFloor, window: { waitedMs: number; bytes: number }, checkFloor: () => void): Promise<Buffer | null> {
    for (;;) {
      const started = performance.now();
      // A little past the window's end: a peer silent all along is the idle timer's to
      // report ("sent nothing for 30 s"), which fires at the window's end.
      const untilChecked = Math.max(1, floor.windowMs - window.waitedMs) + Math.max(250, floor.windowMs / 4);
      const outcome = this.#decoder.bufferedBytes > 0 ? 'more' : await this.#fillWithin(untilChecked, (more) => (more ? 'more' : 'eof'), 'window over');
      window.waitedMs += performance.now() - started;
      if (outcome === 'eof') return null;
      if (outcome === 'more') return this.readRaw();
      checkFloor();
    }
  }

  /**
   * Writes control bytes (a frame, a classic line) and resolves once they are handed to
   * the kernel. Refused while this side streams file data: they would be read as data.
   */
  write(bytes: Buffer): Promise<void> {
    if (this.#sendingData) return Promise.reject(new InternalError('a control message was written while file data was being sent'));
    return new Promise((resolve, reject) => {
      this.stream.write(bytes, (error) => (error ? reject(this.describeStreamError(error)) : resolve()));
    });
  }

  /** Half-closes: no more writes from this side. */
  end(): void {
    if (!this.stream.destroyed && !this.stream.writableEnded) this.stream.end();
  }

  /**
   * Ends the connection now, saying why first (see farewell) unless file data is
   * flowing from this side; pending reads and writes fail with `error`. Best effort: if
   * bytes from the peer are still unread, the close is a reset and the peer may not get
   * to read the farewell.
   */
  hangUp(error: FtxError): void {
    if (this.farewell && !this.#sendingData && this.stream.writable && !this.stream.destroyed) this.stream.write(this.farewell(error));
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
    if (isFtxError(error)) return error;
    if (typeof (error as NodeJS.ErrnoException | undefined)?.code === 'string') return this.describeStreamError(error);
    const detail = error instanceof Error ? error.message : String(error);
    return new InternalError(`unexpected failure while talking to ${this.peerRole}: ${detail}`, { cause: error });
  }

  /** Turns whatever the stream failed with into an FtxError that names the peer. */
  describeStreamError(error: unknown): FtxError {
    if (isFtxError(error)) return error;
    const code = (error as NodeJS.ErrnoException | undefined)?.code;
    if (isConnectionFailure(error)) {
      return new ConnectionLostError(`${this.peerRole} dropped the connection (${code})`, { cause: error });
    }
    const detail = error instanceof Error ? error.message : String(error);
    return new ConnectionLostError(`connection to ${this.peerRole} failed: ${detail}`, { cause: error });
  }

  /** #fill(), or `quiet` if it has not settled within `ms` (the read goes on: the next call shares it). */
  #fillWithin<T, Q>(ms: number, settled: (more: boolean) => T, quiet: Q): Promise<T | Q> {
    return within(this.#fill().then(settled), ms, () => quiet);
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
