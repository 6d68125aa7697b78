/**
 * Control frames: bytes in, frames out. No sockets, no timers, no logging.
 *
 * A frame is `type (u8) | length (u32, big-endian) | payload (length bytes)`.
 * File data is never framed: after the receiver's accept the sender streams the raw
 * bytes, so the decoder must be able to stop after any frame and hand back whatever
 * it has buffered beyond it (the "sticky packet": data glued to the header).
 *
 * Buffering strategy (after ws's receiver): incoming chunks are kept in a list, not
 * concatenated; `consume(n)` returns a view of the first chunk when it holds n bytes
 * and allocates only when n spans chunks. A declared length is checked against the
 * maximum the moment its 5 header bytes are in, before any payload is buffered, so a
 * hostile length prefix costs nothing.
 */
import { ProtocolError } from './errors.js';

/** u8 type + u32be length. */
export const FRAME_HEADER_BYTES = 5;

/** Control payloads are small JSON objects; 64 KiB is generous and bounds memory per peer. */
export const MAX_FRAME_PAYLOAD = 64 * 1024;

/**
 * Frame types are printable ASCII letters, never ASCII digits: a receiver tells an ftx
 * sender from a classic one (which opens with decimal digits) by the first byte alone.
 */
export const FrameType = {
  /** receiver -> sender, first thing on every connection: protocol name and version. */
  Greeting: 0x47, // 'G'
  /** sender -> receiver: what is about to be sent (size, name, hash algorithm). */
  Header: 0x48, // 'H'
  /** receiver -> sender: go ahead ("ko"); the raw bytes follow. */
  Accept: 0x4b, // 'K'
  /** receiver -> sender: declined before any data, with a reason. */
  Refuse: 0x52, // 'R'
  /** sender -> receiver, right after the last data byte: the sender's digest. */
  Trailer: 0x54, // 'T'
  /** receiver -> sender: the file is fsync'd and renamed into place. */
  Receipt: 0x43, // 'C'
  /** either way: the conversation failed; the payload says why. */
  Error: 0x45, // 'E'
  /** receiver -> sender while it is busy (fsync) so the sender's idle timer does not fire. */
  KeepAlive: 0x4e, // 'N'
  /** sender -> receiver: health check; nothing is transferred. */
  Ping: 0x50, // 'P'
  /** receiver -> sender: answer to a ping. */
  Pong: 0x51, // 'Q'
} as const;

export type FrameTypeCode = (typeof FrameType)[keyof typeof FrameType];

const KNOWN_TYPES = new Set<number>(Object.values(FrameType));

export interface Frame {
  type: FrameTypeCode;
  payload: Buffer;
}

export function frameTypeName(type: number): string {
  for (const [name, code] of Object.entries(FrameType)) {
    if (code === type) return name;
  }
  return `0x${type.toString(16).padStart(2, '0')}`;
}

export function encodeFrame(type: FrameTypeCode, payload: Buffer = Buffer.alloc(0)): Buffer {
  if (payload.length > MAX_FRAME_PAYLOAD) {
    throw new RangeError(`frame payload of ${payload.length} bytes exceeds ${MAX_FRAME_PAYLOAD}`);
  }
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payload.length);
  frame.writeUInt8(type, 0);
  frame.writeUInt32BE(payload.length, 1);
  payload.copy(frame, FRAME_HEADER_BYTES);
  return frame;
}

export interface FrameDecoderOptions {
  /** Largest payload accepted; anything larger is rejected from its header alone. */
  maxPayload?: number;
}

export class FrameDecoder {
  readonly #maxPayload: number;
  #chunks: Buffer[] = [];
  #bufferedBytes = 0;
  /** Header of the frame being assembled, once its 5 bytes have arrived. */
  #pending: { type: FrameTypeCode; length: number } | undefined;

  constructor(options: FrameDecoderOptions = {}) {
    this.#maxPayload = options.maxPayload ?? MAX_FRAME_PAYLOAD;
  }

  /** Bytes received but not yet returned as part of a frame. */
  get bufferedBytes(): number {
    return this.#bufferedBytes + (this.#pending ? FRAME_HEADER_BYTES : 0);
  }

  /** Appends bytes and returns every frame now complete. Use `shift` to stop after one. */
  push(chunk: Buffer): Frame[] {
    this.append(chunk);
    const frames: Frame[] = [];
    for (let frame = this.shift(); frame; frame = this.shift()) frames.push(frame);
    return frames;
  }

  /** Appends bytes without decoding them. */
  append(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.#bufferedBytes += chunk.length;
  }

  /**
   * Returns the next complete frame, or undefined if more bytes are needed.
   * Throws ProtocolError for an unknown type or an oversized length, as soon as the
   * offending header bytes are in.
   */
  shift(): Frame | undefined {
    if (!this.#pending) {
      if (this.#bufferedBytes < 1) return undefined;
      const type = this.peekByte() as number;
      if (!KNOWN_TYPES.has(type)) {
        throw new ProtocolError(`unknown frame type ${frameTypeName(type)}: the peer does not speak ftx`);
      }
      if (this.#bufferedBytes < FRAME_HEADER_BYTES) return undefined;
      const header = this.#consume(FRAME_HEADER_BYTES);
      const length = header.readUInt32BE(1);
      if (length > this.#maxPayload) {
        throw new ProtocolError(
          `frame ${frameTypeName(type)} declares ${length} bytes, more than the ${this.#maxPayload} allowed`,
        );
      }
      this.#pending = { type: type as FrameTypeCode, length };
    }
    if (this.#bufferedBytes < this.#pending.length) return undefined;
    const frame = { type: this.#pending.type, payload: this.#consume(this.#pending.length) };
    this.#pending = undefined;
    return frame;
  }

  /**
   * Hands back every byte buffered beyond the last returned frame and empties the
   * decoder: the raw data that followed a frame in the same chunk.
   * Throws if a frame was half decoded, since its header bytes are already gone.
   */
  takeRemainder(): Buffer[] {
    if (this.#pending) {
      throw new Error('takeRemainder() called in the middle of a frame');
    }
    const chunks = this.#chunks;
    this.#chunks = [];
    this.#bufferedBytes = 0;
    return chunks;
  }

  /** The next unread byte, without consuming it. */
  peekByte(): number | undefined {
    if (this.#pending) throw new Error('peekByte() called in the middle of a frame');
    return this.#chunks[0]?.[0];
  }

  /** Puts bytes back in front of everything buffered (bytes read past a boundary). */
  prepend(chunk: Buffer): void {
    if (this.#pending) throw new Error('prepend() called in the middle of a frame');
    if (chunk.length === 0) return;
    this.#chunks.unshift(chunk);
    this.#bufferedBytes += chunk.length;
  }

  /** Removes and returns exactly n buffered bytes (n <= bufferedBytes). */
  #consume(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    this.#bufferedBytes -= n;
    const first = this.#chunks[0] as Buffer;
    if (n === first.length) {
      this.#chunks.shift();
      return first;
    }
    if (n < first.length) {
      this.#chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    // n spans chunks: one allocation.
    const out = Buffer.allocUnsafe(n);
    let offset = 0;
    while (offset < n) {
      const chunk = this.#chunks[0] as Buffer;
      const take = Math.min(chunk.length, n - offset);
      chunk.copy(out, offset, 0, take);
      offset += take;
      if (take === chunk.length) this.#chunks.shift();
      else this.#chunks[0] = chunk.subarray(take);
    }
    return out;
  }
}
