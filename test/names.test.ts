/**
 * Sender-chosen names that read as something other than what is stored (issue 10,
 * "Names"), the canonical form a receiver stores, dot-files, and the case-folding probe
 * of the target file system. The random side of the same rules is in names.property.test.ts.
 */
import { lstat, mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { foldsCase } from '../src/fs/case-folding.js';
import { canonicalName, caseFoldKey, isDotFile, problemWithName } from '../src/fs/names.js';
import { exfatUnavailable, mountExfat, type ExfatMount } from './helpers/exfat.js';
import { tempFolder } from './helpers/files.js';

function codePoints(name: string): string {
  return [...name].map((character) => `U+${character.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`).join(' ');
}

/** Asserts that `name` is refused with a message matching `reason`. */
function expectRefused(name: string, reason: RegExp): void {
  expect(problemWithName(name), `${JSON.stringify(name)} (${codePoints(name)})`).toMatch(reason);
}

const INVISIBLE = /invisible or direction-changing Unicode character \(U\+[0-9A-F]{4,5}\)/;

describe('names that read as something else are refused', () => {
  it('refuses a right-to-left override that shows invoice\\u202Efdp.exe as "invoiceexe.pdf"', () => {
    expect(problemWithName('invoice\u202Efdp.exe')).toBe('the name contains an invisible or direction-changing Unicode character (U+202E)');
  });

  it('refuses every bidi control: embeddings, overrides, isolates and marks', () => {
    const controls = ['\u202A', '\u202B', '\u202C', '\u202D', '\u202E', '\u2066', '\u2067', '\u2068', '\u2069', '\u200E', '\u200F', '\u061C'];
    for (const control of controls) expectRefused(`report${control}.pdf`, INVISIBLE);
  });

  it('refuses zero-width and other invisible characters that make two names look the same', () => {
    const invisible = ['\u200B', '\u200C', '\u200D', '\u2060', '\u2061', '\u2062', '\u2063', '\u2064', '\u00AD', '\u180E', '\u034F', '\u3164', '\u115F', '\uFFA0'];
    for (const character of invisible) expectRefused(`rep${character}ort.pdf`, INVISIBLE);
  });

  it('refuses a byte order mark, at the start of a name or inside it', () => {
    expect(problemWithName('\uFEFFreport.pdf')).toBe('the name contains an invisible or direction-changing Unicode character (U+FEFF)');
    expectRefused('report\uFEFF.pdf', INVISIBLE);
  });

  it('refuses tag characters, which hide ASCII text in a name', () => {
    expectRefused('report\u{E0069}\u{E0067}\u{E006E}.pdf', /\(U\+E0069\)/);
  });

  it('refuses a variation selector that draws nothing ("invoice\\uFE0F.pdf" looks like "invoice.pdf")', () => {
    expectRefused('invoice\uFE0F.pdf', INVISIBLE);
    expectRefused('\uFE0Finvoice.pdf', INVISIBLE);
    expectRefused('1\uFE0F.txt', INVISIBLE);
  });

  it('refuses line and paragraph separators (U+2028, U+2029)', () => {
    expect(problemWithName('report\u2028stored.pdf')).toBe('the name contains a line or paragraph separator (U+2028)');
    expect(problemWithName('report\u2029stored.pdf')).toBe('the name contains a line or paragraph separator (U+2029)');
  });

  it('refuses fullwidth and small dots that read as "." or ".."', () => {
    for (const name of ['\uFF0E\uFF0E', '\uFF0E', '.\uFF0E', '\u2025', '\u2024', '\u2024\u2024', '\uFE52\uFE52']) {
      expectRefused(name, /reads as "\.\.?" once its wide or small characters are made plain/);
    }
  });

  it('refuses a fullwidth or small solidus, which best-fit conversion turns into a path separator', () => {
    for (const name of ['a\uFF0Fb', '\uFF0E\uFF0E\uFF0Fetc\uFF0Fpasswd', 'a\uFF3Cb', 'a\uFE68b']) {
      expectRefused(name, /a character that stands for a path separator/);
    }
  });

  it('refuses slashes that look like a path separator though no normalization maps them', () => {
    for (const slash of ['\u2215', '\u2044', '\u2216', '\u29F5', '\u29F8', '\u29F9']) {
      expectRefused(`docs${slash}secret.pdf`, /looks like a path separator \(U\+[0-9A-F]{4}\)/);
    }
  });

  it('refuses a name ending in a fullwidth dot, an ideographic space or a no-break space', () => {
    for (const name of ['report\uFF0E', 'report\u3000', 'report\u00A0', 'report.pdf\u2024']) {
      expectRefused(name, /ends with a character that stands for a dot or a space/);
    }
  });

  it('refuses a Windows device name written in fullwidth letters', () => {
    expectRefused('\uFF43\uFF4F\uFF4E.txt', /reserved device name/);
    expectRefused('\uFF2E\uFF35\uFF2C', /reserved device name/);
  });

  it("refuses a case variant of an ftx temporary file name (one file where case folds)", () => {
    expectRefused('.report.1a2b3c4d.FTX-PART', /temporary files/);
    expectRefused('.report.Ftx-Part', /temporary files/);
  });
});

describe('ordinary international names are still accepted', () => {
  const names = [
    '报告.pdf',
    '年度報告 2025.xlsx',
    'تقرير المبيعات.docx',
    'דוח שנתי.txt',
    'Crème brûlée.md',
    'naïve résumé.txt',
    'Ελληνικά.txt',
    'русский.doc',
    'हिन्दी पाठ.txt',
    'தமிழ்.txt',
    '한국어 문서.hwp',
    'ひらがな カタカナ.txt',
    '😀 party.jpg',
    '❤️ notes.txt',
    '1️⃣ first.txt',
    '葛󠄀飾区.txt',
    'x² + y².txt',
    'a:b.txt',
    'file.tar.gz',
  ];
  for (const name of names) {
    it(`accepts ${JSON.stringify(name)}`, () => {
      expect(problemWithName(name), codePoints(name)).toBeUndefined();
    });
  }

  it('accepts a decomposed (NFD) name as macOS hands it out', () => {
    expect(problemWithName('Crème brûlée.md'.normalize('NFD'))).toBeUndefined();
  });
});

describe('canonicalName', () => {
  it('maps NFD and NFC "café" to the same canonical name, so they cannot be two files', () => {
    const composed = 'caf\u00E9.txt';
    const decomposed = 'cafe\u0301.txt';
    expect(composed).not.toBe(decomposed);
    expect(canonicalName(decomposed)).toBe(canonicalName(composed));
    expect(canonicalName(decomposed)).toBe(composed);
  });

  it('is NFC and idempotent', () => {
    for (const name of ['Ångström.txt', 'A\u030Angstro\u0308m.txt', '\u212Bngstr\u00F6m.txt', '한국어', '\u1112\u1161\u11AB']) {
      const canonical = canonicalName(name);
      expect(canonical).toBe(name.normalize('NFC'));
      expect(canonicalName(canonical)).toBe(canonical);
    }
  });

  it('leaves compatibility characters alone (it does not rewrite what a person sees)', () => {
    expect(canonicalName('\uFB01le.txt')).toBe('\uFB01le.txt');
    expect(canonicalName('x\u00B2.txt')).toBe('x\u00B2.txt');
    expect(canonicalName('\uFF21.txt')).toBe('\uFF21.txt');
  });
});

describe('isDotFile', () => {
  it('is true for names that start with a dot, including a fullwidth one', () => {
    for (const name of ['.bash_profile', '.ssh', '.env', '..hidden', '\uFF0Ebashrc']) expect(isDotFile(name), name).toBe(true);
  });

  it('is false for names with a dot elsewhere', () => {
    for (const name of ['report.pdf', 'a.b.c', 'bash_profile', '\u00E9.txt']) expect(isDotFile(name), name).toBe(false);
  });
});

describe('caseFoldKey', () => {
  it('is the same for names that differ only by case or by normalization', () => {
    const groups = [
      ['Report.PDF', 'report.pdf', 'REPORT.pdf'],
      ['Caf\u00E9', 'CAF\u00C9', 'cafe\u0301', 'CAFE\u0301'],
      ['stra\u00DFe', 'STRASSE', 'strasse'],
      ['\u0131', 'I', 'i'],
      ['\u03C3\u03BF\u03C6\u03CC\u03C2', '\u03A3\u039F\u03A6\u038C\u03A3'],
      ['\u01C4', '\u01C5', '\u01C6'],
    ];
    for (const group of groups) {
      const keys = group.map(caseFoldKey);
      expect(new Set(keys).size, `${group.join(', ')} gave ${keys.join(', ')}`).toBe(1);
    }
  });

  it('differs for names that differ by more than case', () => {
    expect(caseFoldKey('report.pdf')).not.toBe(caseFoldKey('report.pdf.txt'));
    expect(caseFoldKey('cafe')).not.toBe(caseFoldKey('caf\u00E9'));
  });
});

describe('foldsCase', () => {
  it.runIf(process.platform === 'linux')('is false on the normal temp folder (case-sensitive), and leaves no file behind', async () => {
    const folder = await tempFolder();
    await writeFile(join(folder, 'already-here.txt'), 'x');
    expect(await foldsCase(folder)).toBe(false);
    expect(await readdir(folder)).toEqual(['already-here.txt']);
  });

  it('is false for a folder that does not exist, and creates nothing', async () => {
    const folder = await tempFolder();
    const missing = join(folder, 'missing');
    expect(await foldsCase(missing)).toBe(false);
    expect(await readdir(folder)).toEqual([]);
  });

  it('is false for a path that is a file, not a folder', async () => {
    const folder = await tempFolder();
    await writeFile(join(folder, 'plain'), 'x');
    expect(await foldsCase(join(folder, 'plain'))).toBe(false);
    expect(await readdir(folder)).toEqual(['plain']);
  });

  describe.skipIf(exfatUnavailable() !== undefined)(`on exFAT (${exfatUnavailable() ?? 'mounted for this test'})`, () => {
    let exfat: ExfatMount | undefined;
    beforeAll(async () => {
      exfat = await mountExfat();
    });
    afterAll(async () => {
      await exfat?.unmount();
    });

    it('is true on an exFAT mount, and leaves no file behind', async () => {
      const folder = exfat!.folder;
      expect(await foldsCase(folder)).toBe(true);
      expect(await readdir(folder)).toEqual([]);
    });

    it('caseFoldKey is equal for every pair of names that exFAT stores as one file', async () => {
      const folder = exfat!.folder;
      const names = ['i', 'I', '\u0131', '\u0130', 'k', 'K', '\u00DF', 'SS', 'ss', '\u1E9E', '\u03C3', '\u03C2', '\u03A3', '\u00E9', '\u00C9', 'e\u0301', '\u01C4', '\u01C5', '\u01C6', '\uFB01', 'FI', '\u00FF', '\u0178', '\u0101', '\u0100'];
      const sameFile: string[] = [];
      for (const [index, name] of names.entries()) {
        // A fresh folder for each name: exfat-fuse lets the kernel cache a case variant
        // it was asked for (for about a second), even after the file is removed.
        const subfolder = join(folder, `case-${index}`);
        await mkdir(subfolder);
        await writeFile(join(subfolder, name), '');
        for (const other of names) {
          const exists = await lstat(join(subfolder, other)).then(
            () => true,
            () => false,
          );
          if (!exists) continue;
          if (other !== name) sameFile.push(`${codePoints(name)} = ${codePoints(other)}`);
          expect(caseFoldKey(other), `exFAT stores ${codePoints(name)} and ${codePoints(other)} as one file`).toBe(caseFoldKey(name));
        }
        await rm(subfolder, { recursive: true });
      }
      // The check above only means something if exFAT did fold some of them (not all:
      // its upcase table keeps "\u0131" and "I" apart, where the key merges them).
      expect(sameFile).toEqual(expect.arrayContaining(['U+0069 = U+0049', 'U+03C2 = U+03A3', 'U+00E9 = U+00C9']));
      expect(await readdir(folder)).toEqual([]);
    });
  });
});
