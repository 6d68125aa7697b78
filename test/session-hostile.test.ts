/**
 * A hostile sender speaking protocol 2 (sessions) by hand, against a serving receiver.
 * Entry paths are untrusted input: each bad one is refused in its Decision (bad-name) and
 * the session goes on; a planted symbolic link is never written through; names a
 * case-folding file system would merge are refused; broken framing (data nobody asked
 * for, too much data, ids out of order, a wrong End, an unknown entry type, absurd
 * totals) ends the session with an Error frame or a Refuse. A digest mismatch fails that
 * entry alone.
 *
 * After every case: nothing outside the served folder (PARENT/inbox holds only inbox),
 * no temporary file anywhere under it, and a good sender right after gets its folder in.
 * Every wait is bounded; no timing is asserted.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { Server } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ServeReceiver } from '../src/api/serve.js';
import { FrameType } from '../src/framing.js';
import { MAX_PATH_DEPTH } from '../src/fs/entry-paths.js';
import { SMALL_FILE_BYTES } from '../src/fs/small-file.js';
import { send, serve, type ServeHandle, type ServeOptions } from '../src/index.js';
import { jsonFrame } from '../src/protocol/messages.js';
import { MAX_ENTRIES_AHEAD } from '../src/session/receive-session.js';
import { listen } from '../src/transport/tcp.js';
import { exfatUnavailable, mountExfat, type ExfatMount } from './helpers/exfat.js';
import { listFolder, tempFolder } from './helpers/files.js';
import { HOST, landing, type Landing } from './helpers/harness.js';
import {
  acceptedSession,
  brief,
  dataFrame,
  dirEntry,
  endFrame,
  expectSameTree,
  fileBody,
  fileEntry,
  sessionPeer,
  temporaryFilesUnder,
  trailerFrame,
  treeOf,
  type Reply,
  type SessionPeer,
} from './helpers/session-peer.js';

const MiB = 1024 * 1024;

/** How a served connection ended: a session with its counts, or a failure with its code. */
type ServeEvent =
  | { kind: 'done'; failed: number; files: number; folders: number }
  | { kind: 'failed'; code: string; reason: string | undefined }
  /** Dropped before its Open was understood: not a transfer. */
  | { kind: 'dropped'; code: string };

interface Served extends Landing {
  port: number;
  events: ServeEvent[];
  /** Waits (10 s at most) until `count` connections have ended, and returns the last one's outcome. */
  settled(count?: number): Promise<ServeEvent>;
}

const stoppers: Array<() => Promise<unknown>> = [];

afterEach(async () => {
  await Promise.all(stoppers.splice(0).map((stop) => stop()));
});

function recorder(): { events: ServeEvent[]; settled: (count?: number) => Promise<ServeEvent>; callbacks: Pick<ServeOptions, 'onTransferDone' | 'onTransferFailed' | 'onConnection'> } {
  const events: ServeEvent[] = [];
  return {
    events,
    settled: async (count = 1) => {
      for (let waited = 0; events.length < count && waited < 10_000; waited += 10) await sleep(10);
      expect(events.length, 'connections the receiver has finished with').toBeGreaterThanOrEqual(count);
      return events[count - 1] as ServeEvent;
    },
    callbacks: {
      onTransferDone: (done) => events.push({ kind: 'done', failed: done.session?.failed ?? 0, files: done.session?.files ?? 1, folders: done.session?.folders ?? 0 }),
      onTransferFailed: ({ error }) => events.push({ kind: 'failed', code: error.code, reason: (error as { reason?: string }).reason }),
      onConnection: (event) => {
        if (event.kind === 'dropped') events.push({ kind: 'dropped', code: event.error.code });
      },
    },
  };
}

/** serve() into PARENT/inbox on a free loopback port, closed after the test. */
async function serving(options: Partial<ServeOptions> = {}, where?: Landing): Promise<Served> {
  const landed = where ?? (await landing());
  const record = recorder();
  const handle: ServeHandle = await serve({ folder: landed.inbox, port: 0, host: HOST, timeoutMs: 5_000, ...record.callbacks, ...options });
  stoppers.push(() => handle.close({ graceMs: 0 }));
  return { ...landed, port: handle.port, events: record.events, settled: record.settled };
}

/**
 * The receiver behind serve(), told the folder folds case (as exFAT or APFS would) while
 * the disk under it does not: what the receiver decides from that knowledge alone.
 */
async function servingAsIfFoldingCase(options: Partial<ServeOptions> = {}): Promise<Served> {
  const landed = await landing();
  const record = recorder();
  const server: Server = await listen(0, HOST);
  const receiver = new ServeReceiver(server, { folder: landed.inbox, timeoutMs: 5_000, ...record.callbacks, ...options }, true);
  stoppers.push(() => receiver.shutdown(0));
  return { ...landed, port: (server.address() as { port: number }).port, events: record.events, settled: record.settled };
}

let goodSends = 0;

/** The checks after every hostile case: nothing outside, no temporary file, and a good sender still gets its folder in. */
async function expectServedFolderClean(served: Served, besideInbox: string[] = []): Promise<void> {
  expect(await listFolder(served.parent), 'what is beside the served folder').toEqual(['inbox', ...besideInbox].sort());
  expect(await temporaryFilesUnder(served.parent), 'temporary files').toEqual([]);
  const base = await tempFolder();
  const name = `good-${++goodSends}`;
  const root = join(base, name);
  mkdirSync(join(root, 'sub'), { recursive: true });
  writeFileSync(join(root, 'a.txt'), 'a good file\n');
  writeFileSync(join(root, 'sub', 'large.bin'), randomBytes(SMALL_FILE_BYTES + 1));
  const sent = await send({ paths: [root], to: { host: HOST, port: served.port }, timeoutMs: 5_000 });
  expect(sent.session).toMatchObject({ files: 2, folders: 2, failed: 0 });
  await expectSameTree(join(served.inbox, name), root);
  expect(await temporaryFilesUnder(served.parent), 'temporary files after the good sender').toEqual([]);
}

/** The receiver gave up on the session: an Error frame with this code, then it closes. */
async function expectSessionError(peer: SessionPeer, message: RegExp, code = 'FTX_ERR_PROTOCOL'): Promise<void> {
  const reply = await peer.reply();
  expect(reply, 'the receiver ends the session').toMatchObject({ type: 'Error', body: { code, message: expect.stringMatching(message) } });
  peer.destroy();
}

async function expectDecision(peer: SessionPeer, id: number, expected: Record<string, unknown>): Promise<Reply> {
  const reply = await peer.reply();
  expect(reply, `the decision on entry ${id}`).toMatchObject({ type: 'Decision', body: { id, ...expected } });
  return reply;
}

/** Stores a small file as entry `id` and expects it stored at `storedAs`. */
async function storeFile(peer: SessionPeer, id: number, path: string, data: Buffer, storedAs = path): Promise<void> {
  await peer.write(fileEntry(id, path, data.length));
  await expectDecision(peer, id, { action: 'store' });
  await peer.write(fileBody(id, data));
  expect(await peer.reply(), `the result of entry ${id}`).toMatchObject({ type: 'Result', body: { id, ok: true, path: storedAs } });
}

async function endSession(peer: SessionPeer, entries: number, bytes: number, expected: Record<string, unknown>): Promise<void> {
  await peer.write(endFrame(entries, bytes));
  expect(await peer.reply(), 'the summary').toMatchObject({ type: 'Summary', body: { entries, ...expected } });
}

// ---------------------------------------------------------------------------------------------

/** A path of 17 parts of 42 × U+0958: 2,158 bytes as sent, 4,300 once NFC makes each U+0958 two code points. */
const GROWS_UNDER_NFC = Array.from({ length: 17 }, () => '\u0958'.repeat(42)).join('/');

const BAD_PATHS: Array<{ label: string; path: string; problem: RegExp }> = [
  { label: '../x', path: '../x', problem: /a "\.\." part, which would climb out/ },
  { label: '/etc/x', path: '/etc/x', problem: /absolute/ },
  { label: 'a//b', path: 'a//b', problem: /an empty part \("\/\/"\)/ },
  { label: 'a/./b', path: 'a/./b', problem: /a "\." part/ },
  { label: 'a/../../b', path: 'a/../../b', problem: /a "\.\." part/ },
  { label: 'a backslash (a\\b)', path: 'a\\b', problem: /contains "\\", a path separator on Windows/ },
  { label: 'a NUL (a\\0b)', path: 'a\u0000b', problem: /control character/ },
  { label: 'a Windows drive (C:x)', path: 'C:x', problem: /Windows drive/ },
  { label: 'a trailing slash (x/)', path: 'x/', problem: /ends with "\/"/ },
  { label: `a path 2,048 levels deep (the limit is ${MAX_PATH_DEPTH})`, path: `${'a/'.repeat(2047)}a`, problem: /more than 64 levels deep/ },
  { label: 'a path over 4,096 bytes once made NFC', path: GROWS_UNDER_NFC, problem: /longer than 4096 bytes in canonical \(NFC\) form/ },
  { label: 'a temporary file name in a folder (d/.x.0123abcd.ftx-part)', path: 'd/.x.0123abcd.ftx-part', problem: /ftx's temporary files/ },
  { label: 'a device name (d/CON)', path: 'd/CON', problem: /reserved device name/ },
  { label: 'a direction override (a\\u202Efdp.exe)', path: 'a\u202Efdp.exe', problem: /direction-changing/ },
  { label: 'a dot-file at the top (.bashrc)', path: '.bashrc', problem: /names that start with a dot/ },
];

describe('bad entry paths: refused in their Decision (bad-name), the rest of the session stored', () => {
  for (const bad of BAD_PATHS) {
    it(`${bad.label}: refused, nothing written for it anywhere, the next entry stored`, async () => {
      const etcBefore = existsSync('/etc/x');
      const served = await serving();
      const peer = await acceptedSession(served.port);
      await peer.write(fileEntry(1, bad.path, 3));
      await expectDecision(peer, 1, { action: 'refuse', reason: 'bad-name', message: expect.stringMatching(bad.problem) });
      await storeFile(peer, 2, 'ok.txt', Buffer.from('ok'));
      await endSession(peer, 2, 2, { stored: 1, failed: 1, skipped: 0, bytes: 2 });
      expect(await served.settled()).toEqual({ kind: 'done', failed: 1, files: 1, folders: 0 });
      expect(brief(await treeOf(served.inbox))).toEqual(['file ok.txt 2']);
      expect(existsSync('/etc/x')).toBe(etcBefore);
      await expectServedFolderClean(served);
    });
  }

  it('a non-NFC name is stored under its NFC form; the same name in NFC after it is refused as existing, and the first is kept', async () => {
    const served = await serving();
    const peer = await acceptedSession(served.port);
    await storeFile(peer, 1, 'cafe\u0301.txt', Buffer.from('first'), 'caf\u00e9.txt');
    await peer.write(fileEntry(2, 'caf\u00e9.txt', 6));
    await expectDecision(peer, 2, { action: 'refuse', reason: 'exists' });
    // Inside a folder the session made, names are not looked up: the no-clobber commit catches it.
    await peer.write(dirEntry(3, 'n'));
    await expectDecision(peer, 3, { action: 'store' });
    await storeFile(peer, 4, 'n/cafe\u0301.txt', Buffer.from('first'), 'n/caf\u00e9.txt');
    await peer.write(fileEntry(5, 'n/caf\u00e9.txt', 6));
    await expectDecision(peer, 5, { action: 'store' });
    await peer.write(fileBody(5, Buffer.from('second')));
    expect(await peer.reply()).toMatchObject({ type: 'Result', body: { id: 5, ok: false, code: 'FTX_ERR_REFUSED', reason: 'exists' } });
    await endSession(peer, 5, 16, { stored: 3, failed: 2 });
    await served.settled();
    expect(brief(await treeOf(served.inbox))).toEqual(['file caf\u00e9.txt 5', 'dir n', 'file n/caf\u00e9.txt 5']);
    expect(readFileSync(join(served.inbox, 'n', 'caf\u00e9.txt'), 'utf8')).toBe('first');
    await expectServedFolderClean(served);
  });

  it('the same path twice in one session, the first still in flight: the second is refused, the first stored intact', async () => {
    const served = await serving();
    const peer = await acceptedSession(served.port);
    const first = randomBytes(SMALL_FILE_BYTES + 5);
    await peer.write(Buffer.concat([fileEntry(1, 'twice.bin', first.length), fileEntry(2, 'twice.bin', 3)]));
    await expectDecision(peer, 1, { action: 'store' });
    await expectDecision(peer, 2, { action: 'refuse', reason: 'exists' });
    await peer.write(fileBody(1, first));
    expect(await peer.reply()).toMatchObject({ type: 'Result', body: { id: 1, ok: true } });
    await endSession(peer, 2, first.length, { stored: 1, failed: 1 });
    await served.settled();
    expect((await readFile(join(served.inbox, 'twice.bin'))).equals(first)).toBe(true);
    await expectServedFolderClean(served);
  });
});

describe('a symbolic link planted in the served folder is never written through', () => {
  /** PARENT/outside (empty), and inbox/d -> PARENT/outside. */
  async function planted(options: Partial<ServeOptions> = {}): Promise<Served & { outside: string }> {
    const where = await landing();
    const outside = join(where.parent, 'outside');
    mkdirSync(outside);
    symlinkSync(outside, join(where.inbox, 'd'));
    return { ...(await serving(options, where)), outside };
  }

  for (const onConflict of ['refuse', 'overwrite'] as const) {
    it(`--on-conflict ${onConflict}: the folder "d" is refused (a link), and "d/x" with it`, async () => {
      const served = await planted({ onConflict });
      const peer = await acceptedSession(served.port);
      await peer.write(dirEntry(1, 'd'));
      await expectDecision(peer, 1, { action: 'refuse', reason: 'exists', message: expect.stringMatching(/symbolic link on the receiver, which is never followed/) });
      await peer.write(fileEntry(2, 'd/x', 4));
      await expectDecision(peer, 2, { action: 'refuse', reason: 'bad-name', message: expect.stringMatching(/the folder it is in was refused/) });
      await endSession(peer, 2, 0, { stored: 0, failed: 2 });
      await served.settled();
      expect(await listFolder(served.outside)).toEqual([]);
      expect(brief(await treeOf(served.inbox))).toEqual(['symlink d']);
      await expectServedFolderClean(served, ['outside']);
    });
  }

  it('--on-conflict rename: "d" lands beside the link as "d-1", never through it', async () => {
    const served = await planted({ onConflict: 'rename' });
    const peer = await acceptedSession(served.port);
    await peer.write(dirEntry(1, 'd'));
    await expectDecision(peer, 1, { action: 'store' });
    await storeFile(peer, 2, 'd/x', Buffer.from('data'), 'd-1/x');
    await endSession(peer, 2, 4, { stored: 2, failed: 0 });
    await served.settled();
    expect(await listFolder(served.outside)).toEqual([]);
    expect(brief(await treeOf(served.inbox))).toEqual(['symlink d', 'dir d-1', 'file d-1/x 4']);
    await expectServedFolderClean(served, ['outside']);
  });

  it('"d/x" sent without its folder "d" first: refused, nothing written through the link', async () => {
    const served = await planted();
    const peer = await acceptedSession(served.port);
    await peer.write(fileEntry(1, 'd/x', 4));
    await expectDecision(peer, 1, { action: 'refuse', reason: 'bad-name', message: expect.stringMatching(/the folder it is in was not sent before it/) });
    await endSession(peer, 1, 0, { stored: 0, failed: 1 });
    await served.settled();
    expect(await listFolder(served.outside)).toEqual([]);
    await expectServedFolderClean(served, ['outside']);
  });

  it('a link one level down in a folder the session merges into (real/link -> outside): refused, and what is inside it', async () => {
    const where = await landing();
    const outside = join(where.parent, 'outside');
    mkdirSync(outside);
    mkdirSync(join(where.inbox, 'real'));
    symlinkSync(outside, join(where.inbox, 'real', 'link'));
    const served = await serving({}, where);
    const peer = await acceptedSession(served.port);
    await peer.write(Buffer.concat([dirEntry(1, 'real'), dirEntry(2, 'real/link'), fileEntry(3, 'real/link/x', 4)]));
    await expectDecision(peer, 1, { action: 'store' });
    await expectDecision(peer, 2, { action: 'refuse', reason: 'exists', message: expect.stringMatching(/symbolic link/) });
    await expectDecision(peer, 3, { action: 'refuse', reason: 'bad-name' });
    await endSession(peer, 3, 0, { stored: 1, failed: 2 });
    await served.settled();
    expect(await listFolder(outside)).toEqual([]);
    await expectServedFolderClean(served, ['outside']);
  });

  it('a file name that is a link to a file outside: refused by default; replaced (the link, not its target) with overwrite', async () => {
    for (const onConflict of ['refuse', 'overwrite'] as const) {
      const where = await landing();
      const outside = join(where.parent, 'outside');
      mkdirSync(outside);
      writeFileSync(join(outside, 'target.txt'), 'precious');
      symlinkSync(join(outside, 'target.txt'), join(where.inbox, 'f'));
      const served = await serving({ onConflict }, where);
      const peer = await acceptedSession(served.port);
      if (onConflict === 'refuse') {
        await peer.write(fileEntry(1, 'f', 5));
        await expectDecision(peer, 1, { action: 'refuse', reason: 'exists' });
        await endSession(peer, 1, 0, { stored: 0, failed: 1 });
        expect(brief(await treeOf(where.inbox))).toEqual(['symlink f']);
      } else {
        await storeFile(peer, 1, 'f', Buffer.from('hello'));
        await endSession(peer, 1, 5, { stored: 1, failed: 0 });
        expect(brief(await treeOf(where.inbox))).toEqual(['file f 5']);
      }
      await served.settled();
      expect(readFileSync(join(outside, 'target.txt'), 'utf8'), onConflict).toBe('precious');
      expect(await listFolder(outside)).toEqual(['target.txt']);
      await expectServedFolderClean(served, ['outside']);
    }
  });
});

describe('names that differ only in case', () => {
  it('a receiver told its folder folds case refuses the second of "docs/Readme.txt" and "docs/README.txt"; one that does not fold stores both', async () => {
    for (const folds of [true, false]) {
      const served = folds ? await servingAsIfFoldingCase() : await serving();
      const peer = await acceptedSession(served.port);
      await peer.write(Buffer.concat([dirEntry(1, 'docs'), fileEntry(2, 'docs/Readme.txt', 5), fileEntry(3, 'docs/README.txt', 5)]));
      await expectDecision(peer, 1, { action: 'store' });
      await expectDecision(peer, 2, { action: 'store' });
      await expectDecision(peer, 3, folds ? { action: 'refuse', reason: 'exists' } : { action: 'store' });
      await peer.write(fileBody(2, Buffer.from('first')));
      expect(await peer.reply()).toMatchObject({ type: 'Result', body: { id: 2, ok: true } });
      if (!folds) {
        await peer.write(fileBody(3, Buffer.from('other')));
        expect(await peer.reply()).toMatchObject({ type: 'Result', body: { id: 3, ok: true } });
      }
      await endSession(peer, 3, folds ? 5 : 10, { stored: folds ? 2 : 3, failed: folds ? 1 : 0 });
      await served.settled();
      expect(await listFolder(join(served.inbox, 'docs')), folds ? 'folding' : 'not folding').toEqual(folds ? ['Readme.txt'] : ['README.txt', 'Readme.txt']);
      await expectServedFolderClean(served);
    }
  });

  describe.skipIf(exfatUnavailable() !== undefined)(`on a real exFAT file system (${exfatUnavailable() ?? 'mounted for these tests'})`, () => {
    let exfat: ExfatMount | undefined;
    beforeAll(async () => {
      exfat = await mountExfat();
    }, 60_000);
    afterAll(async () => {
      await exfat?.unmount();
    });

    it('a name or folder that exists in another case is refused, never merged or overwritten; the same within one session too', async () => {
      const parent = join(exfat?.folder as string, 'case');
      const inbox = join(parent, 'inbox');
      mkdirSync(join(inbox, 'Photos'), { recursive: true });
      writeFileSync(join(inbox, 'Readme.txt'), 'already here');
      const served = await serving({}, { parent, inbox });
      const peer = await acceptedSession(served.port);
      await peer.write(fileEntry(1, 'README.txt', 4));
      await expectDecision(peer, 1, { action: 'refuse', reason: 'exists', message: expect.stringMatching(/differs only in case/) });
      await peer.write(dirEntry(2, 'photos'));
      await expectDecision(peer, 2, { action: 'refuse', reason: 'exists', message: expect.stringMatching(/differs only in case/) });
      await peer.write(dirEntry(3, 'new'));
      await expectDecision(peer, 3, { action: 'store' });
      await storeFile(peer, 4, 'new/a.txt', Buffer.from('lower'));
      await peer.write(fileEntry(5, 'new/A.txt', 5));
      await expectDecision(peer, 5, { action: 'refuse', reason: 'exists', message: expect.stringMatching(/differs only in case/) });
      await endSession(peer, 5, 5, { stored: 2, failed: 3 });
      await served.settled();
      expect(readFileSync(join(inbox, 'Readme.txt'), 'utf8')).toBe('already here');
      expect(await listFolder(inbox)).toEqual(['Photos', 'Readme.txt', 'new']);
      expect(await listFolder(join(inbox, 'Photos'))).toEqual([]);
      expect(await listFolder(join(inbox, 'new'))).toEqual(['a.txt']);
      await expectServedFolderClean(served);
    });
  });
});

describe('broken framing ends the session with an Error; what was confirmed stays', () => {
  it('an Entry path of 4,096 levels (8,191 bytes, past the field limit): Error', async () => {
    const served = await serving();
    const peer = await acceptedSession(served.port);
    await peer.write(fileEntry(1, `${'a/'.repeat(4095)}a`, 1));
    await expectSessionError(peer, /"path" must be a string of 1 to 4096 bytes/);
    expect(await served.settled()).toMatchObject({ kind: 'failed', code: 'FTX_ERR_PROTOCOL' });
    expect(await listFolder(served.inbox)).toEqual([]);
    await expectServedFolderClean(served);
  });

  it('an Entry path longer than 4,096 bytes: Error', async () => {
    const served = await serving();
    const peer = await acceptedSession(served.port);
    await peer.write(fileEntry(1, 'x'.repeat(4097), 1));
    await expectSessionError(peer, /"path" must be a string of 1 to 4096 bytes/);
    await served.settled();
    await expectServedFolderClean(served);
  });

  it('an Entry frame larger than a session allows (32 KiB): Error from its header alone', async () => {
    const served = await serving();
    const peer = await acceptedSession(served.port);
    const header = Buffer.alloc(5);
    header.writeUInt8(FrameType.Entry, 0);
    header.writeUInt32BE(1024 * 1024, 1);
    await peer.write(header);
    await expectSessionError(peer, /declares 1048576 bytes, more than the 32768 allowed/);
    await served.settled();
    await expectServedFolderClean(served);
  });

  for (const type of ['symlink', 'fifo', 'device', null]) {
    it(`an Entry of type ${JSON.stringify(type)} (only "file" and "dir" exist): Error, nothing created`, async () => {
      const served = await serving();
      const peer = await acceptedSession(served.port);
      await peer.write(jsonFrame(FrameType.Entry, { id: 1, path: 'evil', type, size: 0, target: '/etc/passwd' }));
      await expectSessionError(peer, /"type" must be "file" or "dir"/);
      await served.settled();
      expect(await listFolder(served.inbox)).toEqual([]);
      await expectServedFolderClean(served);
    });
  }

  it('Entry ids out of order (2 first): Error', async () => {
    const served = await serving();
    const peer = await acceptedSession(served.port);
    await peer.write(fileEntry(2, 'b.txt', 1));
    await expectSessionError(peer, /sent entry 2 where entry 1 was due/);
    await served.settled();
    await expectServedFolderClean(served);
  });

  it('an Entry id repeated after a stored file: Error, the stored file stays', async () => {
    const served = await serving();
    const peer = await acceptedSession(served.port);
    await storeFile(peer, 1, 'kept.txt', Buffer.from('kept'));
    await peer.write(fileEntry(1, 'again.txt', 1));
    await expectSessionError(peer, /sent entry 1 where entry 2 was due/);
    await served.settled();
    expect(brief(await treeOf(served.inbox))).toEqual(['file kept.txt 4']);
    await expectServedFolderClean(served);
  });

  it('Data for an entry that was refused: Error, nothing written', async () => {
    const served = await serving();
    const peer = await acceptedSession(served.port);
    await peer.write(fileEntry(1, '../escape', 3));
    await expectDecision(peer, 1, { action: 'refuse', reason: 'bad-name' });
    await peer.write(dataFrame(Buffer.from('abc')));
    await expectSessionError(peer, /sent data with no stored entry to go to/);
    await served.settled();
    expect(await listFolder(served.inbox)).toEqual([]);
    await expectServedFolderClean(served);
  });

  it('Data for a folder entry, and Data before any entry: Error', async () => {
    for (const entries of [[dirEntry(1, 'd')], []]) {
      const served = await serving();
      const peer = await acceptedSession(served.port);
      if (entries.length > 0) {
        await peer.write(Buffer.concat(entries));
        await expectDecision(peer, 1, { action: 'store' });
      }
      await peer.write(dataFrame(Buffer.from('abc')));
      await expectSessionError(peer, /sent data with no stored entry to go to/);
      await served.settled();
      await expectServedFolderClean(served);
    }
  });

  it('more Data bytes than the Entry announced (a small file, then a staged one): Error, no file, no temp file', async () => {
    for (const size of [3, SMALL_FILE_BYTES + 1]) {
      const served = await serving();
      const peer = await acceptedSession(served.port);
      await peer.write(fileEntry(1, 'over.bin', size));
      await expectDecision(peer, 1, { action: 'store' });
      await peer.write(Buffer.concat([dataFrame(randomBytes(size)), dataFrame(Buffer.from('!'))]));
      await expectSessionError(peer, new RegExp(`sent more than the ${size} bytes it announced`));
      await served.settled();
      expect(await listFolder(served.inbox), `size ${size}`).toEqual([]);
      await expectServedFolderClean(served);
    }
  });

  it('fewer bytes than announced, then its Trailer: Error, no file, no temp file', async () => {
    const served = await serving();
    const peer = await acceptedSession(served.port);
    const data = randomBytes(SMALL_FILE_BYTES + 10);
    await peer.write(fileEntry(1, 'short.bin', data.length + 1));
    await expectDecision(peer, 1, { action: 'store' });
    await peer.write(fileBody(1, data));
    await expectSessionError(peer, /sent 262154 bytes for "short\.bin", announced 262155/);
    await served.settled();
    expect(await listFolder(served.inbox)).toEqual([]);
    await expectServedFolderClean(served);
  });

  it('a Trailer with the wrong digest: that entry fails (integrity) and is not kept, small or staged; the others survive', async () => {
    const served = await serving();
    const peer = await acceptedSession(served.port);
    const small = randomBytes(100);
    const large = randomBytes(SMALL_FILE_BYTES + 100);
    const good = randomBytes(SMALL_FILE_BYTES + 7);
    await peer.write(fileEntry(1, 'bad-small.bin', small.length));
    await expectDecision(peer, 1, { action: 'store' });
    await peer.write(Buffer.concat([dataFrame(small), trailerFrame(1, small, Buffer.from('something else'))]));
    expect(await peer.reply()).toMatchObject({ type: 'Result', body: { id: 1, ok: false, code: 'FTX_ERR_INTEGRITY', message: expect.stringMatching(/does not match/) } });
    await peer.write(fileEntry(2, 'bad-large.bin', large.length));
    await expectDecision(peer, 2, { action: 'store' });
    await peer.write(Buffer.concat([dataFrame(large), trailerFrame(2, large, small)]));
    expect(await peer.reply()).toMatchObject({ type: 'Result', body: { id: 2, ok: false, code: 'FTX_ERR_INTEGRITY' } });
    await peer.write(fileEntry(3, 'good.bin', good.length));
    await expectDecision(peer, 3, { action: 'store' });
    await peer.write(fileBody(3, good));
    expect(await peer.reply()).toMatchObject({ type: 'Result', body: { id: 3, ok: true, path: 'good.bin' } });
    await endSession(peer, 3, small.length + large.length + good.length, { stored: 1, failed: 2 });
    expect(await served.settled()).toEqual({ kind: 'done', failed: 2, files: 1, folders: 0 });
    expect(await listFolder(served.inbox)).toEqual(['good.bin']);
    expect((await readFile(join(served.inbox, 'good.bin'))).equals(good)).toBe(true);
    await expectServedFolderClean(served);
  });

  it('a Trailer for another entry than the one whose data came: Error, nothing stored', async () => {
    const served = await serving();
    const peer = await acceptedSession(served.port);
    const data = Buffer.from('small');
    await peer.write(fileEntry(1, 'one.txt', data.length));
    await expectDecision(peer, 1, { action: 'store' });
    await peer.write(Buffer.concat([dataFrame(data), trailerFrame(7, data)]));
    await expectSessionError(peer, /sent the trailer of entry 7 out of turn/);
    expect(await served.settled()).toMatchObject({ kind: 'failed', code: 'FTX_ERR_PROTOCOL' });
    expect(await listFolder(served.inbox)).toEqual([]);
    await expectServedFolderClean(served);
  });

  // Bug: SessionReceiver.#onTrailer shifts the entry off #pending before it checks the
  // trailer's id, and throws outside its try: the entry is neither discarded nor in
  // #pending for #abandonPending, so a staged file's temporary file (and its open handle:
  // "Closing file descriptor N on garbage collection") stays behind.
  it('a Trailer out of turn for a staged (large) file leaves no temporary file behind', async () => {
    const served = await serving();
    const peer = await acceptedSession(served.port);
    const data = randomBytes(SMALL_FILE_BYTES + 1);
    await peer.write(fileEntry(1, 'one.bin', data.length));
    await expectDecision(peer, 1, { action: 'store' });
    await peer.write(Buffer.concat([dataFrame(data), trailerFrame(7, data)]));
    await expectSessionError(peer, /sent the trailer of entry 7 out of turn/);
    await served.settled();
    expect(await temporaryFilesUnder(served.inbox)).toEqual([]);
  });

  // Same cause: the entry's claim on its name is never released (policy.release is in the
  // finally of a try the throw comes before), so serve mode holds the name "in flight"
  // for as long as it runs and refuses every later sender of it.
  it('after a Trailer out of turn, serve mode still takes a file of that name from the next sender', async () => {
    const served = await serving();
    const peer = await acceptedSession(served.port);
    const data = Buffer.from('small');
    await peer.write(fileEntry(1, 'one.txt', data.length));
    await expectDecision(peer, 1, { action: 'store' });
    await peer.write(Buffer.concat([dataFrame(data), trailerFrame(7, data)]));
    await expectSessionError(peer, /out of turn/);
    await served.settled();
    const source = join(await tempFolder(), 'one.txt');
    writeFileSync(source, 'the good one');
    await send({ path: source, to: { host: HOST, port: served.port }, timeoutMs: 5_000 });
    expect(readFileSync(join(served.inbox, 'one.txt'), 'utf8')).toBe('the good one');
  });

  it('End with a wrong count: Error; the file whose Result was ok stays', async () => {
    const served = await serving();
    const peer = await acceptedSession(served.port);
    await storeFile(peer, 1, 'kept.txt', Buffer.from('kept'));
    await peer.write(endFrame(5, 4));
    await expectSessionError(peer, /ended the session after 1 entries, saying 5/);
    expect(await served.settled()).toMatchObject({ kind: 'failed', code: 'FTX_ERR_PROTOCOL' });
    expect(brief(await treeOf(served.inbox))).toEqual(['file kept.txt 4']);
    await expectServedFolderClean(served);
  });

  it('End while a stored entry still waits for its data: Error, its temporary file removed', async () => {
    const served = await serving();
    const peer = await acceptedSession(served.port);
    await peer.write(fileEntry(1, 'owed.bin', 4 * MiB));
    await expectDecision(peer, 1, { action: 'store' });
    await peer.write(endFrame(1, 0));
    await expectSessionError(peer, /still owed their data/);
    await served.settled();
    expect(await listFolder(served.inbox)).toEqual([]);
    await expectServedFolderClean(served);
  });

  it(`more than ${MAX_ENTRIES_AHEAD} files announced ahead of their data: Error, every temporary file removed`, async () => {
    const served = await serving();
    const peer = await acceptedSession(served.port);
    // Large files: each is staged (a temporary file) when its Entry is decided.
    const entries = Array.from({ length: MAX_ENTRIES_AHEAD + 1 }, (_, index) => fileEntry(index + 1, `f${index}.bin`, SMALL_FILE_BYTES + 1));
    await peer.write(Buffer.concat(entries));
    for (let id = 1; id <= MAX_ENTRIES_AHEAD; id++) await expectDecision(peer, id, { action: 'store' });
    await expectSessionError(peer, new RegExp(`more than ${MAX_ENTRIES_AHEAD} entries ahead of their data`));
    await served.settled();
    expect(await listFolder(served.inbox)).toEqual([]);
    await expectServedFolderClean(served);
  });

  it('a frame a sender never sends mid-session (a Summary): Error', async () => {
    const served = await serving();
    const peer = await acceptedSession(served.port);
    await peer.write(jsonFrame(FrameType.Summary, { entries: 0, stored: 0, skipped: 0, failed: 0, bytes: 0 }));
    await expectSessionError(peer, /sent a Summary frame in the middle of a session/);
    await served.settled();
    await expectServedFolderClean(served);
  });
});

describe('an Open with absurd totals', () => {
  it('2^53-1 bytes: refused for space (no-space) before any Accept', async () => {
    const served = await serving();
    const peer = await sessionPeer(served.port);
    const answer = await peer.open({ entries: 2, bytes: Number.MAX_SAFE_INTEGER });
    expect(answer).toMatchObject({ type: 'Refuse', body: { reason: 'no-space' } });
    peer.destroy();
    expect(await served.settled()).toMatchObject({ kind: 'failed', code: 'FTX_ERR_REFUSED', reason: 'no-space' });
    await expectServedFolderClean(served);
  });

  for (const [label, fields] of [
    ['a negative entry count', { entries: -1 }],
    ['an entry count past 2^53', { entries: 2 ** 60 }],
    ['bytes as text', { bytes: '1000' }],
    ['version 1 (an Open is version 2 or later)', { version: 1 }],
    ['an unknown digest', { hash: 'md5' }],
  ] as const) {
    it(`${label}: Error before any Accept`, async () => {
      const served = await serving();
      const peer = await sessionPeer(served.port);
      const answer = await peer.open(fields);
      expect(answer).toMatchObject({ type: 'Error', body: { code: 'FTX_ERR_PROTOCOL' } });
      peer.destroy();
      expect(await served.settled()).toEqual({ kind: 'dropped', code: 'FTX_ERR_PROTOCOL' });
      await expectServedFolderClean(served);
    });
  }

  it('a version this receiver does not speak (3): refused as unsupported before any Accept, naming the versions it speaks', async () => {
    const served = await serving();
    const peer = await sessionPeer(served.port);
    const answer = await peer.open({ version: 3 });
    expect(answer).toMatchObject({ type: 'Refuse', body: { reason: 'unsupported', message: expect.stringMatching(/protocol 3; this receiver speaks 1 and 2/) } });
    peer.destroy();
    await served.settled();
    await expectServedFolderClean(served);
  });

  it('2^53-1 entries with no byte total is only a number: the session is accepted and ends cleanly at its End', async () => {
    const served = await serving();
    const peer = await acceptedSession(served.port, { entries: Number.MAX_SAFE_INTEGER });
    await storeFile(peer, 1, 'one.txt', Buffer.from('1'));
    await endSession(peer, 1, 1, { stored: 1, failed: 0 });
    await served.settled();
    await expectServedFolderClean(served);
  });
});
