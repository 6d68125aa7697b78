/**
 * What the property tests (*.property.test.ts) share: the fixed seed, the chunkings a
 * byte string is cut into, frame types, UTF-16 code units, the 255-byte name limit, and
 * how an input is named in a failure message.
 *
 * Inputs come from a fixed seed, so CI runs the same cases every time (importing this
 * module sets it for fast-check). A failure prints the shrunk counterexample with the seed
 * and path that replay it; the checks written by hand also name their input in hex and the
 * chunking they used. To explore new cases locally, change SEED for a run; do not make it
 * random in CI.
 */
import fc from 'fast-check';
import { FrameType, type FrameTypeCode } from '../../src/framing.js';

export const SEED = 20261130;
fc.configureGlobal({ seed: SEED });

/** An input in hex for a failure message, cut short when it is long. */
export function hexOf(bytes: Uint8Array, limit = 512): string {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buffer.length === 0) return '(empty)';
  if (buffer.length <= limit) return buffer.toString('hex');
  return `${buffer.subarray(0, limit).toString('hex')}… (${buffer.length} bytes)`;
}

export function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export function describeError(error: unknown): string {
  return error instanceof Error ? `${error.constructor.name}: ${error.message}` : String(error);
}

/**
 * How a byte string is cut into chunks: at split points (a repeated point gives an empty
 * chunk, which a reader must shrug off), or into runs of the given sizes, repeated until
 * the bytes run out (`[1]` is one byte at a time).
 */
export type Chunking = { splitAt: number[] } | { sizes: number[] };

export const chunkingArb: fc.Arbitrary<Chunking> = fc.oneof(
  fc.record({ splitAt: fc.array(fc.nat(), { maxLength: 24 }) }),
  fc.record({
    sizes: fc.array(fc.oneof(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 100_000 })), {
      minLength: 1,
      maxLength: 6,
    }),
  }),
  fc.constant<Chunking>({ sizes: [1] }),
);

export function cut(bytes: Buffer, chunking: Chunking): Buffer[] {
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

export function describeChunks(chunks: Buffer[]): string {
  const sizes = chunks.map((chunk) => chunk.length);
  if (sizes.length > 40) return `${sizes.length} chunks of ${sizes.slice(0, 40).join(',')},… bytes`;
  return `chunks of ${sizes.join(',') || 'nothing'} bytes`;
}

/** Every frame type PROTOCOL.md defines. */
export const FRAME_TYPES = Object.values(FrameType) as FrameTypeCode[];
export const frameTypeArb = fc.constantFrom(...FRAME_TYPES);

/** PROTOCOL.md's limit on a file name, in UTF-8 bytes (written out, not imported, so a change in src/ shows up). */
export const NAME_MAX_BYTES = 255;

/** Single UTF-16 code units, lone surrogates included: JSON carries those as \uXXXX escapes. */
export const codeUnitArb = fc.integer({ min: 0, max: 0xffff }).map((code) => String.fromCharCode(code));

export function utf8Json(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value) ?? 'undefined', 'utf8');
}
