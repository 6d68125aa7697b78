/**
 * Property tests (fast-check) for the JSON payload decoders (src/protocol/messages.ts),
 * which parse untrusted payloads: for each frame type, any payload gives a fully checked
 * object or a ProtocolError; every valid object decodes to an equal one; one bad or missing
 * field is refused by name; and a digest's length follows its algorithm.
 *
 * Inputs come from a fixed seed (SEED in helpers/arbitraries.ts), so CI runs the same
 * cases every time. A failure prints the shrunk counterexample with the seed and path that
 * replay it; the checks written by hand also name their input in hex.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ProtocolError } from '../src/errors.js';
import { FrameType, frameTypeName, type Frame, type FrameTypeCode } from '../src/framing.js';
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
import { codeUnitArb, describeError, frameTypeArb, hexOf, NAME_MAX_BYTES, toBuffer, utf8Json } from './helpers/arbitraries.js';

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
