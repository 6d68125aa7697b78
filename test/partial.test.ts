/**
 * Partial files kept for resume (issue 15), as units: how they are named
 * (fs/partial.ts partialPaths), when a kept one may be resumed (lookUpPartial, readRecord),
 * and how a resumable StagedFile keeps its record honest: the record is written only after
 * the fdatasync of the bytes it counts, never counts a byte past a write still in flight,
 * and keep(), discard(), place(), restart() and reopen() leave what they say.
 *
 * Real files in temp folders; the only fakes are FileHandle.prototype.datasync and .write,
 * patched (and restored) to hold a sync or a write at a gate the test opens.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, linkSync, mkdirSync, lstatSync, readFileSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { open, readFile, stat, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { encodeRecord, lockPartial, lookUpPartial, nextRecordPath, parseRecord, partialLocked, partialPaths, readRecord, removePartial, unlockPartial, type PartialPaths, type PartialRecord } from '../src/fs/partial.js';
import { CHECKPOINT_EVERY_MS, findLeftovers, removeStaleLeftovers, StagedFile } from '../src/fs/staged-file.js';
import { isTemporaryName } from '../src/fs/temp-names.js';
import { tempFolder } from './helpers/files.js';

const HOUR = 60 * 60 * 1000;
const MiB = 1024 * 1024;

/** The key partial.ts documents: 12 hex digits of SHA-256(identity NUL name), computed here on its own. */
const keyOf = (identity: string | null, name: string) => createHash('sha256').update(`${identity ?? ''}\0${name}`).digest('hex').slice(0, 12);

const bytesOf = (path: string) => Buffer.byteLength(basename(path), 'utf8');

/** A record as StagedFile writes it, for a file of `size` bytes announced with `mtime`. */
function recordFor(target: string, fields: Partial<PartialRecord> = {}): PartialRecord {
  return { version: 1, target, size: 10 * MiB, mtime: 1_700_000_000_123.456, hash: 'blake3', identity: null, created: new Date().toISOString(), durable: 4 * MiB, ...fields };
}

/** A kept partial on disk: `dataBytes` bytes of data and `record` (or raw record text) beside it. */
function keptPartial(finalPath: string, record: PartialRecord | string, dataBytes = 4 * MiB, identity: string | null = null): PartialPaths {
  const paths = partialPaths(finalPath, identity);
  writeFileSync(paths.data, Buffer.alloc(dataBytes, 7));
  writeFileSync(paths.record, typeof record === 'string' ? record : encodeRecord(record));
  return paths;
}

const wanted = (fields: Partial<{ size: number; mtime: number | null; identity: string | null }> = {}) => ({ size: 10 * MiB, mtime: 1_700_000_000_123.456, identity: null, ...fields });

describe('partialPaths: where the partial of a target lives', () => {
  it('beside the target, hidden: .NAME.KEY.ftx-part, .NAME.KEY.ftx-resume and .NAME.KEY.ftx-lock, KEY = 12 hex of SHA-256(identity NUL name), all temporary names', () => {
    const paths = partialPaths('/srv/inbox/big.iso', null);
    const key = keyOf(null, 'big.iso');
    expect(paths).toEqual({ data: `/srv/inbox/.big.iso.${key}.ftx-part`, record: `/srv/inbox/.big.iso.${key}.ftx-resume`, lock: `/srv/inbox/.big.iso.${key}.ftx-lock` });
    expect(isTemporaryName(basename(paths.data))).toBe(true);
    expect(isTemporaryName(basename(paths.record))).toBe(true);
    expect(isTemporaryName(basename(paths.lock))).toBe(true);
    expect(partialPaths('/srv/inbox/big.iso', 'alice').data).toBe(`/srv/inbox/.big.iso.${keyOf('alice', 'big.iso')}.ftx-part`);
  });

  it('the same for the same target and identity (the next attempt finds it); different for another identity, another name, or none', () => {
    expect(partialPaths('/x/a.bin', 'alice')).toEqual(partialPaths('/x/a.bin', 'alice'));
    const names = new Set([
      partialPaths('/x/a.bin', 'alice').data,
      partialPaths('/x/a.bin', 'bob').data,
      partialPaths('/x/a.bin', null).data,
      partialPaths('/x/b.bin', 'alice').data,
      partialPaths('/x/A.bin', 'alice').data,
    ]);
    expect(names.size).toBe(5);
    // A folder is never part of the key: only the name, and the folder the partial is in.
    expect(basename(partialPaths('/x/a.bin', 'alice').data)).toBe(basename(partialPaths('/y/z/a.bin', 'alice').data));
  });

  it('stays under NAME_MAX (255 bytes) for names of 255 bytes, ASCII or multi-byte, and long names that share a prefix still get different keys', () => {
    const ascii = 'a'.repeat(255);
    const twoByte = 'é'.repeat(127); // 254 bytes
    const fourByte = '📦'.repeat(63); // 252 bytes
    const mixed = `x${'📦'.repeat(60)}`; // 241 bytes, odd
    for (const name of [ascii, twoByte, fourByte, mixed]) {
      const paths = partialPaths(`/inbox/${name}`, 'some-identity');
      expect(bytesOf(paths.data), name).toBeLessThanOrEqual(255);
      expect(bytesOf(paths.record), name).toBeLessThanOrEqual(255);
      expect(basename(paths.data)).toMatch(/^\..+\.[0-9a-f]{12}\.ftx-part$/);
      expect(basename(paths.data).endsWith(`.${keyOf('some-identity', name)}.ftx-part`)).toBe(true);
    }
    // Cut to the same stem, told apart by the key (made from the whole name).
    expect(partialPaths(`/inbox/${ascii}`, null).data).not.toBe(partialPaths(`/inbox/${ascii.slice(0, 254)}b`, null).data);
  });

  it('a long name of multi-byte characters is cut on a character boundary: the partial name is well-formed UTF-8', () => {
    // 'x' then 60 four-byte characters: cutting one UTF-16 unit at a time stops at 200
    // bytes in the middle of a surrogate pair unless it cuts whole characters.
    const name = `x${'📦'.repeat(60)}`;
    const stem = basename(partialPaths(`/inbox/${name}`, null).data);
    expect(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(stem), `partial name ${JSON.stringify(stem)} holds a lone surrogate`).toBe(false);
    expect(Buffer.from(stem, 'utf8').toString('utf8')).toBe(stem);
  });
});

describe('lookUpPartial: whether a kept partial may be resumed', () => {
  it('usable: same target, size, mtime and identity, young, durable within the data: offered from record.durable', async () => {
    const target = join(await tempFolder(), 'big.iso');
    const record = recordFor('big.iso', { identity: 'alice' });
    const paths = keptPartial(target, record, 5 * MiB, 'alice');
    const found = lookUpPartial(target, wanted({ identity: 'alice' }), HOUR);
    expect(found).toEqual({ kind: 'usable', paths, record, offset: 4 * MiB });
  });

  it('an mtime that moved by less than a microsecond (a float through JSON and the file system) is the same mtime', async () => {
    const target = join(await tempFolder(), 'big.iso');
    keptPartial(target, recordFor('big.iso'));
    expect(lookUpPartial(target, wanted({ mtime: 1_700_000_000_123.456 + 0.0004 }), HOUR).kind).toBe('usable');
  });

  it('the file changed: another size or another mtime is unusable, saying so', async () => {
    const target = join(await tempFolder(), 'big.iso');
    keptPartial(target, recordFor('big.iso'));
    for (const changed of [wanted({ size: 10 * MiB + 1 }), wanted({ mtime: 1_700_000_000_124.456 }), wanted({ mtime: null })]) {
      const found = lookUpPartial(target, changed, HOUR);
      expect(found.kind, JSON.stringify(changed)).toBe('unusable');
      expect(found.kind === 'unusable' && found.why).toMatch(/changed/);
    }
  });

  it('expired: data untouched for maxAgeMs is unusable; 0 means any age', async () => {
    const target = join(await tempFolder(), 'big.iso');
    const paths = keptPartial(target, recordFor('big.iso'));
    const old = (Date.now() - 2 * HOUR) / 1000;
    utimesSync(paths.data, old, old);
    const found = lookUpPartial(target, wanted(), HOUR);
    expect(found.kind).toBe('unusable');
    expect(found.kind === 'unusable' && found.why).toMatch(/expired/);
    expect(lookUpPartial(target, wanted(), 3 * HOUR).kind).toBe('usable');
    expect(lookUpPartial(target, wanted(), 0).kind).toBe('usable');
    // `now` is the caller's clock.
    expect(lookUpPartial(target, wanted(), 3 * HOUR, Date.now() + 2 * HOUR).kind).toBe('unusable');
  });

  it('a torn, empty or foreign record is no record: not resumable (a leftover)', async () => {
    const folder = await tempFolder();
    const good = encodeRecord(recordFor('big.iso')).toString('utf8');
    const cases = [
      good.slice(0, good.length / 2),
      '',
      '{"version":2,"target":"big.iso"}',
      JSON.stringify({ ...recordFor('big.iso'), durable: -1 }),
      JSON.stringify({ ...recordFor('big.iso'), durable: 11 * MiB }), // more than the size
      JSON.stringify({ ...recordFor('big.iso'), hash: 'md5' }),
      JSON.stringify({ ...recordFor('big.iso'), mtime: 'yesterday' }),
      'null',
    ];
    for (const [i, text] of cases.entries()) {
      const target = join(folder, `f${i}`, 'big.iso');
      mkdirSync(dirname(target));
      keptPartial(target, text);
      expect(lookUpPartial(target, wanted(), HOUR), text.slice(0, 60)).toMatchObject({ kind: 'none', leftover: true });
    }
  });

  it('a record that is a symbolic link (even to a valid record) is not used; nor is partial data that is a link', async () => {
    const folder = await tempFolder();
    const target = join(folder, 'big.iso');
    const paths = partialPaths(target, null);
    writeFileSync(paths.data, Buffer.alloc(4 * MiB));
    const elsewhere = join(folder, 'elsewhere.json');
    writeFileSync(elsewhere, encodeRecord(recordFor('big.iso')));
    symlinkSync(elsewhere, paths.record);
    expect(readRecord(paths.record)).toBeUndefined();
    expect(lookUpPartial(target, wanted(), HOUR).kind).toBe('none');

    const other = join(folder, 'other.iso');
    const otherPaths = partialPaths(other, null);
    writeFileSync(join(folder, 'real-data'), Buffer.alloc(4 * MiB));
    symlinkSync(join(folder, 'real-data'), otherPaths.data);
    writeFileSync(otherPaths.record, encodeRecord(recordFor('other.iso')));
    expect(lookUpPartial(other, wanted(), HOUR).kind).toBe('unusable');
  });

  it('another identity never finds it: a different name; and a record at its name that claims another identity is not used', async () => {
    const folder = await tempFolder();
    const target = join(folder, 'big.iso');
    keptPartial(target, recordFor('big.iso', { identity: 'alice' }), 4 * MiB, 'alice');
    expect(lookUpPartial(target, wanted({ identity: 'bob' }), HOUR)).toMatchObject({ kind: 'none', leftover: false });
    expect(lookUpPartial(target, wanted({ identity: null }), HOUR)).toMatchObject({ kind: 'none', leftover: false });
    // Alice's record copied to where Bob's partial would be.
    keptPartial(target, recordFor('big.iso', { identity: 'alice' }), 4 * MiB, 'bob');
    expect(lookUpPartial(target, wanted({ identity: 'bob' }), HOUR).kind).toBe('none');
    expect(lookUpPartial(target, wanted({ identity: 'alice' }), HOUR).kind).toBe('usable');
  });

  it('a record for another target name, one with nothing durable, or one that claims more than the data holds is not resumed', async () => {
    const folder = await tempFolder();
    const a = join(folder, 'a.iso');
    keptPartial(a, recordFor('b.iso'));
    expect(lookUpPartial(a, wanted(), HOUR).kind).toBe('none');
    const b = join(folder, 'b.iso');
    keptPartial(b, recordFor('b.iso', { durable: 0 }));
    expect(lookUpPartial(b, wanted(), HOUR).kind).toBe('none');
    const c = join(folder, 'c.iso');
    keptPartial(c, recordFor('c.iso', { durable: 4 * MiB }), 4 * MiB - 1);
    const short = lookUpPartial(c, wanted(), HOUR);
    expect(short.kind).toBe('unusable');
    expect(short.kind === 'unusable' && short.why).toMatch(/shorter/);
  });

  it('no partial: none, leftover only when a record lies about alone; removePartial removes both and tolerates missing ones', async () => {
    const folder = await tempFolder();
    const target = join(folder, 'big.iso');
    expect(lookUpPartial(target, wanted(), HOUR)).toMatchObject({ kind: 'none', leftover: false });
    const paths = partialPaths(target, null);
    writeFileSync(paths.record, encodeRecord(recordFor('big.iso')));
    expect(lookUpPartial(target, wanted(), HOUR)).toMatchObject({ kind: 'none', leftover: true });
    writeFileSync(paths.data, 'x');
    removePartial(paths);
    expect(existsSync(paths.data) || existsSync(paths.record)).toBe(false);
    removePartial(paths);
  });

  it('records round-trip: encodeRecord is one JSON line that parseRecord and readRecord give back', async () => {
    const record = recordFor('naïve name.iso', { identity: 'web1', mtime: null });
    const line = encodeRecord(record).toString('utf8');
    expect(line.endsWith('\n')).toBe(true);
    expect(line.trimEnd()).not.toContain('\n');
    expect(parseRecord(line)).toEqual(record);
    const path = join(await tempFolder(), 'r');
    writeFileSync(path, line);
    expect(readRecord(path)).toEqual(record);
  });
});

// ---------------------------------------------------------------------------------------
// StagedFile, resumable.

/** The prototype every FileHandle shares: patched to hold a datasync or a write. */
async function fileHandlePrototype(): Promise<FileHandle> {
  const handle = await open(fileURLToPath(import.meta.url), 'r');
  const proto = Object.getPrototypeOf(handle) as FileHandle;
  await handle.close();
  return proto;
}

const restores: Array<() => void> = [];
afterEach(() => {
  for (const restore of restores.splice(0)) restore();
  vi.restoreAllMocks();
});

/** Replaces `proto[method]` until the end of the test. */
function patch<K extends 'datasync' | 'write'>(proto: FileHandle, method: K, replacement: (original: FileHandle[K]) => FileHandle[K]): void {
  const original = proto[method];
  (proto as unknown as Record<string, unknown>)[method] = replacement(original);
  restores.push(() => {
    (proto as unknown as Record<string, unknown>)[method] = original;
  });
}

/** A gate a patched call waits at until the test opens it. */
function gate(): { wait: Promise<void>; open: () => void } {
  let open!: () => void;
  const wait = new Promise<void>((resolve) => (open = resolve));
  return { wait, open };
}

const recordOn = (paths: PartialPaths) => readRecord(paths.record);

async function resumable(identity: string | null = 'alice'): Promise<{ staged: StagedFile; paths: PartialPaths; target: string }> {
  const target = join(await tempFolder(), 'big.iso');
  const paths = partialPaths(target, identity);
  const staged = await StagedFile.createResumable(target, 0o644, paths, { target: 'big.iso', size: 8 * MiB, mtime: 1_700_000_000_000, hash: 'blake3', identity });
  return { staged, paths, target };
}

describe('StagedFile.createResumable and checkpoint(): the record counts only synced bytes', () => {
  it('writes under the partial name; no record before the first checkpoint; then one that says what is durable', async () => {
    const { staged, paths, target } = await resumable();
    expect(staged.resumable).toBe(true);
    expect(staged.tempPath).toBe(paths.data);
    expect(staged.finalPath).toBe(target);
    await staged.writeAt(Buffer.alloc(MiB, 1), 0);
    expect(existsSync(paths.record)).toBe(false);
    expect(staged.writtenThrough).toBe(MiB);
    await staged.checkpoint();
    expect(recordOn(paths)).toMatchObject({ version: 1, target: 'big.iso', size: 8 * MiB, mtime: 1_700_000_000_000, hash: 'blake3', identity: 'alice', durable: MiB });
    expect(Number.isNaN(Date.parse(recordOn(paths)?.created ?? ''))).toBe(false);
    expect(staged.durableBytes).toBe(MiB);
    expect(existsSync(target)).toBe(false);
    await staged.discard();
  });

  it('replaces whatever was at the partial names (the caller decided it is not resumable)', async () => {
    const target = join(await tempFolder(), 'big.iso');
    const paths = keptPartial(target, recordFor('big.iso'), 3 * MiB);
    const staged = await StagedFile.createResumable(target, 0o644, paths, { target: 'big.iso', size: 8 * MiB, mtime: 1, hash: 'blake3', identity: null });
    expect(statSync(paths.data).size).toBe(0);
    expect(existsSync(paths.record)).toBe(false);
    await staged.discard();
  });

  it('the record is written only after datasync completes: while a datasync is held, the record still shows the old durable bytes', async () => {
    const proto = await fileHandlePrototype();
    const { staged, paths } = await resumable();
    await staged.writeAt(Buffer.alloc(MiB, 1), 0);
    await staged.checkpoint();
    expect(recordOn(paths)?.durable).toBe(MiB);

    const held = gate();
    let syncs = 0;
    patch(proto, 'datasync', (original) =>
      async function (this: FileHandle) {
        syncs += 1;
        await held.wait;
        return original.call(this);
      },
    );
    await staged.writeAt(Buffer.alloc(MiB, 2), MiB);
    const checkpoint = staged.checkpoint();
    // A second checkpoint asked for meanwhile joins the first.
    expect(staged.checkpoint()).toBe(checkpoint);
    await sleep(50);
    expect(syncs).toBe(1);
    for (let i = 0; i < 5; i++) {
      expect(recordOn(paths)?.durable, 'record during the held datasync').toBe(MiB);
      expect(staged.durableBytes).toBe(MiB);
      await sleep(20);
    }
    held.open();
    await checkpoint;
    expect(recordOn(paths)?.durable).toBe(2 * MiB);
    await staged.discard();
  });

  it('a datasync that fails leaves the record as it was, and the checkpoint fails', async () => {
    const proto = await fileHandlePrototype();
    const { staged, paths } = await resumable();
    await staged.writeAt(Buffer.alloc(MiB, 1), 0);
    await staged.checkpoint();
    patch(proto, 'datasync', () => () => Promise.reject(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' })));
    await staged.writeAt(Buffer.alloc(MiB, 2), MiB);
    await expect(staged.checkpoint()).rejects.toThrow(/EIO/);
    expect(recordOn(paths)?.durable).toBe(MiB);
    await staged.discard();
  });

  it('never counts bytes past a write still in flight: a hole before later bytes holds the durable prefix back', async () => {
    const proto = await fileHandlePrototype();
    const { staged, paths } = await resumable();
    const held = gate();
    patch(proto, 'write', (original) =>
      async function (this: FileHandle, ...args: unknown[]) {
        if (args[3] === 0) await held.wait;
        return (original as (...a: unknown[]) => unknown).apply(this, args);
      } as FileHandle['write'],
    );
    const first = staged.writeAt(Buffer.alloc(MiB, 1), 0);
    await staged.writeAt(Buffer.alloc(MiB, 2), MiB);
    expect(staged.writtenThrough).toBe(0);
    await staged.checkpoint();
    expect(recordOn(paths)?.durable ?? 0).toBe(0);
    held.open();
    await first;
    expect(staged.writtenThrough).toBe(2 * MiB);
    await staged.checkpoint();
    expect(recordOn(paths)?.durable).toBe(2 * MiB);
    await staged.discard();
  });

  it(`brings the record up to date by itself as data is written, once CHECKPOINT_EVERY_MS (${CHECKPOINT_EVERY_MS} ms) has passed`, async () => {
    let now = 1_000_000;
    vi.spyOn(performance, 'now').mockImplementation(() => now);
    const { staged, paths } = await resumable();
    await staged.writeAt(Buffer.alloc(MiB, 1), 0);
    await sleep(30);
    expect(existsSync(paths.record)).toBe(false);
    now += CHECKPOINT_EVERY_MS;
    await staged.writeAt(Buffer.alloc(MiB, 2), MiB);
    await expect.poll(() => recordOn(paths)?.durable, { timeout: 5_000 }).toBe(2 * MiB);
    await staged.discard();
  });
});

describe('StagedFile, resumable: keep, discard, place, restart, reopen', () => {
  it('keep() syncs, records and returns the durable bytes, and leaves the data and its record; the file is closed', async () => {
    const { staged, paths, target } = await resumable();
    await staged.writeAt(Buffer.alloc(3 * MiB, 5), 0);
    const kept = await staged.keep();
    expect(kept).toBe(3 * MiB);
    expect(recordOn(paths)?.durable).toBe(3 * MiB);
    expect(statSync(paths.data).size).toBeGreaterThanOrEqual(kept);
    expect(existsSync(target)).toBe(false);
    await expect(staged.writeAt(Buffer.alloc(1), 3 * MiB)).rejects.toThrow(/kept/);
    // Kept is final: a discard afterwards (a caller's cleanup) leaves it.
    await staged.discard();
    expect(existsSync(paths.data) && existsSync(paths.record)).toBe(true);
    // What a receiver finds next time.
    expect(lookUpPartial(target, { size: 8 * MiB, mtime: 1_700_000_000_000, identity: 'alice' }, HOUR)).toMatchObject({ kind: 'usable', offset: 3 * MiB });
    expect((await findLeftovers(dirname(target))).map((leftover) => basename(leftover.path)).sort()).toEqual([basename(paths.data), basename(paths.record)].sort());
  });

  it('keep() with nothing written keeps nothing: 0, and no partial left', async () => {
    const { staged, paths } = await resumable();
    expect(await staged.keep()).toBe(0);
    expect(existsSync(paths.data) || existsSync(paths.record)).toBe(false);
  });

  it('keep() when the data cannot be synced keeps nothing (0) rather than a record it cannot vouch for', async () => {
    const proto = await fileHandlePrototype();
    const { staged, paths } = await resumable();
    await staged.writeAt(Buffer.alloc(MiB, 5), 0);
    patch(proto, 'datasync', () => () => Promise.reject(Object.assign(new Error('EIO'), { code: 'EIO' })));
    expect(await staged.keep()).toBe(0);
    const record = recordOn(paths);
    // Either nothing is left, or nothing left claims a byte.
    expect(record === undefined || record.durable === 0).toBe(true);
  });

  it('discard() removes the data and the record', async () => {
    const { staged, paths } = await resumable();
    await staged.writeAt(Buffer.alloc(MiB, 5), 0);
    await staged.checkpoint();
    expect(existsSync(paths.record)).toBe(true);
    await staged.discard();
    expect(existsSync(paths.data) || existsSync(paths.record)).toBe(false);
  });

  it('seal() and place() put the whole file under its name and remove the record', async () => {
    const { staged, paths, target } = await resumable();
    const bytes = Buffer.alloc(2 * MiB, 9);
    await staged.writeAt(bytes, 0);
    await staged.checkpoint();
    await staged.seal({ mtimeMs: 1_700_000_000_000 });
    await staged.place(target, { replace: false });
    expect((await readFile(target)).equals(bytes)).toBe(true);
    expect(Math.round((await stat(target)).mtimeMs)).toBe(1_700_000_000_000);
    expect(existsSync(paths.data) || existsSync(paths.record)).toBe(false);
  });

  it('restart() empties the file and its record says nothing is durable; writing starts over', async () => {
    const { staged, paths } = await resumable();
    await staged.writeAt(Buffer.alloc(3 * MiB, 5), 0);
    await staged.checkpoint();
    await staged.restart();
    expect(statSync(paths.data).size).toBe(0);
    expect(staged.bytesWritten).toBe(0);
    expect(staged.writtenThrough).toBe(0);
    expect(staged.durableBytes).toBe(0);
    expect(recordOn(paths)?.durable).toBe(0);
    await staged.writeAt(Buffer.alloc(MiB, 6), 0);
    expect(await staged.keep()).toBe(MiB);
    expect(readFileSync(paths.data).equals(Buffer.alloc(MiB, 6))).toBe(true);
  });

  it('reopen() goes on from the durable offset, cutting off what no record vouches for', async () => {
    const { staged, paths, target } = await resumable();
    await staged.writeAt(Buffer.alloc(2 * MiB, 1), 0);
    expect(await staged.keep()).toBe(2 * MiB);
    // Bytes written after the last record (a receiver killed before its next checkpoint).
    const more = await open(paths.data, 'a');
    await more.write(Buffer.alloc(MiB, 0xee));
    await more.close();
    const record = readRecord(paths.record) as PartialRecord;
    const again = await StagedFile.reopen(target, paths, record, record.durable);
    expect(statSync(paths.data).size).toBe(2 * MiB);
    expect(again.bytesWritten).toBe(2 * MiB);
    expect(again.writtenThrough).toBe(2 * MiB);
    expect(again.durableBytes).toBe(2 * MiB);
    await again.writeAt(Buffer.alloc(MiB, 3), 2 * MiB);
    await again.checkpoint();
    expect(recordOn(paths)).toMatchObject({ durable: 3 * MiB, created: record.created, identity: 'alice' });
    const bytes = readFileSync(paths.data);
    expect(bytes.subarray(0, 2 * MiB).equals(Buffer.alloc(2 * MiB, 1))).toBe(true);
    expect(bytes.subarray(2 * MiB).equals(Buffer.alloc(MiB, 3))).toBe(true);
    await again.discard();
  });

  it('reopen() refuses a partial shorter than the offset, and one with a second hard link (it would write through to another name)', async () => {
    const { staged, paths, target } = await resumable();
    await staged.writeAt(Buffer.alloc(2 * MiB, 1), 0);
    await staged.keep();
    const record = readRecord(paths.record) as PartialRecord;
    await expect(StagedFile.reopen(target, paths, record, 3 * MiB)).rejects.toThrow();
    const other = join(dirname(target), 'elsewhere');
    linkSync(paths.data, other);
    await expect(StagedFile.reopen(target, paths, record, record.durable)).rejects.toThrow();
    expect(lstatSync(other).size).toBe(2 * MiB);
  });
});

describe('lockPartial: one writer per partial, whatever the process', () => {
  it('is taken once; a second taker (another transfer of this process) is told no until it is given back', async () => {
    const paths = partialPaths(join(await tempFolder(), 'big.iso'), null);
    expect(lockPartial(paths)).toBe(true);
    expect(readFileSync(paths.lock, 'utf8')).toBe(`${process.pid}\n`);
    expect(partialLocked(paths)).toBe(true);
    expect(lockPartial(paths)).toBe(false);
    unlockPartial(paths);
    expect(partialLocked(paths)).toBe(false);
    expect(lockPartial(paths)).toBe(true);
    unlockPartial(paths);
  });

  it('a lock left by a process that is gone (kill -9) is taken over', async () => {
    const paths = partialPaths(join(await tempFolder(), 'big.iso'), null);
    const gone = spawnSync(process.execPath, ['-e', '0']).pid as number;
    writeFileSync(paths.lock, `${gone}\n`);
    expect(partialLocked(paths)).toBe(false);
    expect(lockPartial(paths)).toBe(true);
    expect(readFileSync(paths.lock, 'utf8')).toBe(`${process.pid}\n`);
    unlockPartial(paths);
  });

  it('a lock held by another live process is left alone', async () => {
    const paths = partialPaths(join(await tempFolder(), 'big.iso'), null);
    const other = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 20000)']);
    try {
      writeFileSync(paths.lock, `${other.pid}\n`);
      expect(partialLocked(paths)).toBe(true);
      expect(lockPartial(paths)).toBe(false);
      expect(readFileSync(paths.lock, 'utf8')).toBe(`${other.pid}\n`);
    } finally {
      other.kill('SIGKILL');
    }
  });

  it('a lock with no process id yet counts while young (being written), and is taken over once old', async () => {
    const paths = partialPaths(join(await tempFolder(), 'big.iso'), null);
    writeFileSync(paths.lock, '');
    expect(lockPartial(paths)).toBe(false);
    const old = (Date.now() - 60_000) / 1000;
    utimesSync(paths.lock, old, old);
    expect(lockPartial(paths)).toBe(true);
    unlockPartial(paths);
  });
});

describe('sweeps and records around a live transfer', () => {
  it('the sweep never removes a partial whose lock a live process holds, however old its files are', async () => {
    const folder = await tempFolder();
    const paths = partialPaths(join(folder, 'big.iso'), null);
    writeFileSync(paths.data, 'half');
    writeFileSync(paths.record, encodeRecord({ version: 1, target: 'big.iso', size: 8, mtime: null, hash: 'blake3', identity: null, created: new Date(0).toISOString(), durable: 4 }));
    expect(lockPartial(paths)).toBe(true);
    const old = (Date.now() - 30 * 86_400_000) / 1000;
    for (const path of [paths.data, paths.record, paths.lock]) utimesSync(path, old, old);
    const held = await removeStaleLeftovers(folder, 86_400_000);
    expect(held.removed).toEqual([]);
    expect(held.kept.map((leftover) => basename(leftover.path))).toEqual([basename(paths.data)]);
    unlockPartial(paths);
    const gone = await removeStaleLeftovers(folder, 86_400_000);
    expect(gone.removed.map((leftover) => basename(leftover.path)).sort()).toEqual([basename(paths.data), basename(paths.record)].sort());
  });

  it('a checkpoint writes the record beside it and renames it over: no next-record file is left, the record is whole', async () => {
    const folder = await tempFolder();
    const target = join(folder, 'big.iso');
    const paths = partialPaths(target, null);
    expect(lockPartial(paths)).toBe(true);
    const staged = await StagedFile.createResumable(target, 0o644, paths, { target: 'big.iso', size: 10, mtime: null, hash: 'blake3', identity: null });
    await staged.writeAt(Buffer.from('hello'), 0);
    await staged.checkpoint();
    expect(readRecord(paths.record)?.durable).toBe(5);
    expect(existsSync(nextRecordPath(paths))).toBe(false);
    expect(await staged.keep()).toBe(5);
    expect(existsSync(paths.lock)).toBe(false);
  });
});

describe('a partial replaced under its writer', () => {
  it('is never given the final name: place() finds the name leads to another file, and stores nothing', async () => {
    const folder = await tempFolder();
    const target = join(folder, 'big.iso');
    const paths = partialPaths(target, null);
    expect(lockPartial(paths)).toBe(true);
    const staged = await StagedFile.createResumable(target, 0o644, paths, { target: 'big.iso', size: 5, mtime: null, hash: 'blake3', identity: null });
    await staged.writeAt(Buffer.from('hello'), 0);
    await staged.seal();
    // Another writer (a second process that took the lock over) removed it and made its own.
    removePartial(paths);
    writeFileSync(paths.data, 'other');
    await expect(staged.place(target, { replace: false })).rejects.toMatchObject({ code: 'FTX_ERR_LOCAL_IO', message: expect.stringMatching(/replaced by another writer/) });
    expect(existsSync(target)).toBe(false);
  });
});
