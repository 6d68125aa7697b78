/**
 * Property tests (fast-check) for the classic protocol's unterminated size
 * (readClassicSize in src/protocol/classic.ts): any safe integer however its digits are
 * split and spaced in time, then the bytes that follow; more than 16 digits, or a size it
 * cannot hold exactly, refused.
 *
 * Inputs come from a fixed seed (SEED in helpers/arbitraries.ts), so CI runs the same
 * cases every time. A failure prints the shrunk counterexample with the seed and path that
 * replay it; the checks written by hand also name their input in hex, the chunking and
 * the gaps they used.
 */
import { PassThrough } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ProtocolError } from '../src/errors.js';
import { Channel } from '../src/protocol/channel.js';
import { readClassicSize } from '../src/protocol/classic.js';
import { chunkingArb, cut, describeChunks, describeError, hexOf } from './helpers/arbitraries.js';

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
