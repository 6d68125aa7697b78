/**
 * Property tests (fast-check) for the frame decoder (src/framing.ts), which parses
 * untrusted bytes: any frames under any chunking, arbitrary bytes, oversized lengths, the
 * raw bytes that follow the frames, and bytes put back with prepend().
 *
 * Inputs come from a fixed seed (SEED in helpers/arbitraries.ts), so CI runs the same
 * cases every time. A failure prints the shrunk counterexample with the seed and path that
 * replay it; the checks written by hand also name their input in hex and the chunking
 * they used.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ProtocolError } from '../src/errors.js';
import { dataFrameHeader, encodeFrame, FRAME_HEADER_BYTES, FrameDecoder, FrameType, frameTypeName, MAX_DATA_FRAME, MAX_FRAME_PAYLOAD, type Frame, type FrameTypeCode } from '../src/framing.js';
import { chunkingArb, cut, describeChunks, describeError, FRAME_TYPES, frameTypeArb, hexOf, toBuffer } from './helpers/arbitraries.js';
import { seededRandom } from './helpers/random.js';

const KNOWN_TYPES = new Set<number>(FRAME_TYPES);

/** Types whose payload the decoder assembles: all but Data, whose bytes are raw and the caller's. */
const framedTypeArb = fc.constantFrom(...FRAME_TYPES.filter((type) => type !== FrameType.Data));

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
  type: framedTypeArb,
  payload: fc.oneof({ weight: 30, arbitrary: smallPayloadArb }, { weight: 1, arbitrary: maxPayloadArb }),
});

const smallFrameArb: fc.Arbitrary<Frame> = fc.record({ type: framedTypeArb, payload: smallPayloadArb });

function encodeAll(frames: readonly Frame[]): Buffer {
  return Buffer.concat(frames.map((frame) => encodeFrame(frame.type, frame.payload)));
}

/** Shifts frames into `decoded` until it holds `count` of them or the decoder needs more bytes. */
function shiftUpTo(decoder: FrameDecoder, count: number, decoded: Frame[]): Frame[] {
  while (decoded.length < count) {
    const frame = decoder.shift();
    if (!frame) break;
    decoded.push(frame);
  }
  return decoded;
}

/** Why `actual` differs from `expected`, or undefined if they are the same frames. */
function frameMismatch(actual: readonly Frame[], expected: readonly Frame[]): string | undefined {
  for (let index = 0; index < Math.max(actual.length, expected.length); index++) {
    const got = actual[index];
    const want = expected[index];
    if (!got || !want) return `${actual.length} frames instead of ${expected.length}`;
    if (got.type !== want.type || !Buffer.isBuffer(got.payload) || !got.payload.equals(want.payload) || got.rawLength !== want.rawLength) {
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
  /** Set when the last frame is a Data frame: every byte after it is raw data, not frames. */
  rawFollows?: boolean;
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
    if (type === FrameType.Data) {
      // A Data frame's limit is its own, and what follows its header is not for the decoder.
      if (length > MAX_DATA_FRAME) return { ...result, errorAt: offset + FRAME_HEADER_BYTES };
      result.frames.push({ type: FrameType.Data, payload: Buffer.alloc(0), rawLength: length });
      result.ends.push(offset + FRAME_HEADER_BYTES);
      return { ...result, rawFollows: true };
    }
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
            // After a Data frame the bytes are the caller's to take; a real caller would read them now.
            if (decoded.at(-1)?.type === FrameType.Data) break;
          }
          if (expected.errorAt !== undefined && !threw && decoded.at(-1)?.type !== FrameType.Data) throw new Error(`never threw; ${context()}`);
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
        framedTypeArb,
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

  it('returns a Data frame from its 5 header bytes alone and leaves the bytes after it, however frame-like, to the caller', () => {
    fc.assert(
      fc.property(
        fc.array(smallFrameArb, { maxLength: 4 }),
        fc.oneof(fc.integer({ min: 0, max: 64 }), fc.integer({ min: 0, max: MAX_DATA_FRAME }), fc.constantFrom(MAX_DATA_FRAME, MAX_DATA_FRAME + 1, 2 ** 32 - 1)),
        fc.array(smallFrameArb, { maxLength: 3 }),
        chunkingArb,
        (before, length, after, chunking) => {
          const prefix = encodeAll(before);
          const tail = encodeAll(after);
          const wire = Buffer.concat([prefix, dataFrameHeader(length), tail]);
          const chunks = cut(wire, chunking);
          const context = () => `Data of ${length} after ${before.length} frames; input ${hexOf(wire)} in ${describeChunks(chunks)}`;
          const decoder = new FrameDecoder();
          const decoded: Frame[] = [];
          let error: unknown;
          try {
            for (const chunk of chunks) {
              // Once the Data frame is out, what comes is the caller's raw data: kept, not decoded.
              if (decoded.at(-1)?.type === FrameType.Data) decoder.append(chunk);
              else decoded.push(...decoder.push(chunk));
            }
          } catch (caught) {
            error = caught;
          }
          if (length > MAX_DATA_FRAME) {
            expect(error, context()).toBeInstanceOf(ProtocolError);
            return;
          }
          expect(error, context()).toBeUndefined();
          const mismatch = frameMismatch(decoded, [...before, { type: FrameType.Data, payload: Buffer.alloc(0), rawLength: length }]);
          if (mismatch) throw new Error(`${mismatch}; ${context()}`);
          expect(hexOf(Buffer.concat(decoder.takeRemainder())), context()).toBe(hexOf(tail));
        },
      ),
    );
  });
});
