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
import { ConnectionLostError, IntegrityError, InternalError, isFtxError, TimeoutError, type FtxError } from '../errors.js';
import { FRAME_HEADER_BYTES, FrameDecoder, type Frame } from '../framing.js';
import { CONNECTION_CLOSED, type ByteSource, type DataSink } from '../transport/byte-source.js';
import { nudgeGarbageCollector } from '../util/gc-nudge.js';
import { FailureGate } from '../util/failure-gate.js';
import { within } from '../util/timers.js';
import { formatBytes, formatProgress } from '../util/units.js';

export type { ByteSource, DataSink };

/**
 * A floor under the data rate while readDataInto() waits on the peer: over every stretch of
 * `windowMs` spent waiting for its bytes, the peer must deliver at least
 * `bytesPerSecond`. Time the reader spends elsewhere (its own disk pushing back) does not
 * count, so only a slow peer is cut, never a slow receiver (see FloorWatch).
 */
export interface RateFloor {
  bytesPerSecond: number;
  windowMs: number;
}


export interface ChannelOptions {
  /** Destroy the connection after this long without any traffic; 0 disables. */
  idleTimeoutMs?: number;
  /** Who is at the other end, for messages ("the receiver", "the sender"). */
  peerRole?: string;
  /** Where incoming bytes come from, when not the stream's own reads (transport/direct-reads.ts). */
  source?: ByteSource | undefined;
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
  /**
   * Called whenever this side is about to wait for the peer's bytes: a writer that holds
   * its answers back to send many in one write (a session's Decisions and Results) must
   * let them go now, or both ends would wait for each other.
   */
  beforeWaiting: (() => void) | undefined;
  readonly #decoder = new FrameDecoder();
  readonly #source: ByteSource;
  #ended = false;
  #filling: Promise<boolean> | undefined;
  #sendingData = false;
  /** Handed over to TLS (detach()): nothing more is written here. */
  #detached = false;
  /** TLS is up (handedOver()): hanging up is the inner channel's to do. */
  #handedOver = false;

  constructor(stream: Duplex, options: ChannelOptions = {}) {
    this.stream = stream;
    this.peerRole = options.peerRole ?? 'the peer';
    this.#source = options.source ?? streamSource(stream);
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

  /**
   * A floor watch for many reads (a session's): it counts time only while a read is
   * waiting on the peer (readDataInto, or readFrameWatched), and must be stopped.
   */
  watchRate(floor: RateFloor | undefined): FloorWatch {
    const watch = new FloorWatch(floor, this.peerRole);
    watch.pause();
    return watch;
  }

  /** readFrame() under a session's floor watch: the frame's bytes count as progress. */
  async readFrameWatched(watch: FloorWatch): Promise<Frame | null> {
    watch.resume();
    try {
      const frame = await watch.guard(this.readFrame());
      if (frame) watch.progress(FRAME_HEADER_BYTES + frame.payload.length);
      return frame;
    } finally {
      watch.pause();
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
   * Reads exactly `byteCount` raw bytes into `sink`'s regions; bytes beyond them stay
   * buffered for the next readFrame(). Straight from the socket where the source can
   * (transport/direct-reads.ts), else by copying each chunk in. Throws ConnectionLostError
   * if the peer closes early, and TimeoutError if it falls below `floor`. A session of
   * many entries passes one FloorWatch for all its reads (watchRate()), so the floor
   * holds over the whole session and not per Data frame.
   */
  async readDataInto(byteCount: number, sink: DataSink, floor?: RateFloor | FloorWatch): Promise<void> {
    const shared = floor instanceof FloorWatch;
    const watch = shared ? floor : new FloorWatch(floor, this.peerRole);
    if (shared) watch.resume();
    let remaining = byteCount;
    /** Copies `chunk` into the sink (waiting for room as needed); returns what lies beyond the data. */
    const deliver = async (chunk: Buffer): Promise<Buffer | undefined> => {
      let offset = 0;
      while (offset < chunk.length && remaining > 0) {
        const region = sink.region(Math.min(remaining, chunk.length - offset));
        const take = Math.min(region.length, chunk.length - offset);
        chunk.copy(region, 0, offset, offset + take);
        offset += take;
        remaining -= take;
        if (!sink.filled(region.subarray(0, take))) {
          watch.pause();
          await sink.room();
          watch.resume();
        }
      }
      return offset < chunk.length ? chunk.subarray(offset) : undefined;
    };
    try {
      // The previous read may have ended by filling a buffer whose write is still in
      // flight (its last filled() said there was no room): its regions must not be handed
      // out again before that write is done. Our disk's time, not the peer's.
      watch.pause();
      await sink.room();
      watch.resume();
      // Bytes already here (glued to the header, or read ahead) go first, in order.
      const held = [...this.#decoder.takeRemainder(), ...(this.#source.takeQueued?.() ?? [])];
      for (const [index, chunk] of held.entries()) {
        const beyond = await deliver(chunk);
        if (beyond) {
          for (const rest of [beyond, ...held.slice(index + 1)]) this.#decoder.append(rest);
          return;
        }
      }
      if (remaining === 0) return;
      // From here the bytes are still to come from the peer.
      this.beforeWaiting?.();
      if (this.#source.readInto) {
        const counted: DataSink = {
          region: (limit) => sink.region(limit),
          filled: (bytes) => {
            watch.progress(bytes.length);
            remaining -= bytes.length;
            const more = sink.filled(bytes);
            if (!more) watch.pause();
            return more;
          },
          room: () => sink.room().then(() => watch.resume()),
        };
        await watch.guard(this.#source.readInto(remaining, counted));
        return;
      }
      while (remaining > 0) {
        const chunk = await watch.guard(this.readRaw());
        if (!chunk) break;
        // A stream reads into a fresh buffer each time: let the collector know (util/gc-nudge.ts).
        nudgeGarbageCollector(chunk.length);
        watch.progress(Math.min(chunk.length, remaining));
        const beyond = await deliver(chunk);
        if (beyond) this.unread(beyond);
      }
      if (remaining > 0) throw new ConnectionLostError(CONNECTION_CLOSED);
    } catch (error) {
      // Lost midway: say how far it got.
      const progress = formatProgress(byteCount - remaining, byteCount);
      if (error instanceof ConnectionLostError && error.message === CONNECTION_CLOSED) {
        throw new ConnectionLostError(`${this.peerRole} closed the connection after ${progress}`, { cause: error });
      }
      if (!isFtxError(error) && isConnectionFailure(error)) {
        throw new ConnectionLostError(`${this.describeStreamError(error).message} after ${progress}`, { cause: error });
      }
      // Ours (a floor timeout) or the sink's (its disk is full): the caller's to describe.
      throw error;
    } finally {
      if (shared) watch.pause();
      else watch.stop();
    }
  }

  /**
   * Writes control bytes (a frame, a classic line) and resolves once they are handed to
   * the kernel. Refused while this side streams file data: they would be read as data.
   */
  write(bytes: Buffer): Promise<void> {
    if (this.#sendingData) return Promise.reject(new InternalError('a control message was written while file data was being sent'));
    if (this.#detached) return Promise.reject(new InternalError('a plain-text message was written under TLS'));
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
    // Handed to TLS: a plain-text word here would land under the encrypted stream. During
    // the handshake, cut without a word; once TLS is up, the channel inside it speaks.
    if (this.#handedOver) return;
    if (this.#detached) {
      this.stream.destroy(error);
      return;
    }
    if (this.farewell && !this.#sendingData && this.stream.writable && !this.stream.destroyed) this.stream.write(this.farewell(error));
    this.destroy(error);
  }

  /**
   * Hands the connection over to another layer (TLS, started after a plain greeting):
   * stops the idle timer and returns the bytes read but not yet used, to put back in
   * front of the stream. The channel must not be used afterwards.
   */
  detach(): Buffer {
    if (this.#filling) throw new Error('detach() while a read is pending');
    this.#detached = true;
    this.setIdleTimeout(0);
    this.#ended = true;
    return Buffer.concat(this.#decoder.takeRemainder());
  }

  /** Bytes read from the peer and not yet used. */
  get bufferedBytes(): number {
    return this.#decoder.bufferedBytes;
  }

  /** TLS is up over this channel's stream: from now on the channel inside it hangs up. */
  handedOver(): void {
    this.#handedOver = true;
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
    // TLS's record check: what arrived is not what the peer encrypted.
    if (code === 'ERR_SSL_DECRYPTION_FAILED_OR_BAD_RECORD_MAC' || code === 'ERR_SSL_SSLV3_ALERT_BAD_RECORD_MAC') {
      const whose = code === 'ERR_SSL_SSLV3_ALERT_BAD_RECORD_MAC' ? `${this.peerRole} found` : 'this side found';
      return new IntegrityError(`the encrypted connection failed its integrity check (${whose} altered or broken data on the way); nothing of it was kept`, { cause: error });
    }
    if (typeof code === 'string' && code.startsWith('ERR_SSL_')) {
      return new ConnectionLostError(`the encrypted connection to ${this.peerRole} failed (${code})`, { cause: error });
    }
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
    this.beforeWaiting?.();
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

  /** The next non-empty chunk from the source, or null at EOF. */
  async #readChunk(): Promise<Buffer | null> {
    for (;;) {
      if (this.#ended) return null;
      let chunk: Buffer | null;
      try {
        chunk = await this.#source.next();
      } catch (error) {
        // The error the stream was destroyed with, if any, is the real story.
        throw this.describeStreamError(error);
      }
      if (chunk === null) {
        this.#ended = true;
        return null;
      }
      if (chunk.length > 0) return chunk;
    }
  }
}

/** A stream's own reads, through its async iterator. */
function streamSource(stream: Duplex): ByteSource {
  const chunks: AsyncIterator<Buffer> = stream[Symbol.asyncIterator]();
  return {
    next: async () => {
      const result = await chunks.next();
      return result.done ? null : result.value;
    },
  };
}

/**
 * The rate floor (see RateFloor) over a data read: counts the bytes, and the time spent
 * waiting for them (not the time the reader was paused by its own disk), and once a
 * window's worth of waiting is in, fails the read if too few bytes came. Checked on a
 * timer, a little past each window's end: a peer that went silent altogether is the idle
 * timer's to report ("sent nothing for 30 s"), which fires at the window's end.
 */
export class FloorWatch {
  readonly #floor: RateFloor | undefined;
  readonly #peerRole: string;
  #waitedMs = 0;
  #bytes = 0;
  #waitingSince: number | undefined = performance.now();
  #timer: NodeJS.Timeout | undefined;
  /** The guarded waits in flight, rejected if the floor fails. */
  readonly #gate = new FailureGate<TimeoutError>();

  constructor(floor: RateFloor | undefined, peerRole: string) {
    this.#floor = floor;
    this.#peerRole = peerRole;
    if (floor) {
      const everyMs = Math.max(50, floor.windowMs / 8);
      this.#timer = setInterval(() => this.#check(Math.max(250, floor.windowMs / 4)), everyMs);
    }
  }

  /** Races `work` against the floor: a floor failure rejects at once. */
  guard<T>(work: Promise<T>): Promise<T> {
    return this.#floor ? this.#gate.guard(work) : work;
  }

  progress(bytes: number): void {
    this.#bytes += bytes;
  }

  /** The reader stopped reading (its disk is behind): this time is not the peer's. */
  pause(): void {
    if (this.#waitingSince === undefined) return;
    this.#waitedMs += performance.now() - this.#waitingSince;
    this.#waitingSince = undefined;
  }

  resume(): void {
    this.#waitingSince ??= performance.now();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  #check(graceMs: number): void {
    const floor = this.#floor as RateFloor;
    const waited = this.#waitedMs + (this.#waitingSince === undefined ? 0 : performance.now() - this.#waitingSince);
    if (waited < floor.windowMs + graceMs) return;
    if (this.#bytes < (floor.bytesPerSecond * waited) / 1000) {
      this.#gate.fail(
        new TimeoutError(
          `${this.#peerRole} sent only ${formatBytes(this.#bytes)} in ${(waited / 1000).toFixed(1)} s, below the minimum rate of ${formatBytes(floor.bytesPerSecond)}/s; the link is too slow or the peer stalled`,
        ),
      );
      return;
    }
    this.#waitedMs = 0;
    this.#bytes = 0;
    if (this.#waitingSince !== undefined) this.#waitingSince = performance.now();
  }
}
