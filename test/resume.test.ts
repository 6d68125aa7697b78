/**
 * Resume (issue 15): a cut transfer leaves its durable part on the receiver, and the same
 * send run again continues from there once both ends have shown they hold the same
 * prefix; a damaged partial or a changed source is caught and the file sent whole; a
 * partial belongs to its target and its sender's identity; stale partials expire; a
 * session re-run sends only what is missing.
 *
 * What users type: the real CLI as child processes (`ftx recv`, `ftx send`), cut with
 * SIGKILL mid-file. To make the cut land mid-file every time, the first attempt goes
 * through a loopback proxy that slows the sender's bytes to a steady rate (SlowProxy), and
 * the test kills the sender once the receiver's partial file has grown past a mark. The
 * library is driven in-process too (send() aborted by its AbortSignal at 40%: Ctrl-C).
 *
 * Checked every time: the result is byte-identical (cmp), the JSON summaries say how many
 * bytes were skipped, and the bytes that moved the second time are the rest.
 * Real sockets on 127.0.0.1, port 0; every wait bounded; no timing asserts.
 */
import { spawnSync } from 'node:child_process';
import { chmod, mkdir, open, readdir, readFile, rm, stat, statfs, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { receive, send, type ResumeEvent } from '../src/index.js';
import type { CliRun } from './helpers/cli.js';
import { runCli } from './helpers/cli.js';
import { tempFolder } from './helpers/files.js';
import { canMount, mountTmpfs } from './helpers/mounts.js';
import {
  eventsOf,
  ftxFilesIn,
  HOST,
  jsonOf,
  partialBytes,
  partialsIn,
  readRecordJson,
  recvCli,
  sendCli,
  slowProxy,
  waitFor,
  within,
  bigFile,
  expectIdentical,
  exitOf,
  type PartialOnDisk,
  type RecordOnDisk,
} from './helpers/resume.js';

const MiB = 1024 * 1024;
const DAY = 24 * 60 * 60 * 1000;
/** Files for the CLI cases: 48 MiB, sent at 24 MiB/s on the first attempt (about 2 s whole). */
const SIZE = 48 * MiB;
const RATE = 24 * MiB;
/** A fixed, whole-second mtime for sources, so a test can put it back exactly. */
const SOURCE_MTIME_S = 1_700_000_000;

/** diff -r: the two trees hold the same names and bytes. */
function expectSameTree(actual: string, expected: string): void {
  const result = spawnSync('diff', ['-r', actual, expected], { encoding: 'utf8' });
  expect(result.status, `diff -r ${actual} ${expected}:\n${result.stdout}${result.stderr}`).toBe(0);
}


interface Cut {
  partial: PartialOnDisk;
  record: RecordOnDisk;
  /** The receiver's partial-kept log line. */
  kept: Record<string, unknown>;
}

/**
 * Sends `paths` to `recv` through a slow proxy and kills the sender with SIGKILL once the
 * partial file in `folder` holds `at` of `size` bytes (and `ready()` says so); waits for
 * the receiver to keep the partial. A one-shot receiver then exits 9 (the connection was lost).
 */
async function cutSender(
  recv: CliRun & { port: number },
  folder: string,
  paths: string[],
  size: number,
  options: { at?: number; args?: string[]; env?: NodeJS.ProcessEnv; oneShot?: boolean; ready?: () => boolean | Promise<boolean> } = {},
): Promise<Cut> {
  const at = options.at ?? 0.4;
  const proxy = await slowProxy(recv.port, RATE);
  const sender = sendCli(paths, proxy.port, options.args ?? [], options.env ?? {});
  await waitFor(
    async () => {
      if (sender.child.exitCode !== null || sender.child.signalCode !== null) {
        throw new Error(`the sender exited (${sender.child.exitCode ?? sender.child.signalCode}) before the cut; stdout:\n${sender.stdout()}\nstderr:\n${sender.stderr()}\nreceiver stderr:\n${recv.stderr()}`);
      }
      return partialBytes(folder) >= at * size && (options.ready ? await options.ready() : true) ? true : undefined;
    },
    `the partial file in ${folder} to pass ${at * 100}% of ${size} bytes`,
    30_000,
  ).catch((error: Error) => {
    throw new Error(`${error.message}; partials: ${JSON.stringify(partialsIn(folder))}; sender stdout:\n${sender.stdout()}\nsender stderr:\n${sender.stderr()}\nreceiver stderr:\n${recv.stderr()}`);
  });
  sender.child.kill('SIGKILL');
  expect(await exitOf(sender, 'the killed sender')).toBe(128 + 9);
  const kept = await recv.waitForLog((record) => record.event === 'partial-kept', 15_000);
  if (options.oneShot !== false) expect(await exitOf(recv, 'the receiver whose sender was killed')).toBe(9);
  const partials = partialsIn(folder);
  expect(partials, `partials in ${folder}: ${ftxFilesIn(folder).join(', ')}`).toHaveLength(1);
  const partial = partials[0] as PartialOnDisk;
  const record = readRecordJson(partial.record);
  expect(record, `the record of ${partial.data}`).toBeDefined();
  expect(record?.durable).toBeGreaterThan(0);
  expect(record?.durable).toBeLessThan(size);
  expect(record?.durable).toBeLessThanOrEqual(partial.bytes);
  expect(kept).toMatchObject({ bytes: record?.durable, size });
  return { partial, record: record as RecordOnDisk, kept };
}

/** Runs a sender to completion and returns both summaries; both ends exit 0. */
async function completes(sender: CliRun, recv: CliRun): Promise<{ sent: Record<string, unknown>; received: Record<string, unknown> }> {
  expect(await exitOf(sender, 'the sender'), sender.stderr()).toBe(0);
  expect(await exitOf(recv, 'the receiver'), recv.stderr()).toBe(0);
  return { sent: jsonOf(sender), received: jsonOf(recv) };
}

/** Flips one byte of `path` at `offset`. */
async function flipByte(path: string, offset: number): Promise<void> {
  const handle = await open(path, 'r+');
  try {
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, offset);
    byte[0] = (byte[0] as number) ^ 0xff;
    await handle.write(byte, 0, 1, offset);
  } finally {
    await handle.close();
  }
}

/** `ftx keygen --id ID`: its one line. */
async function keygen(id: string): Promise<string> {
  const run = runCli(['keygen', '--id', id]);
  expect(await exitOf(run, 'ftx keygen')).toBe(0);
  return run.stdout().trim();
}

async function keyFile(folder: string, name: string, text: string): Promise<string> {
  const path = join(folder, name);
  await writeFile(path, `${text}\n`);
  await chmod(path, 0o600);
  return path;
}

// ---------------------------------------------------------------------------------------

describe('a cut transfer resumes (CLI)', { timeout: 90_000 }, () => {
  it('sender killed with SIGKILL midway: the receiver keeps the partial; the same send again resumes: identical, bytesSkipped = the kept bytes, only the rest moves', async () => {
    const source = await bigFile(await tempFolder(), 'big.bin', SIZE);
    const inbox = await tempFolder();
    const first = await recvCli([inbox]);
    const cut = await cutSender(first, inbox, [source], SIZE);
    expect(cut.record).toMatchObject({ version: 1, target: 'big.bin', size: SIZE, mtime: SOURCE_MTIME_S * 1000, hash: 'blake3', identity: null });
    expect(ftxFilesIn(inbox)).toHaveLength(2);
    expect(eventsOf(first, 'partial-kept')[0]?.msg).toMatch(/resumes/);

    const second = await recvCli([inbox]);
    // Not slowed: the proxy counts the bytes the second attempt puts on the wire.
    const counter = await slowProxy(second.port, 1024 * MiB);
    const sender = sendCli([source], counter.port);
    const { sent, received } = await completes(sender, second);
    expectIdentical(join(inbox, 'big.bin'), source);
    expect(ftxFilesIn(inbox)).toEqual([]);

    const offset = cut.record.durable;
    expect(sent).toMatchObject({ ok: true, verified: true, bytes: SIZE, bytesSkipped: offset, unchanged: 0, files: 1 });
    expect(received).toMatchObject({ ok: true, bytesSkipped: offset, unchanged: 0, files: 1, bytes: SIZE - offset });
    expect(sent.bytesSkipped).toBeGreaterThan(0);
    expect(sent.bytesSkipped).toBeLessThan(SIZE);
    // On the wire: the rest of the file, and frames.
    expect(counter.upBytes[0]).toBeGreaterThanOrEqual(SIZE - offset);
    expect(counter.upBytes[0]).toBeLessThan(SIZE - offset + 256 * 1024);
    expect(eventsOf(sender, 'resumed')).toEqual([expect.objectContaining({ path: 'big.bin', offset, size: SIZE })]);
    expect(eventsOf(second, 'resumed')).toEqual([expect.objectContaining({ path: 'big.bin', offset, size: SIZE })]);
    expect(eventsOf(sender, 'resume-refused')).toEqual([]);
    // The new receiver saw the partial at start-up and said it was kept (an info line, not a warning).
    expect(eventsOf(second, 'leftover')).toEqual([expect.objectContaining({ path: cut.partial.data, level: 30 })]);
  });

  it('one-shot receiver on a target FILE (ftx recv big.iso), cut, started again on it: resumes into big.iso', async () => {
    const source = await bigFile(await tempFolder(), 'image.bin', SIZE);
    const inbox = await tempFolder();
    const target = join(inbox, 'big.iso');
    const cut = await cutSender(await recvCli([target]), inbox, [source], SIZE);
    expect(cut.record.target).toBe('big.iso');
    expect(cut.partial.data).toMatch(/\/\.big\.iso\.[0-9a-f]{12}\.ftx-part$/);
    const again = await recvCli([target]);
    const { sent, received } = await completes(sendCli([source], again.port), again);
    expectIdentical(target, source);
    expect(sent).toMatchObject({ ok: true, bytesSkipped: cut.record.durable });
    expect(received).toMatchObject({ ok: true, path: target, bytes: SIZE - cut.record.durable, bytesSkipped: cut.record.durable });
    expect((await readdir(inbox)).sort()).toEqual(['big.iso']);
  });

  it('--no-resume sends the file whole (bytesSkipped 0) and the result is right', async () => {
    const source = await bigFile(await tempFolder(), 'big.bin', SIZE);
    const inbox = await tempFolder();
    await cutSender(await recvCli([inbox]), inbox, [source], SIZE);
    const again = await recvCli([inbox]);
    const sender = sendCli([source], again.port, ['--no-resume']);
    const { sent, received } = await completes(sender, again);
    expectIdentical(join(inbox, 'big.bin'), source);
    expect(sent).toMatchObject({ ok: true, bytes: SIZE, bytesSkipped: 0, unchanged: 0 });
    expect(received).toMatchObject({ ok: true, bytes: SIZE, bytesSkipped: 0 });
    expect(eventsOf(sender, 'resumed')).toEqual([]);
    expect(eventsOf(again, 'resumed')).toEqual([]);
  });

  it('once --no-resume has stored the file whole, no partial of it is left behind (it would hold the disk for 7 days and be announced as resumable)', async () => {
    const source = await bigFile(await tempFolder(), 'big.bin', SIZE);
    const inbox = await tempFolder();
    await cutSender(await recvCli([inbox]), inbox, [source], SIZE);
    const again = await recvCli([inbox]);
    await completes(sendCli([source], again.port, ['--no-resume']), again);
    expectIdentical(join(inbox, 'big.bin'), source);
    expect(ftxFilesIn(inbox), 'hidden ftx files left beside big.bin').toEqual([]);
  });

  it('serve mode (--serve --insecure): a cut transfer resumes against the same serving receiver, which keeps serving', async () => {
    const source = await bigFile(await tempFolder(), 'big.bin', SIZE);
    const inbox = await tempFolder();
    const recv = await recvCli([inbox, '--serve', '--insecure']);
    const cut = await cutSender(recv, inbox, [source], SIZE, { oneShot: false });
    const sender = sendCli([source], recv.port);
    expect(await exitOf(sender, 'the second sender'), sender.stderr()).toBe(0);
    expectIdentical(join(inbox, 'big.bin'), source);
    expect(jsonOf(sender)).toMatchObject({ ok: true, bytesSkipped: cut.record.durable });
    await recv.waitForLog((record) => record.event === 'resumed', 5_000);
    expect(eventsOf(recv, 'resumed')).toEqual([expect.objectContaining({ path: 'big.bin', offset: cut.record.durable })]);
    expect(ftxFilesIn(inbox)).toEqual([]);
    expect(recv.child.exitCode).toBeNull();
    recv.child.kill('SIGTERM');
    expect(await exitOf(recv, 'the serving receiver')).toBe(0);
  });
});

describe('a prefix that is not the same is caught, and the file sent whole', { timeout: 90_000 }, () => {
  it('a partial with one flipped byte inside its durable prefix: resume-refused on both ends naming the mismatch, sent whole, identical, bytesSkipped 0', async () => {
    const source = await bigFile(await tempFolder(), 'big.bin', SIZE);
    const inbox = await tempFolder();
    const cut = await cutSender(await recvCli([inbox]), inbox, [source], SIZE);
    await flipByte(cut.partial.data, Math.floor(cut.record.durable / 2));
    const again = await recvCli([inbox]);
    const sender = sendCli([source], again.port);
    const { sent, received } = await completes(sender, again);
    expectIdentical(join(inbox, 'big.bin'), source);
    expect(sent).toMatchObject({ ok: true, bytes: SIZE, bytesSkipped: 0 });
    expect(received).toMatchObject({ ok: true, bytes: SIZE, bytesSkipped: 0 });
    const [warning] = eventsOf(sender, 'resume-refused');
    expect(warning, sender.stderr()).toMatchObject({ level: 40, path: 'big.bin', size: SIZE });
    expect(String(warning?.reason)).toMatch(/does not match/);
    expect(String(warning?.msg)).toMatch(/whole/);
    expect(eventsOf(again, 'resume-refused')).toEqual([expect.objectContaining({ level: 40, path: 'big.bin', reason: expect.stringMatching(/does not match/) })]);
    expect(eventsOf(sender, 'resumed')).toEqual([]);
    expect(ftxFilesIn(inbox)).toEqual([]);
  });

  it('the source grew between attempts (size changed): not resumed, the partial replaced, the new file stored whole', async () => {
    const source = await bigFile(await tempFolder(), 'big.bin', SIZE);
    const inbox = await tempFolder();
    await cutSender(await recvCli([inbox]), inbox, [source], SIZE);
    await writeFile(source, randomBytes(4096), { flag: 'a' });
    const again = await recvCli([inbox]);
    const sender = sendCli([source], again.port);
    const { sent, received } = await completes(sender, again);
    expectIdentical(join(inbox, 'big.bin'), source);
    expect(sent).toMatchObject({ ok: true, bytes: SIZE + 4096, bytesSkipped: 0 });
    expect(received).toMatchObject({ ok: true, bytes: SIZE + 4096, bytesSkipped: 0 });
    expect(eventsOf(sender, 'resumed')).toEqual([]);
    expect(eventsOf(again, 'resumed')).toEqual([]);
    expect(eventsOf(again, 'resume-refused')).toEqual([expect.objectContaining({ path: 'big.bin', reason: expect.stringMatching(/changed/) })]);
    expect(ftxFilesIn(inbox)).toEqual([]);
  });

  it('the source changed in place, same size, its mtime put back: the prefixes differ, caught, sent whole, identical to the new source', async () => {
    const source = await bigFile(await tempFolder(), 'big.bin', SIZE);
    const inbox = await tempFolder();
    const cut = await cutSender(await recvCli([inbox]), inbox, [source], SIZE);
    await flipByte(source, Math.floor(cut.record.durable / 3));
    await utimes(source, SOURCE_MTIME_S, SOURCE_MTIME_S);
    const after = await stat(source);
    expect(after.size).toBe(SIZE);
    expect(after.mtimeMs).toBe(cut.record.mtime);
    const again = await recvCli([inbox]);
    const sender = sendCli([source], again.port);
    const { sent, received } = await completes(sender, again);
    expectIdentical(join(inbox, 'big.bin'), source);
    expect(sent).toMatchObject({ ok: true, bytes: SIZE, bytesSkipped: 0 });
    expect(received).toMatchObject({ ok: true, bytes: SIZE, bytesSkipped: 0 });
    expect(eventsOf(sender, 'resume-refused')).toEqual([expect.objectContaining({ level: 40, reason: expect.stringMatching(/does not match/) })]);
    expect(eventsOf(again, 'resume-refused')).toHaveLength(1);
    expect(ftxFilesIn(inbox)).toEqual([]);
  });
});

describe('a partial belongs to its sender identity', { timeout: 90_000 }, () => {
  it('one-shot receiver with two identities: a cut of alice, then bob sends the same file: bob does not resume, alice keeps her partial and then resumes it', async () => {
    const keys = await tempFolder();
    const alice = await keygen('alice');
    const bob = await keygen('bob');
    const aliceKey = await keyFile(keys, 'alice.key', alice);
    const bobKey = await keyFile(keys, 'bob.key', bob);
    const receiverKeys = await keyFile(keys, 'senders.keys', `# who may send\n${alice}\n${bob}`);
    const source = await bigFile(await tempFolder(), 'big.bin', SIZE);
    const inbox = await tempFolder();

    const cut = await cutSender(await recvCli([inbox, '--key-file', receiverKeys]), inbox, [source], SIZE, { args: ['--key-file', aliceKey] });
    expect(cut.record.identity).toBe('alice');
    const alicesRecord = await readFile(cut.partial.record as string, 'utf8');

    const forBob = await recvCli([inbox, '--key-file', receiverKeys]);
    const bobSends = sendCli([source], forBob.port, ['--key-file', bobKey]);
    const bobs = await completes(bobSends, forBob);
    expect(bobs.sent).toMatchObject({ ok: true, identity: 'bob', bytes: SIZE, bytesSkipped: 0 });
    expect(bobs.received).toMatchObject({ ok: true, identity: 'bob', bytes: SIZE, bytesSkipped: 0 });
    expect(eventsOf(bobSends, 'resumed')).toEqual([]);
    expect(eventsOf(forBob, 'resumed')).toEqual([]);
    expectIdentical(join(inbox, 'big.bin'), source);
    // Alice's partial is untouched.
    expect(partialsIn(inbox)).toEqual([expect.objectContaining({ data: cut.partial.data, record: cut.partial.record })]);
    expect(await readFile(cut.partial.record as string, 'utf8')).toBe(alicesRecord);

    // Bob's copy is moved away; alice sends again and resumes her own partial.
    await rm(join(inbox, 'big.bin'));
    const forAlice = await recvCli([inbox, '--key-file', receiverKeys]);
    const aliceSends = sendCli([source], forAlice.port, ['--key-file', aliceKey]);
    const alices = await completes(aliceSends, forAlice);
    expect(alices.sent).toMatchObject({ ok: true, identity: 'alice', bytesSkipped: cut.record.durable });
    expect(alices.received).toMatchObject({ ok: true, identity: 'alice', bytes: SIZE - cut.record.durable });
    expectIdentical(join(inbox, 'big.bin'), source);
    expect(ftxFilesIn(inbox)).toEqual([]);
  });
});

describe('stale partials expire', { timeout: 90_000 }, () => {
  it('a partial and record older than --partial-max-age are removed at receiver start (reported) and not resumed; default 7 d and an explicit 2h', async () => {
    const source = await bigFile(await tempFolder(), 'big.bin', SIZE);
    for (const { ageMs, args } of [
      { ageMs: 8 * DAY, args: [] as string[] },
      { ageMs: 3 * 60 * 60 * 1000, args: ['--partial-max-age', '2h'] },
    ]) {
      const inbox = await tempFolder();
      const cut = await cutSender(await recvCli([inbox]), inbox, [source], SIZE);
      const old = (Date.now() - ageMs) / 1000;
      await utimes(cut.partial.data, old, old);
      await utimes(cut.partial.record as string, old, old);
      const again = await recvCli([inbox, ...args]);
      expect(eventsOf(again, 'leftover-removed').map((record) => record.path).sort()).toEqual([cut.partial.data, cut.partial.record].sort());
      expect(ftxFilesIn(inbox)).toEqual([]);
      const sender = sendCli([source], again.port);
      const { sent, received } = await completes(sender, again);
      expectIdentical(join(inbox, 'big.bin'), source);
      expect(sent).toMatchObject({ ok: true, bytesSkipped: 0 });
      expect(received).toMatchObject({ ok: true, bytes: SIZE, bytesSkipped: 0 });
      expect(eventsOf(sender, 'resumed')).toEqual([]);
    }
  });

  it('a young partial (3 hours old, default 7 d) is kept, reported at start, and resumed', async () => {
    const source = await bigFile(await tempFolder(), 'big.bin', SIZE);
    const inbox = await tempFolder();
    const cut = await cutSender(await recvCli([inbox]), inbox, [source], SIZE);
    const old = (Date.now() - 3 * 60 * 60 * 1000) / 1000;
    await utimes(cut.partial.data, old, old);
    await utimes(cut.partial.record as string, old, old);
    const again = await recvCli([inbox]);
    expect(eventsOf(again, 'leftover-removed')).toEqual([]);
    expect(eventsOf(again, 'leftover')).toEqual([expect.objectContaining({ path: cut.partial.data, bytes: cut.partial.bytes })]);
    expect(String(eventsOf(again, 'leftover')[0]?.msg)).toMatch(/7 d/);
    const { sent } = await completes(sendCli([source], again.port), again);
    expect(sent).toMatchObject({ ok: true, bytesSkipped: cut.record.durable });
    expectIdentical(join(inbox, 'big.bin'), source);
  });
});

describe('more ways to come back', { timeout: 90_000 }, () => {
  it('--partial-max-age 0 keeps partials whatever their age: a 30-day-old one is kept at start and resumed', async () => {
    const source = await bigFile(await tempFolder(), 'big.bin', SIZE);
    const inbox = await tempFolder();
    const cut = await cutSender(await recvCli([inbox]), inbox, [source], SIZE);
    const old = (Date.now() - 30 * DAY) / 1000;
    await utimes(cut.partial.data, old, old);
    await utimes(cut.partial.record as string, old, old);
    const again = await recvCli([inbox, '--partial-max-age', '0']);
    expect(eventsOf(again, 'leftover-removed')).toEqual([]);
    const { sent } = await completes(sendCli([source], again.port), again);
    expect(sent).toMatchObject({ ok: true, bytesSkipped: cut.record.durable });
    expectIdentical(join(inbox, 'big.bin'), source);
  });

  it('the second attempt with another digest (--hash sha256 after blake3): the prefix is proved in sha256, resumed, identical', async () => {
    const source = await bigFile(await tempFolder(), 'big.bin', SIZE);
    const inbox = await tempFolder();
    const cut = await cutSender(await recvCli([inbox]), inbox, [source], SIZE);
    expect(cut.record.hash).toBe('blake3');
    const again = await recvCli([inbox]);
    const { sent, received } = await completes(sendCli([source], again.port, ['--hash', 'sha256']), again);
    expect(sent).toMatchObject({ ok: true, hash: 'sha256', bytesSkipped: cut.record.durable });
    expect(received).toMatchObject({ ok: true, hash: 'sha256', bytes: SIZE - cut.record.durable });
    expect(sent.digest).toBe(createHash('sha256').update(await readFile(source)).digest('hex'));
    expectIdentical(join(inbox, 'big.bin'), source);
  });

  it('serve mode with keys: the partial lives in the identity\'s folder, survives a restart of the server (reported by its recursive sweep), and resumes; an expired one in another identity\'s folder is swept at start', async () => {
    const keys = await tempFolder();
    const alice = await keygen('alice');
    const aliceKey = await keyFile(keys, 'alice.key', alice);
    const receiverKeys = await keyFile(keys, 'senders.keys', `${alice}\n${await keygen('bob')}`);
    const source = await bigFile(await tempFolder(), 'big.bin', SIZE);
    const inbox = await tempFolder();
    const first = await recvCli([inbox, '--serve', '--key-file', receiverKeys]);
    const cut = await cutSender(first, join(inbox, 'alice'), [source], SIZE, { args: ['--key-file', aliceKey], oneShot: false });
    expect(cut.record.identity).toBe('alice');
    first.child.kill('SIGTERM');
    expect(await exitOf(first, 'the first server')).toBe(0);
    // A stale partial of bob's, 8 days old.
    await mkdir(join(inbox, 'bob'));
    const stale = join(inbox, 'bob', '.old.bin.0123456789ab.ftx-part');
    await writeFile(stale, Buffer.alloc(1024));
    await writeFile(stale.replace(/ftx-part$/, 'ftx-resume'), '{}');
    const old = (Date.now() - 8 * DAY) / 1000;
    await utimes(stale, old, old);
    await utimes(stale.replace(/ftx-part$/, 'ftx-resume'), old, old);

    const second = await recvCli([inbox, '--serve', '--key-file', receiverKeys]);
    expect(eventsOf(second, 'leftover').map((record) => record.path)).toEqual([cut.partial.data]);
    expect(eventsOf(second, 'leftover-removed').map((record) => record.path).sort()).toEqual([stale, stale.replace(/ftx-part$/, 'ftx-resume')].sort());
    const sender = sendCli([source], second.port, ['--key-file', aliceKey]);
    expect(await exitOf(sender, 'the second sender'), sender.stderr()).toBe(0);
    expect(jsonOf(sender)).toMatchObject({ ok: true, identity: 'alice', bytesSkipped: cut.record.durable });
    expectIdentical(join(inbox, 'alice', 'big.bin'), source);
    expect(ftxFilesIn(join(inbox, 'alice'))).toEqual([]);
  });
});

describe('a folder session re-run sends only what is missing', { timeout: 90_000 }, () => {
  it('many small files then two large, cut midway through the first large one: re-run skips the stored files (unchanged), resumes the large one, diff -r identical, exit 0', async () => {
    const base = await tempFolder();
    const tree = join(base, 'tree');
    await mkdir(join(tree, 'a', 'b'), { recursive: true });
    let smallBytes = 0;
    const smallPaths: string[] = [];
    for (let i = 0; i < 40; i++) {
      const relative = join(i % 2 === 0 ? 'a' : join('a', 'b'), `small-${String(i).padStart(2, '0')}.txt`);
      const size = 1 + ((i * 7919) % (200 * 1024));
      await writeFile(join(tree, relative), randomBytes(size));
      smallBytes += size;
      smallPaths.push(relative);
    }
    await bigFile(tree, 'zz-large.bin', SIZE);
    // Announced (and staged) before the cut, never reached: nothing of it may be left.
    await bigFile(tree, 'zz-second.bin', 2 * MiB);
    const inbox = await tempFolder();
    const landed = join(inbox, 'tree');
    const allSmallStored = async () => {
      for (const relative of smallPaths) {
        const stored = await stat(join(landed, relative)).catch(() => undefined);
        if (!stored) return false;
      }
      return true;
    };
    const cut = await cutSender(await recvCli([inbox]), landed, [tree], SIZE, { ready: allSmallStored });
    expect(await allSmallStored()).toBe(true);
    expect(cut.kept).toMatchObject({ path: 'tree/zz-large.bin' });

    const again = await recvCli([inbox]);
    const sender = sendCli([tree], again.port);
    const { sent, received } = await completes(sender, again);
    expectSameTree(landed, tree);
    expect(ftxFilesIn(landed)).toEqual([]);
    const offset = cut.record.durable;
    expect(sent).toMatchObject({ ok: true, files: 2, unchanged: 40, failed: 0, bytesSkipped: smallBytes + offset });
    expect(received).toMatchObject({ ok: true, files: 2, unchanged: 40, failed: 0, bytesSkipped: smallBytes + offset, bytes: SIZE - offset + 2 * MiB });
    // One line per unchanged file would flood a nightly log: they are debug lines, and the summary counts them.
    expect(eventsOf(sender, 'entry-unchanged')).toHaveLength(0);
    expect(eventsOf(sender, 'resumed')).toEqual([expect.objectContaining({ path: 'tree/zz-large.bin', offset })]);
  });
});

describe('library: send() stopped by its AbortSignal (Ctrl-C), then sent again', { timeout: 90_000 }, () => {
  it('256 MiB aborted at 40%: the receiver keeps a partial (onPartialKept); send() again resumes (onResume on both ends), identical, the receiver takes only the rest', async () => {
    const SIZE_API = 256 * MiB;
    const source = await bigFile(await tempFolder(), 'huge.bin', SIZE_API);
    const inbox = await tempFolder();
    const kept: Array<{ path: string; bytes: number; size: number }> = [];
    const first = await receive({ target: inbox, port: 0, host: HOST, timeoutMs: 10_000, onPartialKept: (partial) => kept.push(partial) });
    const controller = new AbortController();
    const sending = send({
      path: source,
      to: { host: HOST, port: first.port },
      timeoutMs: 10_000,
      signal: controller.signal,
      onProgress: ({ bytes, total }) => {
        if (bytes >= 0.4 * total) controller.abort();
      },
    });
    await expect(within(sending, 60_000, 'the aborted send to settle')).rejects.toThrow();
    await expect(within(first.done, 30_000, 'the first receiver to settle')).rejects.toThrow();
    expect(kept).toEqual([expect.objectContaining({ path: 'huge.bin', size: SIZE_API })]);
    const offset = kept[0]?.bytes as number;
    expect(offset).toBeGreaterThan(0);
    expect(offset).toBeLessThan(SIZE_API);
    const [partial] = partialsIn(inbox);
    expect(readRecordJson(partial?.record)?.durable).toBe(offset);

    const resumedHere: ResumeEvent[] = [];
    const resumedThere: ResumeEvent[] = [];
    const second = await receive({ target: inbox, port: 0, host: HOST, timeoutMs: 10_000, onResume: (event) => resumedThere.push(event) });
    const sent = await within(send({ path: source, to: { host: HOST, port: second.port }, timeoutMs: 10_000, onResume: (event) => resumedHere.push(event) }), 60_000, 'the second send');
    const received = await within(second.done, 30_000, 'the second receiver');
    expectIdentical(join(inbox, 'huge.bin'), source);
    expect(sent).toMatchObject({ verified: true, bytes: SIZE_API, session: { bytesSkipped: offset, unchanged: 0 } });
    expect(received).toMatchObject({ bytes: SIZE_API - offset, session: { bytesSkipped: offset } });
    expect(resumedHere).toEqual([expect.objectContaining({ path: 'huge.bin', offset, resumed: true })]);
    expect(resumedThere).toEqual([expect.objectContaining({ path: 'huge.bin', offset, resumed: true })]);
    expect(ftxFilesIn(inbox)).toEqual([]);
  }, 120_000);

  it('receive().close() mid-file (the receiver stopped, as Ctrl-C does): the partial is kept, and the next receiver resumes it', async () => {
    const source = await bigFile(await tempFolder(), 'big.bin', SIZE);
    const inbox = await tempFolder();
    const kept: Array<{ bytes: number }> = [];
    let closing: Promise<void> | undefined;
    const first = await receive({
      target: inbox,
      port: 0,
      host: HOST,
      timeoutMs: 10_000,
      onPartialKept: (partial) => kept.push(partial),
      onProgress: ({ bytes, total }) => {
        if (bytes >= 0.4 * total) closing ??= first.close();
      },
    });
    const sending = send({ path: source, to: { host: HOST, port: first.port }, timeoutMs: 10_000 });
    await expect(within(sending, 30_000, 'the cut send')).rejects.toThrow();
    await expect(within(first.done, 30_000, 'the closed receiver')).rejects.toThrow();
    await within(closing ?? Promise.resolve(), 30_000, 'close() to resolve');
    const [partial] = partialsIn(inbox);
    const durable = readRecordJson(partial?.record)?.durable ?? 0;
    expect(durable, `partials left: ${ftxFilesIn(inbox).join(', ')}`).toBeGreaterThan(0);
    expect(kept).toEqual([expect.objectContaining({ bytes: durable })]);
    const second = await receive({ target: inbox, port: 0, host: HOST, timeoutMs: 10_000 });
    const sent = await send({ path: source, to: { host: HOST, port: second.port }, timeoutMs: 10_000 });
    await second.done;
    expect(sent.session).toMatchObject({ bytesSkipped: durable });
    expectIdentical(join(inbox, 'big.bin'), source);
  });

  it('resume: false sends it whole even with a partial there', async () => {
    const source = await bigFile(await tempFolder(), 'big.bin', SIZE);
    const inbox = await tempFolder();
    const first = await receive({ target: inbox, port: 0, host: HOST, timeoutMs: 10_000 });
    const controller = new AbortController();
    const sending = send({ path: source, to: { host: HOST, port: first.port }, timeoutMs: 10_000, signal: controller.signal, onProgress: ({ bytes, total }) => bytes >= 0.5 * total && controller.abort() });
    await expect(within(sending, 30_000, 'the aborted send')).rejects.toThrow();
    await expect(within(first.done, 30_000, 'the first receiver')).rejects.toThrow();
    expect(partialsIn(inbox)).toHaveLength(1);
    const second = await receive({ target: inbox, port: 0, host: HOST, timeoutMs: 10_000 });
    const events: ResumeEvent[] = [];
    const sent = await send({ path: source, to: { host: HOST, port: second.port }, timeoutMs: 10_000, resume: false, onResume: (event) => events.push(event) });
    const received = await second.done;
    expectIdentical(join(inbox, 'big.bin'), source);
    expect(sent.session).toMatchObject({ bytesSkipped: 0 });
    expect(received).toMatchObject({ bytes: SIZE, session: { bytesSkipped: 0 } });
    expect(events).toEqual([]);
  });
});

describe('a kept partial needs free space only for the bytes still missing', { timeout: 90_000 }, () => {
  /** Fills `folder`'s file system until `free` bytes are left. */
  async function leaveFree(folder: string, free: number): Promise<void> {
    const stats = await statfs(folder);
    const filler = stats.bavail * stats.bsize - free;
    expect(filler, 'the disk has room for the filler').toBeGreaterThan(0);
    await writeFile(join(folder, 'filler'), Buffer.alloc(filler));
    const after = await statfs(folder);
    expect(after.bavail * after.bsize).toBeLessThanOrEqual(free + 64 * 1024);
  }

  /** Cuts a 40 MiB transfer into `target` at 60%, then leaves free only the missing bytes and 4 MiB: less than the file. */
  async function cutOnSmallDisk(recvArgs: (disk: string) => string[], options: { oneShot?: boolean } = {}) {
    const size = 40 * MiB;
    const disk = await mountTmpfs('size=64m');
    const source = await bigFile(await tempFolder(), 'big.bin', size);
    const recv = await recvCli(recvArgs(disk));
    const cut = await cutSender(recv, disk, [source], size, { at: 0.6, oneShot: options.oneShot });
    await leaveFree(disk, size - cut.record.durable + 4 * MiB);
    return { size, disk, source, recv, cut };
  }

  it.skipIf(!canMount())('one-shot into a FILE target on a disk with less free space than the file, more than what is missing: resumes and completes', async () => {
    const { size, disk, source, cut } = await cutOnSmallDisk((disk) => [join(disk, 'big.iso')]);
    const again = await recvCli([join(disk, 'big.iso')]);
    const { sent } = await completes(sendCli([source], again.port), again);
    expect(sent).toMatchObject({ ok: true, bytes: size, bytesSkipped: cut.record.durable });
    expectIdentical(join(disk, 'big.iso'), source);
  });

  it.skipIf(!canMount())('one-shot into a FOLDER target, same disk: resumes and completes (the session is not refused for the bytes the partial holds)', async () => {
    const { size, disk, source, cut } = await cutOnSmallDisk((disk) => [disk]);
    const again = await recvCli([disk]);
    const sender = sendCli([source], again.port);
    const { sent } = await completes(sender, again);
    expect(sent).toMatchObject({ ok: true, bytes: size, bytesSkipped: cut.record.durable });
    expectIdentical(join(disk, 'big.bin'), source);
  });

  it.skipIf(!canMount())('serve mode, same disk: the cut transfer resumes and completes (the reservation counts only the missing bytes)', async () => {
    const { size, disk, source, recv, cut } = await cutOnSmallDisk((disk) => [disk, '--serve', '--insecure'], { oneShot: false });
    const sender = sendCli([source], recv.port);
    expect(await exitOf(sender, 'the second sender'), sender.stderr()).toBe(0);
    expect(jsonOf(sender)).toMatchObject({ ok: true, bytes: size, bytesSkipped: cut.record.durable });
    expectIdentical(join(disk, 'big.bin'), source);
  });
});

describe('two transfers of the same name at once never share a partial', { timeout: 90_000 }, () => {
  it('two one-shot receivers in the same folder, two different files named big.bin: the file stored under the name is the one its receiver confirmed', async () => {
    const first = await bigFile(await tempFolder(), 'big.bin', SIZE);
    const second = await bigFile(await tempFolder(), 'big.bin', SIZE);
    await utimes(second, SOURCE_MTIME_S + 60, SOURCE_MTIME_S + 60);
    const inbox = await tempFolder();
    const recvA = await recvCli([inbox]);
    const recvB = await recvCli([inbox]);
    const senderA = sendCli([first], (await slowProxy(recvA.port, RATE)).port);
    await waitFor(() => (partialBytes(inbox) >= 8 * MiB ? true : undefined), 'the first transfer to be under way', 20_000);
    const senderB = sendCli([second], (await slowProxy(recvB.port, RATE)).port);
    await recvB.waitForLog((record) => record.event === 'receiving', 15_000);
    expect(await exitOf(recvA, 'the first receiver'), recvA.stderr()).toBe(0);
    // The second transfer is stopped where it is: nothing else writes into the folder from now on.
    senderB.child.kill('SIGKILL');
    await exitOf(senderB, 'the second sender');
    await exitOf(recvB, 'the second receiver');
    expect(await exitOf(senderA, 'the first sender')).toBe(0);
    const confirmed = jsonOf(recvA);
    expect(confirmed).toMatchObject({ ok: true, path: join(inbox, 'big.bin'), bytes: SIZE });
    expectIdentical(join(inbox, 'big.bin'), first);
    // And the second receiver's partial, if it says it kept one, is there to resume.
    const keptB = eventsOf(recvB, 'partial-kept');
    if (keptB.length > 0) expect(partialsIn(inbox), 'the partial the second receiver says it kept').toHaveLength(1);
  });

  it('serve mode with --on-conflict overwrite, the same file from two senders at once: both stored, the result identical, nothing left behind', async () => {
    const source = await bigFile(await tempFolder(), 'big.bin', SIZE);
    const inbox = await tempFolder();
    const recv = await recvCli([inbox, '--serve', '--insecure', '--on-conflict', 'overwrite']);
    const senderA = sendCli([source], (await slowProxy(recv.port, RATE)).port);
    await waitFor(() => (partialBytes(inbox) >= 8 * MiB ? true : undefined), 'the first transfer to be under way', 20_000);
    const senderB = sendCli([source], (await slowProxy(recv.port, RATE)).port);
    expect(await exitOf(senderA, 'the first sender'), senderA.stderr()).toBe(0);
    expect(await exitOf(senderB, 'the second sender'), senderB.stderr()).toBe(0);
    expectIdentical(join(inbox, 'big.bin'), source);
    expect(ftxFilesIn(inbox)).toEqual([]);
  });
});

describe('a re-run folder session on a nearly full disk', { timeout: 90_000 }, () => {
  it.skipIf(!canMount())('every file stored already, less free space than the folder holds: all skipped as unchanged, exit 0 (not refused for space)', async () => {
    const disk = await mountTmpfs('size=64m');
    const tree = join(await tempFolder(), 'tree');
    await mkdir(tree);
    await bigFile(tree, 'one.bin', 12 * MiB);
    await bigFile(tree, 'two.bin', 12 * MiB);
    await writeFile(join(tree, 'small.txt'), 'hello');
    const first = await recvCli([disk]);
    await completes(sendCli([tree], first.port), first);
    // 24 MiB stored; leave 8 MiB free.
    const stats = await statfs(disk);
    await writeFile(join(disk, 'filler'), Buffer.alloc(stats.bavail * stats.bsize - 8 * MiB));
    const again = await recvCli([disk]);
    const sender = sendCli([tree], again.port);
    const { sent } = await completes(sender, again);
    expect(sent).toMatchObject({ ok: true, unchanged: 3, files: 0, bytesSkipped: 24 * MiB + 5 });
    expectSameTree(join(disk, 'tree'), tree);
  });
});
