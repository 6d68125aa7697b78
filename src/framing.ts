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
 * hostile length prefix costs nothing. A frame that does not arrive whole is copied
 * into one buffer of its declared length as its bytes come in (see PartialFrame):
 * memory follows what a peer declared, never how finely it segmented its bytes.
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
  // Protocol version 2: sessions of many entries (PROTOCOL.md).
  /** sender -> receiver: a session of entries is about to be sent (the digest, what it holds if known). */
  Open: 0x4f, // 'O'
  /** sender -> receiver: one entry (a file, a folder, a stream): its path and metadata. */
  Entry: 0x46, // 'F'
  /** receiver -> sender: what to do with an entry: store it, skip it, or not (why). */
  Decision: 0x59, // 'Y'
  /**
   * sender -> receiver: raw file data for the entry being sent. Its payload is not JSON and
   * is not buffered as a frame: its length says how many raw bytes follow (see rawLength).
   */
  Data: 0x44, // 'D'
  /** receiver -> sender: an entry is stored (verified, durable) or failed. */
  Result: 0x57, // 'W'
  /** sender -> receiver: every entry has been sent. */
  End: 0x5a, // 'Z'
  /** receiver -> sender: the session's outcome, once every entry is durable. */
  Summary: 0x58, // 'X'
  // Resume (a session whose Open says `resume`): the prefix a receiver already holds.
  /** sender -> receiver: the digest of the first `offset` bytes of the file, as the sender has them. */
  Prefix: 0x56, // 'V'
  /** receiver -> sender: where the entry's data starts: the offered offset if the prefixes matched, else 0. */
  Resume: 0x55, // 'U'
} as const;

/** Largest Data frame: raw bytes, never buffered (a file larger than this is sent in several). */
export const MAX_DATA_FRAME = 1024 * 1024 * 1024;

export type FrameTypeCode = (typeof FrameType)[keyof typeof FrameType];

const KNOWN_TYPES = new Set<number>(Object.values(FrameType));

export interface Frame {
  type: FrameTypeCode;
  payload: Buffer;
  /**
   * For a Data frame: how many raw bytes follow, which the decoder leaves unread (the
   * payload is empty). The caller takes exactly that many bytes as data.
   */
  rawLength?: number;
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

const EMPTY = Buffer.alloc(0);

/** The 5 bytes that announce `length` raw bytes of data (a Data frame's header). */
export function dataFrameHeader(length: number): Buffer {
  const header = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  header.writeUInt8(FrameType.Data, 0);
  header.writeUInt32BE(length, 1);
  return header;
}

export interface FrameDecoderOptions {
  /** Largest payload accepted; anything larger is rejected from its header alone. */
  maxPayload?: number;
}

/**
 * Frame being assembled: its header is in, its payload is not complete yet. The payload
 * is copied into one buffer of the declared length as bytes arrive, so what a peer costs
 * is bounded by what it declared, whatever the segmentation: a frame dribbled one byte
 * per TCP segment would otherwise pin one Buffer object (hundreds of bytes of RSS) per
 * byte sent.
 */
interface PartialFrame {
  type: FrameTypeCode;
  length: number;
  /** Allocated once the first payload byte is in and the frame is not complete at once. */
  payload: Buffer | undefined;
  filled: number;
}

export class FrameDecoder {
  #maxPayload: number;
  /** Bytes not yet part of a frame: a few header bytes, or data glued to a frame. */
  #chunks: Buffer[] = [];
  #chunkBytes = 0;
  #partial: PartialFrame | undefined;

  constructor(options: FrameDecoderOptions = {}) {
    this.#maxPayload = options.maxPayload ?? MAX_FRAME_PAYLOAD;
  }

  /**
   * Largest payload accepted from now on. A receiver lowers it for what a sender may
   * send (a header fits in a few KiB), so a hostile length prefix cannot make it
   * reserve the protocol-wide maximum.
   */
  set maxPayload(bytes: number) {
    this.#maxPayload = bytes;
  }

  get maxPayload(): number {
    return this.#maxPayload;
  }

  /** Bytes received but not yet returned as part of a frame. */
  get bufferedBytes(): number {
    return this.#chunkBytes + (this.#partial ? FRAME_HEADER_BYTES + this.#partial.filled : 0);
  }

  /**
   * Appends bytes and returns every frame now complete. Use `shift` to stop after one.
   * Stops after a Data frame: the bytes that follow it are raw data, not frames, and
   * stay buffered for the caller (takeRemainder()).
   */
  push(chunk: Buffer): Frame[] {
    this.append(chunk);
    const frames: Frame[] = [];
    for (let frame = this.shift(); frame; frame = this.shift()) {
      frames.push(frame);
      if (frame.type === FrameType.Data) break;
    }
    return frames;
  }

  /**
   * Appends bytes without decoding them. While a frame is being assembled they go
   * straight into its payload buffer; only bytes beyond it are kept as chunks.
   */
  append(chunk: Buffer): void {
    if (chunk.length === 0) return;
    const partial = this.#partial;
    if (partial?.payload && this.#chunkBytes === 0) {
      const take = Math.min(chunk.length, partial.length - partial.filled);
      chunk.copy(partial.payload, partial.filled, 0, take);
      partial.filled += take;
      if (take === chunk.length) return;
      chunk = chunk.subarray(take);
    }
    this.#chunks.push(chunk);
    this.#chunkBytes += chunk.length;
  }

  /**
   * Returns the next complete frame, or undefined if more bytes are needed.
   * Throws ProtocolError for an unknown type or an oversized length, as soon as the
   * offending header bytes are in.
   */
  shift(): Frame | undefined {
    if (!this.#partial) {
      if (this.#chunkBytes < 1) return undefined;
      const type = this.peekByte() as number;
      if (!KNOWN_TYPES.has(type)) {
        throw new ProtocolError(`unknown frame type ${frameTypeName(type)}: the peer does not speak ftx`);
      }
      if (this.#chunkBytes < FRAME_HEADER_BYTES) return undefined;
      const header = this.#consume(FRAME_HEADER_BYTES);
      const length = header.readUInt32BE(1);
      if (type === FrameType.Data) {
        // Raw data: no payload to assemble; what follows belongs to the caller.
        if (length > MAX_DATA_FRAME) throw new ProtocolError(`a Data frame declares ${length} bytes, more than the ${MAX_DATA_FRAME} allowed`);
        return { type: FrameType.Data, payload: EMPTY, rawLength: length };
      }
      if (length > this.#maxPayload) {
        throw new ProtocolError(
          `frame ${frameTypeName(type)} declares ${length} bytes, more than the ${this.#maxPayload} allowed`,
        );
      }
      this.#partial = { type: type as FrameTypeCode, length, payload: undefined, filled: 0 };
    }
    const partial = this.#partial;
    if (!partial.payload) {
      // The whole payload is here already (the usual case): a view, or one copy.
      if (this.#chunkBytes >= partial.length) {
        this.#partial = undefined;
        return { type: partial.type, payload: this.#consume(partial.length) };
      }
      if (this.#chunkBytes === 0) return undefined;
      partial.payload = Buffer.allocUnsafe(partial.length);
    }
    // Move whatever is buffered into the payload, so no chunk outlives this call.
    const take = Math.min(this.#chunkBytes, partial.length - partial.filled);
    if (take > 0) {
      this.#consume(take).copy(partial.payload, partial.filled);
      partial.filled += take;
    }
    if (partial.filled < partial.length) return undefined;
    this.#partial = undefined;
    return { type: partial.type, payload: partial.payload };
  }

  /**
   * Hands back every byte buffered beyond the last returned frame and empties the
   * decoder: the raw data that followed a frame in the same chunk.
   * Throws if a frame was half decoded, since its header bytes are already gone.
   */
  takeRemainder(): Buffer[] {
    if (this.#partial) {
      throw new Error('takeRemainder() called in the middle of a frame');
    }
    const chunks = this.#chunks;
    this.#chunks = [];
    this.#chunkBytes = 0;
    return chunks;
  }

  /** The next unread byte, without consuming it. */
  peekByte(): number | undefined {
    if (this.#partial) throw new Error('peekByte() called in the middle of a frame');
    return this.#chunks[0]?.[0];
  }

  /** Puts bytes back in front of everything buffered (bytes read past a boundary). */
  prepend(chunk: Buffer): void {
    if (this.#partial) throw new Error('prepend() called in the middle of a frame');
    if (chunk.length === 0) return;
    this.#chunks.unshift(chunk);
    this.#chunkBytes += chunk.length;
  }

  /** Removes and returns exactly n buffered chunk bytes (n <= #chunkBytes). */
  #consume(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    this.#chunkBytes -= n;
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
