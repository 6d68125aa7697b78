/**
 * Property tests (fast-check) for everything that parses untrusted input: the frame
 * decoder, the JSON payload decoders, sender-chosen file names and the classic
 * protocol's unterminated size.
 *
 * Inputs come from a fixed seed, so CI runs the same cases every time. A failure prints
 * the shrunk counterexample with the seed and path that replay it; the checks written by
 * hand also name their input in hex and the chunking they used. To explore new cases
 * locally, change SEED for a run; do not make it random in CI.
 */
import { posix, win32 } from 'node:path';
import { PassThrough } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Channel } from '../src/protocol/channel.js';
import { readClassicSize } from '../src/protocol/classic.js';
import { ProtocolError } from '../src/errors.js';
import {
  encodeFrame,
  FRAME_HEADER_BYTES,
  FrameDecoder,
  FrameType,
  frameTypeName,
  MAX_FRAME_PAYLOAD,
  type Frame,
  type FrameTypeCode,
} from '../src/framing.js';
import {
  decodeAccept,
  decodeError,
  decodeGreeting,
  decodeHeader,
  decodePing,
  decodePong,
  decodeReceipt,
  decodeRefuse,
  decodeTrailer,
} from '../src/protocol/messages.js';
import { canonicalName, caseFoldKey, problemWithName } from '../src/fs/names.js';
import { seededRandom } from './helpers/random.js';

const SEED = 20261130;
fc.configureGlobal({ seed: SEED });

// ---------------------------------------------------------------------------------------
// Helpers

/** An input in hex for a failure message, cut short when it is long. */
function hexOf(bytes: Uint8Array, limit = 512): string {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buffer.length === 0) return '(empty)';
  if (buffer.length <= limit) return buffer.toString('hex');
  return `${buffer.subarray(0, limit).toString('hex')}… (${buffer.length} bytes)`;
}

function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function describeError(error: unknown): string {
  return error instanceof Error ? `${error.constructor.name}: ${error.message}` : String(error);
}

/**
 * How a byte string is cut into chunks: at split points (a repeated point gives an empty
 * chunk, which a reader must shrug off), or into runs of the given sizes, repeated until
 * the bytes run out (`[1]` is one byte at a time).
 */
type Chunking = { splitAt: number[] } | { sizes: number[] };

const chunkingArb: fc.Arbitrary<Chunking> = fc.oneof(
  fc.record({ splitAt: fc.array(fc.nat(), { maxLength: 24 }) }),
  fc.record({
    sizes: fc.array(fc.oneof(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 100_000 })), {
      minLength: 1,
      maxLength: 6,
    }),
  }),
  fc.constant<Chunking>({ sizes: [1] }),
);

function cut(bytes: Buffer, chunking: Chunking): Buffer[] {
  const chunks: Buffer[] = [];
  if ('splitAt' in chunking) {
    const points = chunking.splitAt.map((point) => point % (bytes.length + 1)).sort((a, b) => a - b);
    let start = 0;
    for (const point of points) {
      chunks.push(bytes.subarray(start, point));
      start = point;
    }
    chunks.push(bytes.subarray(start));
  } else {
    for (let offset = 0, index = 0; offset < bytes.length; index++) {
      const size = chunking.sizes[index % chunking.sizes.length] as number;
      chunks.push(bytes.subarray(offset, offset + size));
      offset += size;
    }
  }
  return chunks;
}

function describeChunks(chunks: Buffer[]): string {
  const sizes = chunks.map((chunk) => chunk.length);
  if (sizes.length > 40) return `${sizes.length} chunks of ${sizes.slice(0, 40).join(',')},… bytes`;
  return `chunks of ${sizes.join(',') || 'nothing'} bytes`;
}

// ---------------------------------------------------------------------------------------
// Frames

const FRAME_TYPES = Object.values(FrameType) as FrameTypeCode[];
const KNOWN_TYPES = new Set<number>(FRAME_TYPES);
const frameTypeArb = fc.constantFrom(...FRAME_TYPES);

/** Payloads of 0..2000 bytes: small ones (the default size) and ones spread over the range. */
const smallPayloadArb = fc
  .oneof(fc.uint8Array({ maxLength: 2000 }), fc.uint8Array({ maxLength: 2000, size: 'max' }))
  .map(toBuffer);

/** A payload of exactly MAX_FRAME_PAYLOAD bytes, filled from a seed (64 KiB of fast-check bytes is slow to generate and shrink). */
const maxPayloadArb = fc.nat().map((seed) => {
  const random = seededRandom(seed);
  const payload = Buffer.allocUnsafe(MAX_FRAME_PAYLOAD);
  for (let index = 0; index < payload.length; index++) payload[index] = Math.floor(random() * 256);
  return payload;
});

const frameArb: fc.Arbitrary<Frame> = fc.record({
  type: frameTypeArb,
  payload: fc.oneof({ weight: 30, arbitrary: smallPayloadArb }, { weight: 1, arbitrary: maxPayloadArb }),
});

const smallFrameArb: fc.Arbitrary<Frame> = fc.record({ type: frameTypeArb, payload: smallPayloadArb });

function encodeAll(frames: readonly Frame[]): Buffer {
  return Buffer.concat(frames.map((frame) => encodeFrame(frame.type, frame.payload)));
}

/** Why `actual` differs from `expected`, or undefined if they are the same frames. */
/** Shifts frames into `decoded` until it holds `count` of them or the decoder needs more bytes. */
function shiftUpTo(decoder: FrameDecoder, count: number, decoded: Frame[]): Frame[] {
  while (decoded.length < count) {
    const frame = decoder.shift();
    if (!frame) break;
    decoded.push(frame);
  }
  return decoded;
}

function frameMismatch(actual: readonly Frame[], expected: readonly Frame[]): string | undefined {
  for (let index = 0; index < Math.max(actual.length, expected.length); index++) {
    const got = actual[index];
    const want = expected[index];
    if (!got || !want) return `${actual.length} frames instead of ${expected.length}`;
    if (got.type !== want.type || !Buffer.isBuffer(got.payload) || !got.payload.equals(want.payload)) {
      return `frame ${index} is ${frameTypeName(got.type)} ${hexOf(got.payload, 64)} instead of ${frameTypeName(want.type)} ${hexOf(want.payload, 64)}`;
    }
  }
  return undefined;
}

/** Offsets just past each frame of an encoded sequence. */
function frameEnds(frames: readonly Frame[]): number[] {
  let offset = 0;
  return frames.map((frame) => (offset += FRAME_HEADER_BYTES + frame.payload.length));
}

interface ReferenceDecoding {
  frames: Frame[];
  ends: number[];
  /** How many bytes must be in when the decoder throws, if the input is bad. */
  errorAt?: number;
}

/**
 * The decoder's contract written the slow, obvious way over the whole input: an unknown
 * type byte is refused as soon as it arrives, an oversized length as soon as the 5th
 * header byte does.
 */
function referenceDecode(bytes: Buffer, maxPayload: number): ReferenceDecoding {
  const result: ReferenceDecoding = { frames: [], ends: [] };
  let offset = 0;
  while (offset < bytes.length) {
    const type = bytes[offset] as number;
    if (!KNOWN_TYPES.has(type)) return { ...result, errorAt: offset + 1 };
    if (bytes.length - offset < FRAME_HEADER_BYTES) break;
    const length = bytes.readUInt32BE(offset + 1);
    if (length > maxPayload) return { ...result, errorAt: offset + FRAME_HEADER_BYTES };
    const end = offset + FRAME_HEADER_BYTES + length;
    if (end > bytes.length) break;
    result.frames.push({ type: type as FrameTypeCode, payload: bytes.subarray(offset + FRAME_HEADER_BYTES, end) });
    result.ends.push(end);
    offset = end;
  }
  return result;
}

function headerBytes(type: number, length: number): Buffer {
  const header = Buffer.alloc(FRAME_HEADER_BYTES);
  header.writeUInt8(type, 0);
  header.writeUInt32BE(length, 1);
  return header;
}

/** Declared lengths worth trying: tiny, around the maximum, the u32 extremes, anything. */
const declaredLengthArb = fc.oneof(
  fc.integer({ min: 0, max: 64 }),
  fc.constantFrom(MAX_FRAME_PAYLOAD - 1, MAX_FRAME_PAYLOAD, MAX_FRAME_PAYLOAD + 1, 2 ** 31, 2 ** 32 - 1),
  fc.integer({ min: 0, max: 2 ** 32 - 1 }),
);

/** Bytes that are sometimes frames, sometimes headers with any type and length, sometimes noise. */
const wireArb = fc
  .array(
    fc.oneof(
      fc.uint8Array({ maxLength: 24 }).map(toBuffer),
      fc.tuple(frameTypeArb, smallPayloadArb).map(([type, payload]) => encodeFrame(type, payload)),
      fc
        .tuple(fc.oneof(frameTypeArb, fc.integer({ min: 0, max: 255 })), declaredLengthArb, fc.uint8Array({ maxLength: 80 }))
        .map(([type, length, body]) => Buffer.concat([headerBytes(type, length), body])),
    ),
    { maxLength: 10 },
  )
  .map((segments) => Buffer.concat(segments));

describe('FrameDecoder properties', () => {
  it('decodes any frames under any chunking, each as soon as its last byte is in', () => {
    fc.assert(
      fc.property(fc.array(frameArb, { maxLength: 12 }), chunkingArb, (frames, chunking) => {
        const wire = encodeAll(frames);
        const ends = frameEnds(frames);
        const chunks = cut(wire, chunking);
        const context = () => `input ${hexOf(wire)} in ${describeChunks(chunks)}`;
        const decoder = new FrameDecoder();
        const decoded: Frame[] = [];
        let fed = 0;
        let complete = 0;
        for (const chunk of chunks) {
          decoded.push(...decoder.push(chunk));
          fed += chunk.length;
          while (complete < ends.length && (ends[complete] as number) <= fed) complete++;
          const unread = fed - (complete > 0 ? (ends[complete - 1] as number) : 0);
          if (decoded.length !== complete || decoder.bufferedBytes !== unread) {
            throw new Error(
              `after ${fed} of ${wire.length} bytes: ${decoded.length} frames and ${decoder.bufferedBytes} bytes buffered, expected ${complete} and ${unread}; ${context()}`,
            );
          }
        }
        const mismatch = frameMismatch(decoded, frames);
        if (mismatch) throw new Error(`${mismatch}; ${context()}`);
        expect(decoder.bufferedBytes, context()).toBe(0);
      }),
    );
  });

  it('on arbitrary bytes either returns frames or throws ProtocolError at the first bad byte, with a bounded buffer', () => {
    fc.assert(
      fc.property(
        wireArb,
        chunkingArb,
        fc.option(fc.integer({ min: 0, max: 100 }), { nil: undefined }),
        (wire, chunking, maxPayload) => {
          const limit = maxPayload ?? MAX_FRAME_PAYLOAD;
          const expected = referenceDecode(wire, limit);
          const chunks = cut(wire, chunking);
          const context = () => `input ${hexOf(wire)} in ${describeChunks(chunks)}, maxPayload ${limit}`;
          const decoder = new FrameDecoder(maxPayload === undefined ? {} : { maxPayload });
          const decoded: Frame[] = [];
          let fed = 0;
          let complete = 0;
          let threw = false;
          for (const chunk of chunks) {
            fed += chunk.length;
            try {
              decoded.push(...decoder.push(chunk));
            } catch (error) {
              if (!(error instanceof ProtocolError)) {
                throw new Error(`push threw ${describeError(error)}, not a ProtocolError; ${context()}`);
              }
              if (expected.errorAt === undefined || fed < expected.errorAt) {
                throw new Error(`threw after ${fed} bytes (${error.message}) but the input is ${expected.errorAt === undefined ? 'valid' : `bad only from byte ${expected.errorAt}`}; ${context()}`);
              }
              threw = true;
              break;
            }
            if (expected.errorAt !== undefined && fed >= expected.errorAt) {
              throw new Error(`did not throw after ${fed} bytes, though byte ${expected.errorAt} makes the input bad; ${context()}`);
            }
            // The bound asked of the decoder, then the exact count the reference implies.
            if (decoder.bufferedBytes > FRAME_HEADER_BYTES + limit + chunk.length) {
              throw new Error(`${decoder.bufferedBytes} bytes buffered after a ${chunk.length}-byte chunk; ${context()}`);
            }
            while (complete < expected.ends.length && (expected.ends[complete] as number) <= fed) complete++;
            const unread = fed - (complete > 0 ? (expected.ends[complete - 1] as number) : 0);
            if (decoded.length !== complete || decoder.bufferedBytes !== unread) {
              throw new Error(
                `after ${fed} bytes: ${decoded.length} frames and ${decoder.bufferedBytes} bytes buffered, expected ${complete} and ${unread}; ${context()}`,
              );
            }
          }
          if (expected.errorAt !== undefined && !threw) throw new Error(`never threw; ${context()}`);
          const mismatch = frameMismatch(decoded, expected.frames.slice(0, decoded.length));
          if (mismatch) throw new Error(`${mismatch}; ${context()}`);
        },
      ),
    );
  });

  it('rejects a declared length over the maximum as soon as its 5 header bytes are in, whatever follows', () => {
    fc.assert(
      fc.property(
        fc.array(smallFrameArb, { maxLength: 3 }),
        frameTypeArb,
        fc.oneof(fc.constantFrom(MAX_FRAME_PAYLOAD + 1, 2 ** 32 - 1), fc.integer({ min: MAX_FRAME_PAYLOAD + 1, max: 2 ** 32 - 1 })),
        fc.uint8Array({ maxLength: 100 }),
        chunkingArb,
        (before, type, length, after, chunking) => {
          const prefix = encodeAll(before);
          const wire = Buffer.concat([prefix, headerBytes(type, length), toBuffer(after)]);
          const headerEnd = prefix.length + FRAME_HEADER_BYTES;
          const chunks = cut(wire, chunking);
          const context = () => `input ${hexOf(wire)} in ${describeChunks(chunks)}`;
          const decoder = new FrameDecoder();
          let fed = 0;
          for (const chunk of chunks) {
            fed += chunk.length;
            let error: unknown;
            try {
              decoder.push(chunk);
            } catch (caught) {
              error = caught;
            }
            if (fed < headerEnd && error !== undefined) throw new Error(`threw after ${fed} bytes, before the oversized header (${describeError(error)}); ${context()}`);
            if (fed >= headerEnd) {
              if (!(error instanceof ProtocolError)) {
                throw new Error(`after the ${headerEnd} bytes that end the header, ${error === undefined ? 'nothing was thrown' : describeError(error)}; ${context()}`);
              }
              return;
            }
          }
          throw new Error(`the input ran out before the header ended; ${context()}`);
        },
      ),
    );
  });

  it('hands back exactly the raw bytes that follow the frames (sticky packet), for any chunking', () => {
    fc.assert(
      fc.property(
        fc.array(smallFrameArb, { maxLength: 6 }),
        fc.oneof(fc.uint8Array({ maxLength: 3000 }), fc.uint8Array({ maxLength: 3000, size: 'max' })).map(toBuffer),
        chunkingArb,
        (frames, raw, chunking) => {
          const wire = Buffer.concat([encodeAll(frames), raw]);
          const chunks = cut(wire, chunking);
          const context = () => `${frames.length} frames then raw ${hexOf(raw, 64)}; input ${hexOf(wire)} in ${describeChunks(chunks)}`;
          const decoder = new FrameDecoder();
          const decoded: Frame[] = [];
          for (const chunk of chunks) {
            decoder.append(chunk);
            // Only as many frames as were sent: what follows is data, however frame-like.
            shiftUpTo(decoder, frames.length, decoded);
          }
          const mismatch = frameMismatch(decoded, frames);
          if (mismatch) throw new Error(`${mismatch}; ${context()}`);
          expect(decoder.bufferedBytes, context()).toBe(raw.length);
          const remainder = decoder.takeRemainder();
          // Channel.readRaw() hands out the first chunk and treats none as EOF: an empty one would be ambiguous.
          expect(remainder.filter((chunk) => chunk.length === 0), context()).toEqual([]);
          expect(hexOf(Buffer.concat(remainder)), context()).toBe(hexOf(raw));
          expect(decoder.bufferedBytes, context()).toBe(0);
        },
      ),
    );
  });

  it('reads bytes put back with prepend() before everything already buffered', () => {
    fc.assert(
      fc.property(
        fc.array(smallFrameArb, { maxLength: 5 }),
        fc.uint8Array({ maxLength: 200 }).map(toBuffer),
        fc.nat(),
        chunkingArb,
        chunkingArb,
        (frames, raw, splitSeed, headChunking, tailChunking) => {
          const wire = Buffer.concat([encodeAll(frames), raw]);
          const split = splitSeed % (wire.length + 1);
          const head = cut(wire.subarray(0, split), headChunking);
          const tail = cut(wire.subarray(split), tailChunking);
          const context = () => `input ${hexOf(wire)}: head ${describeChunks(head)} prepended before tail ${describeChunks(tail)}`;
          const decoder = new FrameDecoder();
          for (const chunk of tail) decoder.append(chunk);
          for (const chunk of [...head].reverse()) decoder.prepend(chunk);
          const decoded = shiftUpTo(decoder, frames.length, []);
          const mismatch = frameMismatch(decoded, frames);
          if (mismatch) throw new Error(`${mismatch}; ${context()}`);
          expect(hexOf(Buffer.concat(decoder.takeRemainder())), context()).toBe(hexOf(raw));
        },
      ),
    );
  });
});

// ---------------------------------------------------------------------------------------
// Payload decoders

/** In an invalid-field case, the field is left out rather than given a bad value. */
const MISSING = Symbol('missing');

interface FieldSpec {
  /** required: absent is an error; optional: in the result iff in the body; defaulted: always in the result. */
  presence: 'required' | 'optional' | 'defaulted';
  /** Values the decoder must accept and return unchanged. */
  valid: fc.Arbitrary<unknown>;
  /** Values (or MISSING) the decoder must refuse with a ProtocolError naming the field. */
  invalid?: fc.Arbitrary<unknown>;
  /** What the decoder guarantees of the value it returns, from the code and PROTOCOL.md. */
  holds: (value: unknown) => boolean;
  /** The value returned when it is not the body's own. */
  expected?: (body: Record<string, unknown>) => unknown;
}

interface DecoderSpec {
  name: string;
  type: FrameTypeCode;
  decode: (frame: Frame) => object;
  fields: Record<string, FieldSpec>;
}

// PROTOCOL.md's lists, written out here rather than imported so a change in src/ shows up.
const REFUSAL_REASONS = ['exists', 'no-space', 'too-large', 'bad-name', 'busy'];
const ERROR_CODES = [
  'FTX_ERR_PROTOCOL',
  'FTX_ERR_CONNECTION_LOST',
  'FTX_ERR_INTEGRITY',
  'FTX_ERR_TIMEOUT',
  'FTX_ERR_LOCAL_IO',
  'FTX_ERR_REMOTE_IO',
  'FTX_ERR_INTERRUPTED',
];
const NAME_MAX_BYTES = 255;
const MAX_MTIME = 8.64e15;

const jsonishArb = fc.jsonValue({ maxDepth: 2 });
const smallObjectArb = fc.dictionary(fc.string({ maxLength: 4 }), fc.integer(), { maxKeys: 2 });
const notNumberArb = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.string({ maxLength: 8 }),
  fc.constantFrom('0', '1', '1e3', '', ' 7'),
  fc.array(fc.integer(), { maxLength: 2 }),
  smallObjectArb,
);
const notStringArb = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.integer(),
  fc.double({ noNaN: true }),
  fc.array(fc.string({ maxLength: 3 }), { maxLength: 2 }),
  smallObjectArb,
);

/** Single UTF-16 code units, lone surrogates included: JSON carries those as \uXXXX escapes. */
const codeUnitArb = fc.integer({ min: 0, max: 0xffff }).map((code) => String.fromCharCode(code));

/** Strings of at most `maxUnits` UTF-16 code units (JavaScript's `length`). */
function textArb(maxUnits: number): fc.Arbitrary<string> {
  return fc
    .oneof(
      fc.string({ unit: 'binary', maxLength: maxUnits }),
      fc.string({ unit: codeUnitArb, maxLength: maxUnits }),
      fc.string({ unit: 'grapheme-ascii', minLength: Math.max(0, maxUnits - 2), maxLength: maxUnits }),
    )
    .filter((text) => text.length <= maxUnits);
}

function badTextArb(maxUnits: number): fc.Arbitrary<unknown> {
  return fc.oneof(
    fc.constant(MISSING),
    notStringArb,
    fc.string({ unit: 'grapheme-ascii', minLength: maxUnits + 1, maxLength: maxUnits + 20 }),
  );
}

function text(maxUnits: number, presence: FieldSpec['presence'] = 'required'): FieldSpec {
  const invalid = badTextArb(maxUnits);
  return {
    presence,
    valid: textArb(maxUnits),
    invalid: presence === 'required' ? invalid : invalid.filter((value) => value !== MISSING),
    holds: (value) => typeof value === 'string' && value.length <= maxUnits,
  };
}

const isByteCount = (value: unknown) => typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
const byteCountArb = fc.oneof(fc.maxSafeNat(), fc.constantFrom(0, 1, Number.MAX_SAFE_INTEGER));
const badByteCountArb = fc.oneof(
  fc.constant(MISSING),
  notNumberArb,
  fc.integer({ max: -1 }),
  fc.double({ noNaN: true, noDefaultInfinity: true }).filter((value) => !Number.isInteger(value)),
  fc.constantFrom(2 ** 53, 2 ** 53 + 2, 1e21, 1e300, -0.5, 0.5),
);
const byteCount: FieldSpec = { presence: 'required', valid: byteCountArb, invalid: badByteCountArb, holds: isByteCount };

const HASHES = ['sha256', 'xxh128'];
const badHashArb = fc.oneof(
  fc.constant(MISSING),
  notStringArb,
  fc.constantFrom('SHA256', 'sha-256', 'sha256 ', ' sha256', 'md5', 'sha512', 'XXH128', 'xxh3', ''),
  fc.string({ maxLength: 8 }).filter((value) => !HASHES.includes(value)),
);
/**
 * In Trailer and Receipt the digest's length follows the algorithm, so these field-by-field
 * specs pin the algorithm to sha256 (64 hex digits); xxh128 pairs are checked on their own below.
 */
const hash: FieldSpec = { presence: 'required', valid: fc.constant('sha256'), invalid: badHashArb, holds: (value) => value === 'sha256' };
/** In a Header the algorithm stands alone: either is valid. */
const headerHash: FieldSpec = {
  presence: 'required',
  valid: fc.constantFrom(...HASHES),
  invalid: badHashArb,
  holds: (value) => typeof value === 'string' && HASHES.includes(value),
};

const hex64Arb = fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: 64, maxLength: 64 });
const digest: FieldSpec = {
  presence: 'required',
  valid: hex64Arb,
  invalid: fc.oneof(
    fc.constant(MISSING),
    notStringArb,
    hex64Arb.map((hex) => `A${hex.slice(1)}`),
    hex64Arb.map((hex) => hex.slice(1)),
    hex64Arb.map((hex) => `${hex}0`),
    hex64Arb.map((hex) => `${hex}\n`),
    hex64Arb.map((hex) => `\n${hex.slice(1)}`),
    fc.string({ maxLength: 70 }),
  ),
  holds: (value) => typeof value === 'string' && /^[0-9a-f]{64}$/.test(value),
};

/** Header names at the 255-byte limit in 1-, 2-, 3- and 4-byte UTF-8 characters. */
const NAMES_AT_LIMIT = ['a'.repeat(255), `${'é'.repeat(127)}a`, '€'.repeat(85), `${'😀'.repeat(63)}abc`];
const NAMES_OVER_LIMIT = ['a'.repeat(256), 'é'.repeat(128), '€'.repeat(86), '😀'.repeat(64)];

const fileNameSpec: FieldSpec = {
  presence: 'required',
  valid: fc
    .oneof(textArb(NAME_MAX_BYTES), fc.constantFrom(...NAMES_AT_LIMIT))
    .filter((name) => name.length > 0 && Buffer.byteLength(name, 'utf8') <= NAME_MAX_BYTES),
  invalid: fc.oneof(
    fc.constant(MISSING),
    notStringArb,
    fc.constant(''),
    fc.constantFrom(...NAMES_OVER_LIMIT, '€'.repeat(255)),
    fc.string({ unit: 'binary', minLength: 86, maxLength: 140 }).filter((name) => Buffer.byteLength(name, 'utf8') > NAME_MAX_BYTES),
  ),
  holds: (value) => typeof value === 'string' && value.length > 0 && Buffer.byteLength(value, 'utf8') <= NAME_MAX_BYTES,
};

const SPECS: DecoderSpec[] = [
  {
    name: 'decodeGreeting',
    type: FrameType.Greeting,
    decode: decodeGreeting,
    fields: {
      protocol: {
        presence: 'required',
        valid: fc.constant('ftx'),
        invalid: fc.oneof(fc.constant(MISSING), notStringArb, fc.constantFrom('FTX', 'ftx ', 'ftx2', ''), fc.string({ maxLength: 5 }).filter((value) => value !== 'ftx')),
        holds: (value) => value === 'ftx',
      },
      version: {
        presence: 'required',
        valid: fc.oneof(fc.integer({ min: 1 }), fc.constant(Number.MAX_SAFE_INTEGER)),
        invalid: fc.oneof(fc.constant(MISSING), notNumberArb, fc.integer({ max: 0 }), fc.constantFrom(1.5, 2 ** 53, -1)),
        holds: (value) => typeof value === 'number' && Number.isSafeInteger(value) && value >= 1,
      },
      software: text(100, 'optional'),
    },
  },
  {
    name: 'decodeHeader',
    type: FrameType.Header,
    decode: decodeHeader,
    fields: {
      // PROTOCOL.md: 1 to 255 bytes of UTF-8.
      name: fileNameSpec,
      size: byteCount,
      hash: headerHash,
      mode: {
        presence: 'optional',
        valid: fc.integer({ min: 0, max: 0o7777 }),
        invalid: fc.oneof(notNumberArb, fc.integer({ max: -1 }), fc.integer({ min: 0o10000 }), fc.constantFrom(1.5, 0o644 + 0.5, 2 ** 53)),
        holds: (value) => typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= 0o7777,
      },
      mtime: {
        presence: 'optional',
        valid: fc
          .oneof(fc.double({ min: -MAX_MTIME, max: MAX_MTIME, noNaN: true }), fc.constantFrom(MAX_MTIME, -MAX_MTIME, 0, 1_764_486_378_000))
          .map((value) => (Object.is(value, -0) ? 0 : value)),
        invalid: fc.oneof(
          notNumberArb,
          fc.double({ min: MAX_MTIME, minExcluded: true, noNaN: true }),
          fc.double({ max: -MAX_MTIME, maxExcluded: true, noNaN: true }),
          fc.constantFrom(MAX_MTIME + 1, -MAX_MTIME - 1),
        ),
        holds: (value) => typeof value === 'number' && Number.isFinite(value) && Math.abs(value) <= MAX_MTIME,
      },
    },
  },
  {
    name: 'decodeAccept',
    type: FrameType.Accept,
    decode: decodeAccept,
    fields: {
      offset: {
        presence: 'required',
        valid: fc.constant(0),
        invalid: fc.oneof(badByteCountArb, fc.integer({ min: 1 }), fc.constant(Number.MAX_SAFE_INTEGER)),
        holds: (value) => value === 0,
      },
    },
  },
  {
    name: 'decodeRefuse',
    type: FrameType.Refuse,
    decode: decodeRefuse,
    fields: {
      reason: {
        presence: 'required',
        valid: fc.constantFrom(...REFUSAL_REASONS),
        invalid: fc.oneof(
          fc.constant(MISSING),
          notStringArb,
          fc.constantFrom('Exists', 'busy ', 'no_space', ''),
          fc.string({ maxLength: 9 }).filter((value) => !REFUSAL_REASONS.includes(value)),
        ),
        holds: (value) => typeof value === 'string' && REFUSAL_REASONS.includes(value),
      },
      message: text(1024),
    },
  },
  {
    name: 'decodeTrailer',
    type: FrameType.Trailer,
    decode: decodeTrailer,
    fields: { hash, digest },
  },
  {
    name: 'decodeReceipt',
    type: FrameType.Receipt,
    decode: decodeReceipt,
    fields: {
      bytes: byteCount,
      hash,
      digest,
      name: fileNameSpec,
    },
  },
  {
    name: 'decodeError',
    type: FrameType.Error,
    decode: decodeError,
    fields: {
      // Any code is accepted; one that is not in PROTOCOL.md's list reads as FTX_ERR_PROTOCOL.
      code: {
        presence: 'defaulted',
        valid: fc.constantFrom(...ERROR_CODES),
        holds: (value) => typeof value === 'string' && ERROR_CODES.includes(value),
        expected: (body) => (ERROR_CODES.includes(body.code as string) ? body.code : 'FTX_ERR_PROTOCOL'),
      },
      message: text(1024),
    },
  },
  {
    name: 'decodePing',
    type: FrameType.Ping,
    decode: decodePing,
    fields: { message: text(1024) },
  },
  {
    name: 'decodePong',
    type: FrameType.Pong,
    decode: decodePong,
    fields: {
      reply: text(2048),
      version: {
        presence: 'required',
        valid: fc.oneof(fc.integer(), fc.constantFrom(Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER)),
        invalid: fc.oneof(fc.constant(MISSING), notNumberArb, fc.constantFrom(1.5, 2 ** 53, -(2 ** 53), 1e300)),
        holds: (value) => typeof value === 'number' && Number.isSafeInteger(value),
      },
      time: { ...text(64), valid: fc.oneof(textArb(64), fc.constant(new Date(0).toISOString())) },
    },
  },
];

function utf8Json(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value) ?? 'undefined', 'utf8');
}

function withoutMissing(body: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(body).filter(([, value]) => value !== MISSING));
}

function validBodyArb(spec: DecoderSpec): fc.Arbitrary<Record<string, unknown>> {
  const model = Object.fromEntries(Object.entries(spec.fields).map(([key, field]) => [key, field.valid]));
  const requiredKeys = Object.entries(spec.fields)
    .filter(([, field]) => field.presence === 'required')
    .map(([key]) => key);
  return fc.record(model, { requiredKeys }) as fc.Arbitrary<Record<string, unknown>>;
}

/** Unknown fields, which PROTOCOL.md says a decoder must ignore. */
function extrasArb(spec: DecoderSpec): fc.Arbitrary<Record<string, unknown>> {
  return fc.dictionary(
    fc.string({ maxLength: 8 }).filter((key) => !Object.hasOwn(spec.fields, key)),
    jsonishArb,
    { maxKeys: 3 },
  );
}

/** Payloads of every kind: bytes, any JSON, anything serialised, the right keys with any values. */
function anyPayloadArb(spec: DecoderSpec): fc.Arbitrary<Buffer> {
  const mixedModel = Object.fromEntries(
    Object.entries(spec.fields).map(([key, field]) => [key, fc.oneof(field.valid, field.invalid ?? field.valid, jsonishArb)]),
  );
  const mixedBodyArb = fc.record(mixedModel, { requiredKeys: [] }) as fc.Arbitrary<Record<string, unknown>>;
  return fc.oneof(
    fc.uint8Array({ maxLength: 64 }).map(toBuffer),
    fc.json().map((json) => Buffer.from(json, 'utf8')),
    fc.anything().map(utf8Json),
    mixedBodyArb.map((body) => utf8Json(withoutMissing(body))),
    fc.tuple(validBodyArb(spec), extrasArb(spec)).map(([body, extras]) => utf8Json({ ...extras, ...body })),
  );
}

/** The object a decoder must return for a body it accepts. */
function expectedResult(spec: DecoderSpec, body: Record<string, unknown>): Record<string, unknown> {
  const result: Record<string, unknown> = {};
  for (const [key, field] of Object.entries(spec.fields)) {
    if (field.expected) result[key] = field.expected(body);
    else if (Object.hasOwn(body, key)) result[key] = body[key];
  }
  return result;
}

function describePayload(payload: Buffer): string {
  return `payload ${hexOf(payload, 256)} (${JSON.stringify(payload.toString('utf8').slice(0, 200))})`;
}

describe('payload decoder properties', () => {
  for (const spec of SPECS) {
    describe(spec.name, () => {
      it('returns a fully checked object or throws ProtocolError, for any payload and frame type', () => {
        fc.assert(
          fc.property(
            fc.oneof({ weight: 9, arbitrary: fc.constant(spec.type) }, { weight: 1, arbitrary: frameTypeArb }),
            anyPayloadArb(spec),
            (type, payload) => {
              const context = `${spec.name} of a ${frameTypeName(type)} frame, ${describePayload(payload)}`;
              let result: Record<string, unknown>;
              try {
                result = spec.decode({ type, payload }) as Record<string, unknown>;
              } catch (error) {
                if (error instanceof ProtocolError) return;
                throw new Error(`${context}: threw ${describeError(error)} instead of a ProtocolError`);
              }
              expect(type, `${context}: accepted the wrong frame type`).toBe(spec.type);
              const body: unknown = JSON.parse(payload.toString('utf8'));
              expect(typeof body === 'object' && body !== null && !Array.isArray(body), `${context}: accepted a non-object`).toBe(true);
              expect(result, context).toStrictEqual(expectedResult(spec, body as Record<string, unknown>));
              for (const [key, field] of Object.entries(spec.fields)) {
                if (field.presence !== 'optional') expect(Object.hasOwn(result, key), `${context}: "${key}" is missing`).toBe(true);
                if (Object.hasOwn(result, key) && !field.holds(result[key])) {
                  throw new Error(`${context}: returned "${key}" = ${JSON.stringify(result[key])}, which breaks its constraint`);
                }
              }
            },
          ),
        );
      });

      it('decodes every valid object, with unknown fields ignored, to an equal object', () => {
        fc.assert(
          fc.property(validBodyArb(spec), extrasArb(spec), (body, extras) => {
            const payload = utf8Json({ ...extras, ...body });
            const context = `${spec.name}, ${describePayload(payload)}`;
            let result: object;
            try {
              result = spec.decode({ type: spec.type, payload });
            } catch (error) {
              throw new Error(`${context}: refused a valid object: ${describeError(error)}`);
            }
            expect(result, context).toStrictEqual(expectedResult(spec, body));
          }),
        );
      });

      const checkedFields = Object.entries(spec.fields).flatMap(([key, field]) => (field.invalid ? [{ key, invalid: field.invalid }] : []));
      if (checkedFields.length > 0) {
        it('refuses an otherwise valid object with one bad or missing field, naming the field', () => {
          const badFieldArb = fc
            .constantFrom(...checkedFields)
            .chain(({ key, invalid }) => fc.tuple(fc.constant(key), invalid));
          fc.assert(
            fc.property(validBodyArb(spec), badFieldArb, (body, [key, bad]) => {
              const sent: Record<string, unknown> = { ...body };
              if (bad === MISSING) delete sent[key];
              else sent[key] = bad;
              const payload = utf8Json(sent);
              const context = `${spec.name} with "${key}" ${bad === MISSING ? 'missing' : `= ${JSON.stringify(bad)}`}, ${describePayload(payload)}`;
              let error: unknown;
              try {
                spec.decode({ type: spec.type, payload });
              } catch (caught) {
                error = caught;
              }
              if (!(error instanceof ProtocolError)) {
                throw new Error(`${context}: ${error === undefined ? 'accepted it' : `threw ${describeError(error)}`}`);
              }
              expect(error.message, context).toContain(`"${key}"`);
            }),
          );
        });
      }
    });
  }
});

// ---------------------------------------------------------------------------------------
// File names

const controlCharacterArb = fc
  .oneof(fc.integer({ min: 0, max: 0x1f }), fc.integer({ min: 0x7f, max: 0x9f }))
  .map((code) => String.fromCharCode(code));

/** Pieces of names: any code point, lone code units, and the characters a name check is about. */
const nameUnitArb = fc.oneof(
  { weight: 3, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }) },
  {
    weight: 2,
    arbitrary: fc.constantFrom('/', '\\', '.', ' ', ':', '~', '-', 'a', 'Z', 'e\u0301', '\u00a0', '\u2028', '\u2029', '\u202e', '\u2066', '\u200b', '\u200d', '\ufeff', '\u00ad', '\ufe0f', '\u2215', '\uff0e', '\uff0f', '\u2025', '\u3000'),
  },
  { weight: 1, arbitrary: controlCharacterArb },
  { weight: 1, arbitrary: codeUnitArb },
  { weight: 1, arbitrary: fc.constantFrom('..', '../', 'con', 'NUL', 'com1', 'lpt9', '.ftx-part') },
);

const nameArb = fc.oneof(
  fc.string({ unit: nameUnitArb, maxLength: 12 }),
  fc.string({ unit: nameUnitArb, minLength: 60, maxLength: 270, size: 'max' }),
  fc.string({ unit: 'grapheme', maxLength: 40 }),
);

function describeName(name: string): string {
  return `${JSON.stringify(name)} (UTF-8 ${hexOf(Buffer.from(name, 'utf8'), 128)})`;
}

/** A variation selector: accepted only right after a character it changes (names.ts). */
const VARIATION_SELECTOR = /[\u180b-\u180d\u180f\ufe00-\ufe0f\u{e0100}-\u{e01ef}]/u;

/**
 * Every character a reader cannot see or that turns text around: the format characters
 * (Cf: bidi controls, zero-width characters, BOM, tags) and the other default-ignorable
 * code points (Hangul fillers, combining grapheme joiner), variation selectors aside.
 * Found by trying every code point once (about 0.1 s).
 */
const INVISIBLE_CHARACTERS: string[] = [];
for (let code = 0; code <= 0x10ffff; code++) {
  if (code >= 0xd800 && code <= 0xdfff) continue;
  const character = String.fromCodePoint(code);
  if (/[\p{Cf}\p{Default_Ignorable_Code_Point}]/u.test(character) && !VARIATION_SELECTOR.test(character)) INVISIBLE_CHARACTERS.push(character);
}
const invisibleCharacterArb = fc.oneof(
  fc.constantFrom(...INVISIBLE_CHARACTERS),
  fc.constantFrom('\u202e', '\u2066', '\u200b', '\u200d', '\ufeff', '\u00ad', '\u3164'),
);

const DEVICE_NAMES = ['con', 'prn', 'aux', 'nul', 'conin$', 'conout$', ...[...'0123456789'].flatMap((digit) => [`com${digit}`, `lpt${digit}`])];
const shortNameArb = fc.string({ unit: nameUnitArb, maxLength: 10 });

const hostileNameArb = fc.oneof(
  // Climbing out of the folder.
  fc
    .tuple(fc.integer({ min: 1, max: 4 }), fc.constantFrom('../', '..\\', '../..'), shortNameArb)
    .map(([times, up, rest]) => up.repeat(times) + rest),
  // Absolute paths.
  fc.tuple(fc.constantFrom('/', '\\', 'C:\\', '\\\\server\\share\\', '/etc/'), shortNameArb).map(([root, rest]) => root + rest),
  // A separator anywhere.
  fc.tuple(shortNameArb, fc.constantFrom('/', '\\'), shortNameArb).map(([before, separator, after]) => before + separator + after),
  // A control character anywhere.
  fc.tuple(shortNameArb, controlCharacterArb, shortNameArb).map(([before, control, after]) => before + control + after),
  fc.constantFrom('', '.', '..'),
  // What Windows would silently trim.
  fc.tuple(shortNameArb, fc.constantFrom('.', ' ', '. ', ' .')).map(([stem, end]) => stem + end),
  // Device names, in any case, with or without an extension.
  fc
    .tuple(fc.mixedCase(fc.constantFrom(...DEVICE_NAMES)), fc.option(fc.string({ unit: 'grapheme-ascii', maxLength: 5 }), { nil: undefined }))
    .map(([device, extension]) => (extension === undefined ? device : `${device}.${extension}`)),
  // Names of ftx's own temporary files, in any case (one file where case folds).
  fc.tuple(shortNameArb, fc.mixedCase(fc.constant('.ftx-part'))).map(([stem, suffix]) => `.${stem}${suffix}`),
  // An invisible or direction-changing character (any format character) or a line or
  // paragraph separator anywhere.
  fc.tuple(shortNameArb, fc.oneof(invisibleCharacterArb, fc.constantFrom('\u2028', '\u2029')), shortNameArb).map(([before, bad, after]) => before + bad + after),
  // Wide and small dots that read as "." or "..", a wide or small slash anywhere, and a
  // wide dot or space at the end.
  fc.constantFrom('\uff0e', '\uff0e\uff0e', '.\uff0e', '\u2024', '\u2025', '\ufe52\ufe52'),
  fc.tuple(shortNameArb, fc.constantFrom('\uff0f', '\uff3c', '\ufe68'), shortNameArb).map(([before, slash, after]) => before + slash + after),
  fc.tuple(shortNameArb, fc.constantFrom('\uff0e', '\u3000', '\u00a0', '\u2024')).map(([stem, end]) => stem + end),
  // Over 255 bytes.
  fc.string({ unit: 'binary', minLength: 64, maxLength: 300, size: 'max' }).filter((name) => Buffer.byteLength(name, 'utf8') > NAME_MAX_BYTES),
);

describe('problemWithName properties', () => {
  it('accepts only a plain name that stays directly inside the folder, as sent and as stored', () => {
    fc.assert(
      fc.property(nameArb, (sent) => {
        if (problemWithName(sent) !== undefined) return;
        const stored = canonicalName(sent);
        for (const [form, name] of [
          ['sent', sent],
          ['stored', stored],
        ] as const) {
          const context = `accepted ${describeName(sent)}, ${form} as ${describeName(name)}`;
          expect(name.length, context).toBeGreaterThan(0);
          expect(Buffer.byteLength(name, 'utf8'), context).toBeLessThanOrEqual(NAME_MAX_BYTES);
          expect(['.', '..'], context).not.toContain(name);
          for (let index = 0; index < name.length; index++) {
            const code = name.charCodeAt(index);
            const bad = code === 0x2f || code === 0x5c || code < 0x20 || (code >= 0x7f && code <= 0x9f);
            if (bad) throw new Error(`${context}: character ${index} is U+${code.toString(16).padStart(4, '0')}`);
          }
          expect(/[. ]$/.test(name), `${context}: ends with a dot or a space`).toBe(false);
          const joined = posix.join('/safe/folder', name);
          expect(joined, context).toBe(`/safe/folder/${name}`);
          expect(posix.dirname(joined), context).toBe('/safe/folder');
          expect(win32.dirname(win32.join('C:\\safe\\folder', name)), context).toBe('C:\\safe\\folder');
          // A name must also get through the Header decoder unchanged (the sender sends it as is).
          const header = decodeHeader({ type: FrameType.Header, payload: utf8Json({ name, size: 0, hash: 'sha256' }) });
          expect(header.name, context).toBe(name);
        }
        const context = `accepted ${describeName(sent)}`;
        // Nothing a reader cannot see, except a variation selector drawing the character before it.
        const characters = [...stored];
        for (const [index, character] of characters.entries()) {
          if (!/[\p{Cf}\p{Default_Ignorable_Code_Point}\p{Zl}\p{Zp}]/u.test(character)) continue;
          const before = characters[index - 1];
          const drawsBefore = VARIATION_SELECTOR.test(character) && before !== undefined && !/[\p{Cf}\p{Default_Ignorable_Code_Point}]/u.test(before);
          if (!drawsBefore) throw new Error(`${context}: character ${index} is invisible (U+${character.codePointAt(0)!.toString(16)})`);
        }
        // Wide or small dots and slashes must not make a path once made plain (NFKC, best-fit).
        const plain = stored.normalize('NFKC');
        expect(['.', '..'], `${context}: NFKC ${describeName(plain)}`).not.toContain(plain);
        expect(/[/\\]|[. ]$/.test(plain), `${context}: NFKC ${describeName(plain)}`).toBe(false);
      }),
      { numRuns: 1000 },
    );
  });

  it('gives the NFC and NFD spellings of a name the same verdict and the same stored name', () => {
    fc.assert(
      fc.property(fc.oneof(nameArb, fc.string({ unit: 'grapheme-composite', maxLength: 30 })), (name) => {
        const composed = name.normalize('NFC');
        const decomposed = name.normalize('NFD');
        const context = `${describeName(composed)} and ${describeName(decomposed)}`;
        expect(canonicalName(decomposed), context).toBe(canonicalName(composed));
        if (Buffer.byteLength(decomposed, 'utf8') <= NAME_MAX_BYTES) {
          expect(problemWithName(decomposed), context).toBe(problemWithName(composed));
        } else {
          // The sent form has to fit in a Header too, so a longer decomposed one is refused.
          expect(problemWithName(decomposed), context).toEqual(expect.any(String));
        }
      }),
      { numRuns: 1000 },
    );
  });

  it('gives a name in upper and in lower case the same case-fold key', () => {
    fc.assert(
      fc.property(fc.oneof(nameArb, fc.string({ unit: 'grapheme', maxLength: 30 })), (name) => {
        const key = caseFoldKey(name);
        const context = `${describeName(name)} has key ${describeName(key)}`;
        expect(caseFoldKey(name.toUpperCase()), context).toBe(key);
        expect(caseFoldKey(name.toLowerCase()), context).toBe(key);
        expect(caseFoldKey(name.normalize('NFD')), context).toBe(key);
        expect(caseFoldKey(key), context).toBe(key);
      }),
      { numRuns: 1000 },
    );
  });

  it('refuses every hostile name', () => {
    fc.assert(
      fc.property(hostileNameArb, (name) => {
        expect(problemWithName(name), `accepted ${describeName(name)}`).toEqual(expect.any(String));
      }),
      { numRuns: 1000 },
    );
  });

  // Regression (found by this property): a lone UTF-16 surrogate, which a JSON header can
  // carry ("\ud800"), used to pass; Node writes it as U+FFFD, so the file would have been
  // stored under a different name than the one sent.
  it('accepts only names that survive UTF-8 encoding unchanged', () => {
    const loneSurrogateNameArb = fc
      .tuple(fc.string({ unit: 'grapheme-ascii', maxLength: 5 }), fc.integer({ min: 0xd800, max: 0xdfff }), fc.constantFrom('a', '.txt', 'x.bin'))
      .map(([before, code, after]) => before + String.fromCharCode(code) + after);
    fc.assert(
      fc.property(fc.oneof(nameArb, loneSurrogateNameArb), (name) => {
        if (problemWithName(name) !== undefined) return;
        expect(Buffer.from(name, 'utf8').toString('utf8'), `accepted ${describeName(name)}, which UTF-8 rewrites`).toBe(name);
      }),
    );
  });
});

// ---------------------------------------------------------------------------------------
// The classic size

/**
 * The quiet window for these tests, and the longest gap between two writes. The margin
 * (over 70 ms) absorbs a busy event loop on a loaded CI machine; the real window is 200 ms.
 */
const QUIET_MS = 80;
const MAX_GAP_MS = 8;

const gapsArb = fc.array(fc.integer({ min: 0, max: MAX_GAP_MS }), { minLength: 1, maxLength: 4 });

type SizeOutcome = { size: number } | { error: unknown };

interface ClassicRun {
  outcome: SizeOutcome;
  channel: Channel;
  stream: PassThrough;
}

/** Writes `parts` into a channel with the given gaps (cycled) while readClassicSize reads. */
async function readSizeFrom(parts: Buffer[], gaps: number[]): Promise<ClassicRun> {
  const stream = new PassThrough();
  const channel = new Channel(stream, { peerRole: 'the test sender' });
  const reading = readClassicSize(channel, QUIET_MS).then(
    (size): SizeOutcome => ({ size }),
    (error: unknown): SizeOutcome => ({ error }),
  );
  for (const [index, part] of parts.entries()) {
    if (index > 0) await sleep(gaps[index % gaps.length] ?? 0);
    stream.write(part);
  }
  return { outcome: await reading, channel, stream };
}

const nonDigitByteArb = fc.integer({ min: 0, max: 255 }).filter((byte) => byte < 0x30 || byte > 0x39);

describe('readClassicSize properties', () => {
  it('reads any safe integer, however its digits are split, then hands back what follows', async () => {
    // Any safe integer, sometimes with leading zeros (16 digits at most, PROTOCOL.md).
    const sizeArb = fc
      .tuple(fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 15 })), fc.oneof(fc.maxSafeNat(), fc.constantFrom(0, Number.MAX_SAFE_INTEGER)))
      .map(([zeros, size]) => ({ size, digits: '0'.repeat(zeros) + String(size) }))
      .filter(({ digits }) => digits.length <= 16);
    const dataArb = fc.oneof(
      fc.constant(Buffer.alloc(0)),
      fc.tuple(nonDigitByteArb, fc.uint8Array({ maxLength: 20 })).map(([first, rest]) => Buffer.concat([Buffer.from([first]), rest])),
    );
    await fc.assert(
      fc.asyncProperty(sizeArb, dataArb, chunkingArb, gapsArb, async ({ size, digits }, data, chunking, gaps) => {
        const wire = Buffer.concat([Buffer.from(digits, 'latin1'), data]);
        const parts = cut(wire, chunking);
        const context = `input ${hexOf(wire)} (${JSON.stringify(digits)} then ${data.length} bytes) in ${describeChunks(parts)}, gaps ${gaps.join(',')} ms`;
        const { outcome, channel, stream } = await readSizeFrom(parts, gaps);
        try {
          if ('error' in outcome) throw new Error(`${context}: rejected with ${describeError(outcome.error)}`);
          expect(outcome.size, context).toBe(size);
          const rest: Buffer[] = [];
          let restBytes = 0;
          while (restBytes < data.length) {
            const chunk = await channel.readRaw();
            if (!chunk) break;
            rest.push(chunk);
            restBytes += chunk.length;
          }
          stream.end();
          const extra = await channel.readRaw();
          if (extra) rest.push(extra);
          expect(hexOf(Buffer.concat(rest)), `${context}: bytes after the size`).toBe(hexOf(data));
        } finally {
          stream.destroy();
        }
      }),
      { numRuns: 30 },
    );
  });

  it('refuses more than 16 digits with a ProtocolError', async () => {
    const digitsArb = fc.string({ unit: fc.constantFrom(...'0123456789'), minLength: 17, maxLength: 40 });
    await fc.assert(
      fc.asyncProperty(digitsArb, chunkingArb, gapsArb, async (digits, chunking, gaps) => {
        const parts = cut(Buffer.from(digits, 'latin1'), chunking);
        const context = `input ${JSON.stringify(digits)} in ${describeChunks(parts)}, gaps ${gaps.join(',')} ms`;
        const { outcome, stream } = await readSizeFrom(parts, gaps);
        stream.destroy();
        if (!('error' in outcome)) throw new Error(`${context}: resolved to ${outcome.size}`);
        if (!(outcome.error instanceof ProtocolError)) throw new Error(`${context}: rejected with ${describeError(outcome.error)}, not a ProtocolError`);
      }),
      { numRuns: 20 },
    );
  });

  // Regression (found by this property): 16 digits reach 9 999 999 999 999 999, beyond
  // 2^53 - 1; "9007199254740993" used to resolve to 9007199254740992.
  it('never resolves to a size it cannot hold exactly', async () => {
    const unsafeDigitsArb = fc.bigInt({ min: 2n ** 53n, max: 10n ** 16n - 1n }).map(String);
    await fc.assert(
      // A non-digit after the size ends it at once, without waiting for the quiet window.
      fc.asyncProperty(unsafeDigitsArb, async (digits) => {
        const { outcome, stream } = await readSizeFrom([Buffer.from(`${digits}x`, 'latin1')], [0]);
        stream.destroy();
        if ('error' in outcome) {
          expect(outcome.error, `input ${JSON.stringify(digits)}`).toBeInstanceOf(ProtocolError);
          return;
        }
        expect(Number.isSafeInteger(outcome.size) && String(outcome.size) === digits, `input ${JSON.stringify(digits)} resolved to ${outcome.size}`).toBe(true);
      }),
      { numRuns: 10 },
    );
  });
});

describe('digest length follows the algorithm', () => {
  const hexArb = (length: number) => fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: length, maxLength: length });
  const frameOf = (type: typeof FrameType.Trailer | typeof FrameType.Receipt, body: object) => ({ type, payload: Buffer.from(JSON.stringify(body)) });

  it('accepts 32 hex digits for xxh128 and 64 for sha256, and refuses the swap', () => {
    fc.assert(
      fc.property(hexArb(32), hexArb(64), (short, long) => {
        expect(decodeTrailer(frameOf(FrameType.Trailer, { hash: 'xxh128', digest: short }))).toEqual({ hash: 'xxh128', digest: short });
        expect(decodeTrailer(frameOf(FrameType.Trailer, { hash: 'sha256', digest: long }))).toEqual({ hash: 'sha256', digest: long });
        expect(() => decodeTrailer(frameOf(FrameType.Trailer, { hash: 'xxh128', digest: long }))).toThrow(ProtocolError);
        expect(() => decodeReceipt(frameOf(FrameType.Receipt, { bytes: 1, hash: 'sha256', digest: short, name: 'x' }))).toThrow(/"digest"/);
      }),
      { numRuns: 200 },
    );
  });
});
