/**
 * Property tests (fast-check) for sender-chosen file names (src/fs/names.ts:
 * problemWithName, canonicalName, caseFoldKey): what is accepted stays directly inside the
 * folder, as sent and as stored; NFC and NFD get the same verdict; case folds to one key;
 * every hostile name is refused. (The names written by hand are in names.test.ts.)
 *
 * Inputs come from a fixed seed (SEED in helpers/arbitraries.ts), so CI runs the same
 * cases every time. A failure prints the shrunk counterexample with the seed and path that
 * replay it; the checks written by hand also name their input in hex.
 */
import { posix, win32 } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FrameType } from '../src/framing.js';
import { canonicalName, caseFoldKey, problemWithName } from '../src/fs/names.js';
import { decodeHeader } from '../src/protocol/messages.js';
import { codeUnitArb, hexOf, NAME_MAX_BYTES, utf8Json } from './helpers/arbitraries.js';

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
