/**
 * The sender's walk (issue 13): what `ftx send a.txt ./photos host` sends, on real
 * folders. Order, metadata, symbolic links (skipped, followed, loops), special files,
 * unreadable folders and files (as an unprivileged user), names the receiver would
 * refuse, the roots' checks, and flat memory over 100,000 entries.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { join, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { buildSync } from 'esbuild';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LocalIoError, UsageError } from '../src/errors.js';
import { MAX_PATH_DEPTH, splitEntryPath } from '../src/fs/entry-paths.js';
import { compareUtf8, countTree, SKIP_REASONS, walk, type WalkEntry, type WalkOptions, type WalkSkip } from '../src/fs/walk.js';
import { tempFolder } from './helpers/files.js';

type Walked = WalkEntry | WalkSkip;

async function collect(roots: string[], options: WalkOptions = {}): Promise<Walked[]> {
  const entries: Walked[] = [];
  for await (const entry of walk(roots, options)) entries.push(entry);
  return entries;
}

/** One line per entry: "file a/b.txt 3", "dir a", "skipped a/x: reason". */
function brief(entries: Walked[]): string[] {
  return entries.map((entry) => (entry.kind === 'skipped' ? `skipped ${entry.path}: ${entry.reason}` : entry.kind === 'file' ? `file ${entry.path} ${entry.size}` : `dir ${entry.path}`));
}

function file(path: string, content = ''): string {
  writeFileSync(path, content);
  return path;
}

function folder(path: string): string {
  mkdirSync(path, { recursive: true });
  return path;
}

const asRoot = process.getuid?.() === 0;
const hasMkfifo = (() => {
  try {
    execFileSync('mkfifo', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

describe('what a folder sends', () => {
  it('a folder, then its contents depth first, each folder sorted by name; empty files and folders, unicode and dot-files included', async () => {
    const base = await tempFolder();
    const top = folder(join(base, 'photos'));
    file(join(top, 'b.txt'), 'abc');
    folder(join(top, 'a-empty'));
    folder(join(top, 'c', 'd'));
    file(join(top, 'c', 'd', 'e.txt'));
    file(join(top, 'c', 'z.txt'), 'zz');
    file(join(top, '.hidden'), 'h');
    folder(join(top, '.git'));
    file(join(top, '.git', 'config'), 'cfg');
    file(join(top, '日本.txt'), '日本');
    file(join(top, 'cafe\u0301.txt'), 'nfd'); // as a Mac would name it

    const entries = await collect([top]);
    expect(brief(entries)).toEqual([
      'dir photos',
      'dir photos/.git',
      'file photos/.git/config 3',
      'file photos/.hidden 1',
      'dir photos/a-empty',
      'file photos/b.txt 3',
      'dir photos/c',
      'dir photos/c/d',
      'file photos/c/d/e.txt 0',
      'file photos/c/z.txt 2',
      'file photos/cafe\u0301.txt 3',
      'file photos/日本.txt 6',
    ]);
    // Paths are sent as found on disk (the receiver makes them NFC), and every one is a path the receiver accepts.
    for (const entry of entries) expect(splitEntryPath(entry.path), entry.path).toHaveProperty('components');
    expect(splitEntryPath('photos/cafe\u0301.txt')).toEqual({ components: ['photos', 'caf\u00e9.txt'] });
    // `absolute` is where to read each entry here.
    for (const entry of entries) expect(entry.absolute).toBe(join(base, ...entry.path.split('/')));
  });

  it('each entry carries its size, permission bits (with setuid, setgid and sticky) and modification time', async () => {
    const base = await tempFolder();
    const top = folder(join(base, 'top'));
    const plain = file(join(top, 'plain.txt'), 'hello');
    const setuid = file(join(top, 'tool'), '#!/bin/sh\n');
    const shared = folder(join(top, 'shared'));
    chmodSync(plain, 0o640);
    chmodSync(setuid, 0o4755);
    chmodSync(shared, 0o2750);
    const when = new Date(Date.UTC(2020, 0, 2, 3, 4, 5, 678));
    utimesSync(plain, when, when);
    utimesSync(shared, when, when);
    const entries = (await collect([top])) as WalkEntry[];
    const byPath = new Map(entries.map((entry) => [entry.path, entry]));
    expect(byPath.get('top/plain.txt')).toMatchObject({ kind: 'file', size: 5, mode: 0o640, mtimeMs: expect.closeTo(when.getTime(), 0) });
    expect(byPath.get('top/tool')).toMatchObject({ kind: 'file', size: 10, mode: 0o4755 });
    expect(byPath.get('top/shared')).toMatchObject({ kind: 'dir', size: 0, mode: 0o2750, mtimeMs: expect.closeTo(when.getTime(), 0) });
  });

  it('sorts by the bytes of the UTF-8 names, whatever order they were made in, and gives the same order every time', async () => {
    const base = await tempFolder();
    const top = folder(join(base, 'top'));
    // U+FF21 (EF BC A1 in UTF-8) sorts before U+1F600 (F0 9F 98 80) by bytes, after it by UTF-16 units.
    const names = ['\u{1F600}.txt', '\uFF21.txt', 'é.txt', 'B.txt', 'a.txt', '_.txt', '10.txt', '9.txt', 'a', 'a.b'];
    for (const name of names) file(join(top, name));
    const expected = [...names].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
    expect(expected.indexOf('\uFF21.txt')).toBeLessThan(expected.indexOf('\u{1F600}.txt'));
    const first = (await collect([top])).map((entry) => entry.path);
    expect(first).toEqual(['top', ...expected.map((name) => `top/${name}`)]);
    expect((await collect([top])).map((entry) => entry.path)).toEqual(first);
  });

  it('compareUtf8 orders any strings as their UTF-8 bytes do', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme' }), fc.string({ unit: 'grapheme' }), (a, b) => {
        expect(Math.sign(compareUtf8(a, b))).toBe(Math.sign(Buffer.compare(Buffer.from(a), Buffer.from(b))));
      }),
      { seed: 13, numRuns: 2000 },
    );
  });

  it('several roots, in the order given: a file root is one entry under its base name', async () => {
    const base = await tempFolder();
    const single = file(join(base, 'notes.txt'), 'n');
    const tree = folder(join(base, 'src'));
    file(join(tree, 'main.ts'), 'm');
    const other = file(join(base, 'a.txt'), 'aa');
    expect(brief(await collect([single, tree, other]))).toEqual(['file notes.txt 1', 'dir src', 'file src/main.ts 1', 'file a.txt 2']);
    expect((await collect([single]))[0]).toMatchObject({ kind: 'file', path: 'notes.txt', absolute: single });
  });

  it('a root is named after the folder it resolves to: "photos/", "photos/sub/.." and a root that is a symbolic link (followed, under the link\'s name)', async () => {
    const base = await tempFolder();
    const photos = folder(join(base, 'photos'));
    folder(join(photos, 'sub'));
    file(join(photos, 'x.jpg'), 'x');
    symlinkSync(photos, join(base, 'pictures'));
    const expected = ['dir photos', 'dir photos/sub', 'file photos/x.jpg 1'];
    expect(brief(await collect([`${photos}/`]))).toEqual(expected);
    expect(brief(await collect([join(photos, 'sub') + `${sep}..`]))).toEqual(expected);
    expect(brief(await collect([join(base, 'pictures')]))).toEqual(['dir pictures', 'dir pictures/sub', 'file pictures/x.jpg 1']);
  });

  it('skips a name the receiver would refuse, with the reason, and does not go into such a folder', async () => {
    const base = await tempFolder();
    const top = folder(join(base, 'top'));
    folder(join(top, 'CON'));
    file(join(top, 'CON', 'inside.txt'));
    file(join(top, 'line\nbreak.txt'));
    file(join(top, 'trailing.'));
    file(join(top, 'ok.txt'));
    expect(brief(await collect([top]))).toEqual([
      'dir top',
      'skipped top/CON: not sendable: the name "CON" in "top/CON" is a reserved device name',
      'skipped top/line\nbreak.txt: not sendable: the name "line\\nbreak.txt" in "top/line\\nbreak.txt" contains a control character',
      'file top/ok.txt 0',
      'skipped top/trailing.: not sendable: the name "trailing." in "top/trailing." ends with a dot or a space',
    ]);
  });

  it('skips names that are not valid UTF-8 (they cannot be opened by their decoded name), and keeps a real U+FFFD', async () => {
    const base = await tempFolder();
    const top = folder(join(base, 'top'));
    writeFileSync(Buffer.concat([Buffer.from(`${top}/`), Buffer.from([0xff, 0x61])]), 'bad');
    file(join(top, '\uFFFDb'), 'real');
    file(join(top, 'plain'));
    expect(brief(await collect([top]))).toEqual(['dir top', `skipped top/\uFFFDa: ${SKIP_REASONS.notUtf8}`, 'file top/plain 0', 'file top/\uFFFDb 4']);
  });

  it(`goes ${MAX_PATH_DEPTH} levels deep and skips what lies deeper`, async () => {
    const base = await tempFolder();
    const levels = Array.from({ length: MAX_PATH_DEPTH + 2 }, () => 'l');
    folder(join(base, ...levels));
    file(join(base, ...levels, 'bottom.txt'));
    const entries = await collect([join(base, 'l')]);
    expect(entries.filter((entry) => entry.kind === 'dir')).toHaveLength(MAX_PATH_DEPTH);
    expect(entries.at(-1)).toMatchObject({ kind: 'skipped', path: levels.slice(0, MAX_PATH_DEPTH + 1).join('/'), reason: `not sendable: the path is more than ${MAX_PATH_DEPTH} levels deep` });
    expect(entries).toHaveLength(MAX_PATH_DEPTH + 1);
  });

  it('countTree counts what walk yields', async () => {
    const base = await tempFolder();
    const top = folder(join(base, 'top'));
    file(join(top, 'a'), '12345');
    folder(join(top, 'b'));
    file(join(top, 'b', 'c'), '123');
    symlinkSync('a', join(top, 'link'));
    const loose = file(join(base, 'loose'), '1');
    expect(await countTree([top, loose])).toEqual({ files: 3, folders: 2, bytes: 9, skipped: 1 });
    expect(await countTree([top, loose], { followSymlinks: true })).toEqual({ files: 4, folders: 2, bytes: 14, skipped: 0 });
  });
});

describe('symbolic links and special files', () => {
  /** top/ with links to a file and a folder outside it, a broken link, a link to an enclosing folder and one to itself. */
  async function linkTree(): Promise<{ base: string; top: string }> {
    const base = await tempFolder();
    const outside = folder(join(base, 'outside'));
    file(join(outside, 'x.txt'), 'outside');
    const top = folder(join(base, 'top'));
    folder(join(top, 'sub'));
    file(join(top, 'sub', 'real.txt'), 'r');
    symlinkSync(join(outside, 'x.txt'), join(top, 'linkfile'));
    symlinkSync('../outside', join(top, 'linkdir'));
    symlinkSync('nowhere', join(top, 'broken'));
    symlinkSync('..', join(top, 'sub', 'back')); // top/sub/back is top
    symlinkSync('self', join(top, 'self'));
    return { base, top };
  }

  it('are skipped by default, with the reason, and nothing they point to is sent', async () => {
    const { top } = await linkTree();
    const skipped = `${SKIP_REASONS.symlink}`;
    expect(SKIP_REASONS.symlink).toBe('a symbolic link (not followed)');
    expect(brief(await collect([top]))).toEqual([
      'dir top',
      `skipped top/broken: ${skipped}`,
      `skipped top/linkdir: ${skipped}`,
      `skipped top/linkfile: ${skipped}`,
      `skipped top/self: ${skipped}`,
      'dir top/sub',
      `skipped top/sub/back: ${skipped}`,
      'file top/sub/real.txt 1',
    ]);
  });

  it('with followSymlinks, send their targets under the links\' names, and skip a loop back to an enclosing folder', async () => {
    const { base, top } = await linkTree();
    const entries = await collect([top], { followSymlinks: true });
    expect(brief(entries)).toEqual([
      'dir top',
      `skipped top/broken: ${SKIP_REASONS.brokenSymlink}`,
      'dir top/linkdir',
      'file top/linkdir/x.txt 7',
      'file top/linkfile 7',
      'skipped top/self: a symbolic link that leads back to itself',
      'dir top/sub',
      `skipped top/sub/back: ${SKIP_REASONS.loop}`,
      'file top/sub/real.txt 1',
    ]);
    // Read through the link, under the link's name.
    expect(entries.find((entry) => entry.path === 'top/linkdir/x.txt')?.absolute).toBe(join(top, 'linkdir', 'x.txt'));
    // A folder reached twice, but not from inside itself, is no loop: sent twice.
    symlinkSync(join(top, 'sub'), join(base, 'outside', 'again'));
    const again = await collect([top], { followSymlinks: true });
    expect(brief(again)).toContain('file top/linkdir/again/real.txt 1');
    expect(brief(again)).toContain(`skipped top/linkdir/again/back: ${SKIP_REASONS.loop}`);
  });

  it('a link to a device is skipped even when links are followed', async () => {
    const base = await tempFolder();
    const top = folder(join(base, 'top'));
    symlinkSync('/dev/null', join(top, 'null'));
    expect(brief(await collect([top], { followSymlinks: true }))).toEqual(['dir top', `skipped top/null: ${SKIP_REASONS.device}`]);
  });

  it.skipIf(!hasMkfifo)('a named pipe and a unix socket are skipped (never opened: a FIFO would wait for a writer)', async () => {
    const base = await tempFolder();
    const top = folder(join(base, 'top'));
    execFileSync('mkfifo', [join(top, 'pipe')]);
    file(join(top, 'regular'), 'r');
    const server: Server = createServer();
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(join(top, 'socket'), resolve));
    try {
      expect(brief(await collect([top]))).toEqual(['dir top', `skipped top/pipe: ${SKIP_REASONS.fifo}`, 'file top/regular 1', `skipped top/socket: ${SKIP_REASONS.socket}`]);
      expect(SKIP_REASONS.fifo).toBe('a named pipe (FIFO)');
      expect(SKIP_REASONS.socket).toBe('a socket');
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe('the roots are checked before anything is sent', () => {
  async function firstStep(roots: string[], options: WalkOptions = {}): Promise<unknown> {
    const walker = walk(roots, options);
    try {
      await walker.next();
      return undefined;
    } catch (error) {
      return error;
    }
  }

  it('a root that does not exist: LocalIoError, even after a good root', async () => {
    const base = await tempFolder();
    const good = file(join(base, 'good.txt'));
    const missing = join(base, 'missing');
    const error = await firstStep([good, missing]);
    expect(error).toBeInstanceOf(LocalIoError);
    expect((error as Error).message).toBe(`cannot read ${missing}: no such file or folder; check the path`);
  });

  it('two roots of the same name: UsageError, also when they differ only in Unicode normalisation, or are one root given twice', async () => {
    const base = await tempFolder();
    const a = file(join(folder(join(base, 'a')), 'x'));
    const b = folder(join(base, 'b', 'x'));
    const error = await firstStep([a, b]);
    expect(error).toBeInstanceOf(UsageError);
    expect((error as Error).message).toBe(`two things to send are both named "x" (${a} and ${b}), and would land in the same place; send them separately, or rename one`);
    const nfc = file(join(folder(join(base, 'c')), 'caf\u00e9'));
    const nfd = file(join(folder(join(base, 'd')), 'cafe\u0301'));
    expect(await firstStep([nfc, nfd])).toBeInstanceOf(UsageError);
    expect(await firstStep([a, a])).toBeInstanceOf(UsageError);
  });

  it('a root named so the receiver would refuse it: LocalIoError, with remedy "rename" when it is the only root', async () => {
    const base = await tempFolder();
    const device = file(join(base, 'CON'));
    const alone = await firstStep([device]);
    expect(alone).toBeInstanceOf(LocalIoError);
    expect(alone).toMatchObject({ remedy: 'rename', message: `cannot send ${device} under the name "CON": the name "CON" in "CON" is a reserved device name; send it under another name` });
    const together = await firstStep([file(join(base, 'ok.txt')), device]);
    expect(together).toBeInstanceOf(LocalIoError);
    expect(together).toMatchObject({ remedy: undefined, message: expect.stringMatching(/; rename it, or send it on its own under another name$/) });
    expect(await firstStep([file(join(base, 'C:x'))])).toMatchObject({ message: expect.stringMatching(/Windows drive/) });
  });

  it('"/" has no name to send it under', async () => {
    expect(await firstStep(['/'])).toMatchObject({ code: 'FTX_ERR_LOCAL_IO', message: 'cannot send /: the top folder has no name to send it under; send what is in it instead' });
  });

  it('a root that is a device or a named pipe: LocalIoError (and a FIFO is not opened)', async () => {
    expect(await firstStep(['/dev/null'])).toMatchObject({ code: 'FTX_ERR_LOCAL_IO', message: 'cannot send /dev/null: it is a device, and ftx sends files and folders' });
    if (!hasMkfifo) return;
    const base = await tempFolder();
    execFileSync('mkfifo', [join(base, 'pipe')]);
    expect(await firstStep([join(base, 'pipe')])).toMatchObject({ message: `cannot send ${join(base, 'pipe')}: it is a named pipe (FIFO), and ftx sends files and folders`, remedy: 'send-as-stream' });
  });
});

/**
 * Permission checks as an unprivileged user. Root reads everything, so when the tests
 * run as root the walk runs in a child process as uid/gid 65534 (nobody), from a bundle
 * of src/fs/walk.ts; otherwise in this process.
 */
describe('what cannot be read', () => {
  const NOBODY = 65534;
  const SRC = fileURLToPath(new URL('../src/', import.meta.url));

  type Outcome = { entries: Walked[] } | { error: { code: string; message: string } };

  async function walkUnprivileged(base: string, roots: string[]): Promise<Outcome> {
    if (!asRoot) {
      try {
        return { entries: await collect(roots) };
      } catch (error) {
        return { error: { code: (error as LocalIoError).code, message: (error as Error).message } };
      }
    }
    const script = join(base, 'walk-as-nobody.mjs');
    buildSync({
      stdin: {
        contents: `import { walk } from './fs/walk.ts';
          const entries = [];
          try {
            for await (const entry of walk(JSON.parse(process.argv[2]))) entries.push(entry);
            console.log(JSON.stringify({ entries }));
          } catch (error) {
            console.log(JSON.stringify({ error: { code: error.code, message: error.message } }));
          }`,
        resolveDir: SRC,
        loader: 'ts',
      },
      bundle: true,
      platform: 'node',
      format: 'esm',
      outfile: script,
      logLevel: 'warning',
    });
    chmodSync(script, 0o644);
    const output = execFileSync(process.execPath, [script, JSON.stringify(roots)], { uid: NOBODY, gid: NOBODY, cwd: base, encoding: 'utf8' });
    return JSON.parse(output) as Outcome;
  }

  it(`a folder or file it may not read is skipped ("${SKIP_REASONS.unreadable}"), the walk goes on; an unreadable root is an error`, async () => {
    const base = await tempFolder();
    chmodSync(base, 0o755); // mkdtemp makes it 0700: nobody could not even look in
    const top = folder(join(base, 'top'));
    file(join(top, 'open.txt'), 'o');
    const locked = folder(join(top, 'locked'));
    file(join(locked, 'inside.txt'), 'i');
    const listOnly = folder(join(top, 'list-only')); // r without x: names, but no way in
    file(join(listOnly, 'f.txt'), 'f');
    const secret = file(join(top, 'secret.txt'), 's');
    chmodSync(locked, 0o000);
    chmodSync(listOnly, 0o644);
    chmodSync(secret, 0o000);
    try {
      const outcome = await walkUnprivileged(base, [top]);
      expect('entries' in outcome ? brief(outcome.entries) : outcome).toEqual([
        'dir top',
        'dir top/list-only',
        `skipped top/list-only/f.txt: ${SKIP_REASONS.unreadable}`,
        `skipped top/locked: ${SKIP_REASONS.unreadable}`,
        'file top/open.txt 1',
        `skipped top/secret.txt: ${SKIP_REASONS.unreadable}`,
      ]);
      expect(await walkUnprivileged(base, [locked])).toEqual({ error: { code: 'FTX_ERR_LOCAL_IO', message: `cannot read ${locked}: permission denied; check its owner and mode` } });
      expect(await walkUnprivileged(base, [secret])).toEqual({ error: { code: 'FTX_ERR_LOCAL_IO', message: `cannot read ${secret}: permission denied; check its owner and mode` } });
    } finally {
      chmodSync(locked, 0o755);
      chmodSync(listOnly, 0o755);
    }
  });
});

describe('a large tree', () => {
  /** On tmpfs when there is one (creating 100,000 files on a disk takes seconds). */
  async function scratchFolder(): Promise<{ path: string; remove: () => Promise<void> }> {
    if (existsSync('/dev/shm')) {
      try {
        const path = await mkdtemp(join('/dev/shm', 'ftx-walk-test-'));
        return { path, remove: () => rm(path, { recursive: true, force: true }) };
      } catch {
        // Not writable here: fall back to the usual temp folder.
      }
    }
    return { path: await tempFolder(), remove: async () => {} };
  }

  it('100,000 empty files in 100 folders: heap stays flat while walking, and the event loop keeps turning', async () => {
    setFlagsFromString('--expose-gc');
    const collectGarbage = runInNewContext('gc') as () => void;
    const scratch = await scratchFolder();
    try {
      const top = folder(join(scratch.path, 'top'));
      for (let folderIndex = 0; folderIndex < 100; folderIndex++) {
        const inner = folder(join(top, `d${folderIndex}`));
        for (let fileIndex = 0; fileIndex < 1000; fileIndex++) closeSync(openSync(join(inner, `f${fileIndex}`), 'w'));
      }

      let ticks = 0;
      const ticker = setInterval(() => ticks++, 1);
      const started = performance.now();
      const totals = await countTree([top]);
      const elapsed = performance.now() - started;
      clearInterval(ticker);
      expect(totals).toEqual({ files: 100_000, folders: 101, bytes: 0, skipped: 0 });
      // The walk uses synchronous calls; without its pauses no timer could fire until it ended.
      expect(ticks, `timer ticks during a ${elapsed.toFixed(0)} ms walk`).toBeGreaterThan(0);

      collectGarbage();
      const before = process.memoryUsage().heapUsed;
      let most = 0;
      let seen = 0;
      for await (const entry of walk([top])) {
        if (entry.kind === 'skipped') throw new Error(`skipped ${entry.path}: ${entry.reason}`);
        if (++seen % 10_000 === 0) {
          collectGarbage(); // mid-walk, with the walk's state live
          most = Math.max(most, process.memoryUsage().heapUsed - before);
        }
      }
      expect(seen).toBe(100_101);

      // What keeping the entries would cost, so the bound below is one that a walk holding them would break.
      collectGarbage();
      const beforeKept = process.memoryUsage().heapUsed;
      const kept = Array.from({ length: 100_000 }, (_, index) => ({ kind: 'file', path: `top/d${index % 100}/f${index}`, absolute: `${top}/d${index % 100}/f${index}`, size: 0, mode: 0o644, mtimeMs: index }));
      collectGarbage();
      const keptBytes = process.memoryUsage().heapUsed - beforeKept;
      expect(kept).toHaveLength(100_000);

      console.log(`walk of 100,101 entries: ${elapsed.toFixed(0)} ms (countTree), heap growth at most ${(most / 1e6).toFixed(2)} MB mid-walk; holding the entries would take ${(keptBytes / 1e6).toFixed(1)} MB`);
      expect(keptBytes).toBeGreaterThan(8_000_000);
      expect(most, `heap growth mid-walk: ${most} bytes`).toBeLessThan(8_000_000);
    } finally {
      await scratch.remove();
    }
  }, 120_000);
});
