/**
 * Entry paths (issue 13): what a session sends for each file or folder, untrusted on the
 * receiver. Every refusal class, the canonical (NFC) form, the limits at their edges, a
 * hostile 4,096-deep path refused cheaply, and the folder cache checked against a
 * cache-free reference on random sequences of paths.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { extendEntryPath, isDotFileAtTop, joinEntryPath, MAX_ENTRY_PATH_BYTES, MAX_PATH_DEPTH, splitEntryPath } from '../src/fs/entry-paths.js';
import { canonicalName, problemWithName } from '../src/fs/names.js';

function componentsOf(path: string): string[] {
  const result = splitEntryPath(path);
  if ('problem' in result) throw new Error(`${JSON.stringify(path)} refused: ${result.problem}`);
  return result.components;
}

function problemOf(path: string): string {
  const result = splitEntryPath(path);
  if ('components' in result) throw new Error(`${JSON.stringify(path)} accepted as ${JSON.stringify(result.components)}`);
  return result.problem;
}

/** `count` parts of `bytes` ASCII bytes each, joined: (bytes + 1) * count - 1 bytes long. */
function pathOf(count: number, bytes: number): string {
  return Array.from({ length: count }, (_, index) => String(index % 10).repeat(bytes)).join('/');
}

describe('paths that are accepted', () => {
  const accepted: Array<[string, string[]]> = [
    ['a.txt', ['a.txt']],
    ['photos/2024/IMG_1.jpg', ['photos', '2024', 'IMG_1.jpg']],
    ['a b/c d.txt', ['a b', 'c d.txt']],
    ['日本/写真 1.jpg', ['日本', '写真 1.jpg']],
    ['emoji/❤️.txt', ['emoji', '❤️.txt']],
    ['😀/🎉.txt', ['😀', '🎉.txt']],
    ['project/.git/config', ['project', '.git', 'config']],
    ['.ssh/authorized_keys', ['.ssh', 'authorized_keys']],
    ['a/.hidden', ['a', '.hidden']],
    ['...a/b', ['...a', 'b']],
    ['C/x', ['C', 'x']],
    ['notes:1/x', ['notes:1', 'x']],
  ];
  it.each(accepted)('%j', (path, components) => {
    expect(componentsOf(path)).toEqual(components);
  });

  it('returns the canonical (NFC) form of every part: an NFD path from a Mac is stored as NFC', () => {
    const nfd = 'cafe\u0301/re\u0301sume\u0301/Ame\u0301lie.txt';
    expect(componentsOf(nfd)).toEqual(['caf\u00e9', 'r\u00e9sum\u00e9', 'Am\u00e9lie.txt']);
    expect(componentsOf(nfd).every((part) => part === part.normalize('NFC'))).toBe(true);
    // Then the NFC path, in the same folder, gives the same parts.
    expect(componentsOf('caf\u00e9/r\u00e9sum\u00e9/Am\u00e9lie.txt')).toEqual(componentsOf(nfd));
  });

  it(`accepts exactly ${MAX_PATH_DEPTH} parts and exactly ${MAX_ENTRY_PATH_BYTES} bytes`, () => {
    expect(componentsOf(pathOf(MAX_PATH_DEPTH, 1))).toHaveLength(MAX_PATH_DEPTH);
    const longest = pathOf(17, 240); // 17 * 241 - 1 = 4096
    expect(Buffer.byteLength(longest)).toBe(MAX_ENTRY_PATH_BYTES);
    expect(componentsOf(longest)).toHaveLength(17);
  });

  it('joinEntryPath puts the parts back together', () => {
    for (const [path] of accepted) expect(joinEntryPath(componentsOf(path))).toBe(path);
    expect(joinEntryPath(['a', 'b', 'c.txt'])).toBe('a/b/c.txt');
  });
});

describe('paths that are refused', () => {
  const refused: Array<[string, string | RegExp]> = [
    ['', 'the path is empty'],
    ['/etc/passwd', 'the path is absolute (it starts with "/")'],
    ['/', 'the path is absolute (it starts with "/")'],
    ['//server/share', 'the path is absolute (it starts with "/")'],
    ['C:\\Windows\\system.ini', /^the path starts with a Windows drive \("C:"\)/],
    ['C:/Windows/system.ini', /^the path starts with a Windows drive \("C:"\)/],
    ['c:x', /^the path starts with a Windows drive \("c:"\)/],
    ['\\\\server\\share\\x', 'the path is a Windows network path (it starts with "\\\\")'],
    ['a\\b', 'the path contains "\\", a path separator on Windows'],
    ['a/b\\..\\..\\c', 'the path contains "\\", a path separator on Windows'],
    ['\\x', 'the path contains "\\", a path separator on Windows'],
    ['a//b', 'the path has an empty part ("//")'],
    ['a/', 'the path ends with "/"'],
    ['a/b/', 'the path ends with "/"'],
    ['.', 'the path has a "." part'],
    ['./a', 'the path has a "." part'],
    ['a/./b', 'the path has a "." part'],
    ['a/.', 'the path has a "." part'],
    ['..', 'the path has a ".." part, which would climb out of the folder it is stored in'],
    ['../a', 'the path has a ".." part, which would climb out of the folder it is stored in'],
    ['a/../b', 'the path has a ".." part, which would climb out of the folder it is stored in'],
    ['a/b/..', 'the path has a ".." part, which would climb out of the folder it is stored in'],
    ['a/../../../etc/passwd', 'the path has a ".." part, which would climb out of the folder it is stored in'],
    ['a/CON/b', 'the name "CON" in "a/CON/b" is a reserved device name'],
    ['a/nul.txt', 'the name "nul.txt" in "a/nul.txt" is a reserved device name'],
    ['a/b\nc', 'the name "b\\nc" in "a/b\\nc" contains a control character'],
    ['a\u0000/b', 'the name "a\\u0000" in "a\\u0000/b" contains a control character'],
    ['docs/invoice\u202Efdp.exe', /^the name "invoice\u202Efdp.exe" in "docs\/invoice\u202Efdp.exe" contains an invisible or direction-changing Unicode character \(U\+202E\)$/],
    ['trailing./b', 'the name "trailing." in "trailing./b" ends with a dot or a space'],
    ['a/trailing ', 'the name "trailing " in "a/trailing " ends with a dot or a space'],
    ['\uFF0E\uFF0E/etc', /^the name "．．" in "．．\/etc" reads as "\.\." once its wide or small characters are made plain$/],
    ['a/x\uFF0Fy', /^the name "x／y" in "a\/x／y" contains a character that stands for a path separator/],
    ['a/docs\u2215secret', /contains a character that looks like a path separator \(U\+2215\)/],
    ['a/.b.12345678.ftx-part', /^the name ".b.12345678.ftx-part" in "a\/.b.12345678.ftx-part" looks like one of ftx's temporary files$/],
    ['a/\uD800b', 'the name "\\ud800b" in "a/\\ud800b" is not valid Unicode'],
    [`a/${'x'.repeat(256)}/b`, /^the name "x{256}" in ".*" is longer than 255 bytes$/],
  ];
  it.each(refused)('%j', (path, problem) => {
    if (typeof problem === 'string') expect(problemOf(path)).toBe(problem);
    else expect(problemOf(path)).toMatch(problem);
  });

  it('refuses ".." in every position of a path', () => {
    const parts = ['a', 'b', 'c', 'd'];
    for (let at = 0; at <= parts.length; at++) {
      const path = [...parts.slice(0, at), '..', ...parts.slice(at)].join('/');
      expect(problemOf(path), path).toMatch(/a "\.\." part/);
    }
  });

  it('refuses an empty part in every position of a path', () => {
    expect(problemOf('/a/b')).toMatch(/absolute/);
    expect(problemOf('a//b/c')).toMatch(/empty part/);
    expect(problemOf('a/b//c')).toMatch(/empty part/);
    expect(problemOf('a/b/c/')).toMatch(/ends with "\/"/);
    expect(problemOf('a///')).toMatch(/empty part/);
  });

  it(`refuses ${MAX_PATH_DEPTH + 1} parts and ${MAX_ENTRY_PATH_BYTES + 1} bytes`, () => {
    expect(problemOf(pathOf(MAX_PATH_DEPTH + 1, 1))).toBe(`the path is more than ${MAX_PATH_DEPTH} levels deep`);
    const tooLong = `${pathOf(16, 240)}/${'x'.repeat(241)}`; // one byte over
    expect(Buffer.byteLength(tooLong)).toBe(MAX_ENTRY_PATH_BYTES + 1);
    expect(problemOf(tooLong)).toBe(`the path is longer than ${MAX_ENTRY_PATH_BYTES} bytes`);
    // Bytes, not characters: 1,366 three-byte characters are 4,098 bytes in 1,366 UTF-16 units.
    const wide = Array.from({ length: 16 }, () => '日'.repeat(85)).join('/') + '/日日';
    expect(wide.length).toBeLessThan(MAX_ENTRY_PATH_BYTES);
    expect(Buffer.byteLength(wide)).toBeGreaterThan(MAX_ENTRY_PATH_BYTES);
    expect(problemOf(wide)).toBe(`the path is longer than ${MAX_ENTRY_PATH_BYTES} bytes`);
  });

  it('refuses a path that is within the limit as sent but longer in canonical (NFC) form', () => {
    // U+0958 is 3 bytes, its NFC form (U+0915 U+093C) 6: 32 parts of 42 are 4,063 bytes as sent, 8,095 stored.
    const part = '\u0958'.repeat(42);
    expect(problemWithName(part)).toBeUndefined();
    const path = Array.from({ length: 32 }, () => part).join('/');
    expect(Buffer.byteLength(path)).toBeLessThanOrEqual(MAX_ENTRY_PATH_BYTES);
    expect(problemOf(path)).toBe(`the path is longer than ${MAX_ENTRY_PATH_BYTES} bytes in canonical (NFC) form`);
  });

  // The hostile-paths case of issue 13: a raw peer sends a path 4,096 levels deep.
  it('refuses a 4,096-deep path a/a/a/… by its depth, without splitting or checking its parts', () => {
    const deep = Array.from({ length: 4096 }, () => 'a').join('/');
    expect(problemOf(deep)).toBe(`the path is more than ${MAX_PATH_DEPTH} levels deep`);
    // And a 4,096-deep path of bad names gets the same answer: no part was looked at.
    expect(problemOf(Array.from({ length: 4096 }, () => '..').join('/'))).toBe(`the path is more than ${MAX_PATH_DEPTH} levels deep`);
    expect(problemOf(Array.from({ length: 1_000_000 }, () => 'CON').join('/'))).toBe(`the path is more than ${MAX_PATH_DEPTH} levels deep`);
    // Checking all 4,096 parts would cost milliseconds per path; refusing costs microseconds.
    // A bound 100 times looser than what is measured, so a loaded machine does not fail it.
    const started = performance.now();
    for (let round = 0; round < 1000; round++) splitEntryPath(deep);
    const elapsed = performance.now() - started;
    expect(elapsed, `1,000 refusals took ${elapsed.toFixed(1)} ms`).toBeLessThan(200);
  });

  it('refuses a huge path by its length without counting its bytes', () => {
    expect(problemOf('x'.repeat(10_000_000))).toBe(`the path is longer than ${MAX_ENTRY_PATH_BYTES} bytes`);
  });
});

describe('the folder cache is invisible', () => {
  it('a refused part is refused again in the next path, and a good path after a bad one is accepted', () => {
    expect(componentsOf('a/b/c.txt')).toEqual(['a', 'b', 'c.txt']);
    expect(problemOf('a/b/CON')).toMatch(/reserved device name/);
    expect(componentsOf('a/b/d.txt')).toEqual(['a', 'b', 'd.txt']);
    expect(problemOf('a/CON/d.txt')).toMatch(/reserved device name/);
    expect(problemOf('a/CON/d.txt')).toMatch(/reserved device name/);
    expect(problemOf('a/b/../d.txt')).toMatch(/\.\./);
    expect(componentsOf('a/b/e.txt')).toEqual(['a', 'b', 'e.txt']);
    expect(componentsOf('a/b')).toEqual(['a', 'b']);
    expect(componentsOf('b')).toEqual(['b']);
  });

  it('a caller changing the parts it got back changes nothing for the next call', () => {
    const first = componentsOf('x/y/1.txt');
    first[0] = '..';
    first.pop();
    expect(componentsOf('x/y/2.txt')).toEqual(['x', 'y', '2.txt']);
  });

  it('gives what a cache-free check gives, on random sequences of paths from a mixed bag of parts', () => {
    const parts = ['a', 'b', 'caf\u00e9', 'cafe\u0301', '..', '.', '', 'CON', 'x\ny', '.git', '日本', 'b\\c', 'C:', '\uFF0E\uFF0E'];
    const path = fc.array(fc.constantFrom(...parts), { minLength: 1, maxLength: 5 }).map((chosen) => chosen.join('/'));
    fc.assert(
      fc.property(fc.array(path, { minLength: 1, maxLength: 30 }), (paths) => {
        for (const sent of paths) expect(splitEntryPath(sent), JSON.stringify(sent)).toEqual(referenceSplit(sent));
      }),
      { seed: 13, numRuns: 500 },
    );
  });
});

describe('building a path a name at a time (extendEntryPath, for the sender\'s walk)', () => {
  it('gives what splitEntryPath gives for the joined path, name by name, with the path\'s measures', () => {
    const names = ['a', 'caf\u00e9', 'cafe\u0301', '\u0958'.repeat(42), 'x'.repeat(255), '..', '.', '', 'CON', 'x\ny', '.git', '日本', 'b\\c', 'C:', 'd/e', 'f//g', '\uFF0E\uFF0E'];
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...names), { minLength: 1, maxLength: 70 }), (chosen) => {
        let at: ReturnType<typeof extendEntryPath> | undefined;
        for (const [index, name] of chosen.entries()) {
          const parent = at !== undefined && 'path' in at ? at : undefined;
          if (index > 0 && parent === undefined) return; // refused already
          at = extendEntryPath(parent, name);
          const path = parent === undefined ? name : `${parent.path}/${name}`;
          const split = splitEntryPath(path);
          if ('problem' in split) {
            expect(at, JSON.stringify(path)).toEqual(split);
          } else {
            expect(at, JSON.stringify(path)).toEqual({ path, depth: split.components.length, bytes: Buffer.byteLength(path), canonicalBytes: Buffer.byteLength(joinEntryPath(split.components)) });
          }
        }
      }),
      { seed: 13, numRuns: 1000 },
    );
  });

  it('refuses the 65th level and the 4,097th byte, as splitEntryPath does', () => {
    let at = extendEntryPath(undefined, 'a');
    for (let depth = 2; depth <= MAX_PATH_DEPTH; depth++) {
      if (!('path' in at)) throw new Error(at.problem);
      at = extendEntryPath(at, 'a');
    }
    expect(at).toMatchObject({ depth: MAX_PATH_DEPTH });
    expect(extendEntryPath(at as Exclude<typeof at, { problem: string }>, 'a')).toEqual({ problem: `the path is more than ${MAX_PATH_DEPTH} levels deep` });
    const long = { path: pathOf(16, 240), depth: 16, bytes: 16 * 241 - 1, canonicalBytes: 16 * 241 - 1 };
    expect(extendEntryPath(long, 'x'.repeat(240))).toMatchObject({ bytes: MAX_ENTRY_PATH_BYTES });
    expect(extendEntryPath(long, 'x'.repeat(241))).toEqual({ problem: `the path is longer than ${MAX_ENTRY_PATH_BYTES} bytes` });
  });
});

/** The rules without the cache or the cheap early exits, written the obvious way, for comparison. */
function referenceSplit(path: string): { components: string[] } | { problem: string } {
  if (path === '') return { problem: 'the path is empty' };
  if (path.startsWith('/')) return { problem: 'the path is absolute (it starts with "/")' };
  if (path.startsWith('\\\\')) return { problem: 'the path is a Windows network path (it starts with "\\\\")' };
  if (/^[A-Za-z]:/.test(path)) return { problem: `the path starts with a Windows drive ("${path.slice(0, 2)}"), which would put it outside the folder it is stored in` };
  const sent = path.split('/');
  if (sent.length > MAX_PATH_DEPTH) return { problem: `the path is more than ${MAX_PATH_DEPTH} levels deep` };
  if (Buffer.byteLength(path) > MAX_ENTRY_PATH_BYTES) return { problem: `the path is longer than ${MAX_ENTRY_PATH_BYTES} bytes` };
  if (path.includes('\\')) return { problem: 'the path contains "\\", a path separator on Windows' };
  for (const [index, part] of sent.entries()) {
    if (part === '') return { problem: index === sent.length - 1 ? 'the path ends with "/"' : 'the path has an empty part ("//")' };
    if (part === '.') return { problem: 'the path has a "." part' };
    if (part === '..') return { problem: 'the path has a ".." part, which would climb out of the folder it is stored in' };
    const problem = problemWithName(part);
    if (problem) return { problem: `the name ${JSON.stringify(part)} in ${JSON.stringify(path)} ${problem.replace(/^the name /, '')}` };
  }
  return { components: sent.map(canonicalName) };
}

describe('dot-files at the top', () => {
  const cases: Array<[string, boolean]> = [
    ['.ssh/authorized_keys', true],
    ['.bashrc', true],
    ['\uFF0Ebashrc', true], // a fullwidth dot reads as one
    ['project/.git/config', false],
    ['a/.hidden', false],
    ['photos/IMG_1.jpg', false],
    ['...a/b', true],
  ];
  it.each(cases)('%j: %s', (path, expected) => {
    expect(isDotFileAtTop(componentsOf(path))).toBe(expected);
  });

  it('no parts, no dot-file', () => {
    expect(isDotFileAtTop([])).toBe(false);
  });
});
