/**
 * The reliability suite (issue 6): what ftx does when the network, the peer, the
 * process or the disk misbehaves, each fault tried for real and recorded in
 * docs/RELIABILITY.md.
 *
 * - Through the fault proxy (test/helpers/fault-proxy.ts): 1-byte segments, coalesced and
 *   delayed writes, stalls longer than --timeout, and cuts (FIN and RST) at every stage
 *   of the conversation, upstream and downstream.
 * - Hostile clients against a one-shot receiver and against serve mode.
 * - Crashes: kill -9 and signals on either side, mid-file.
 * - Disk trouble: a read-only folder, a folder the user may not write, a folder deleted
 *   mid-transfer (disk full is in cli.test.ts).
 *
 * Every case checks the exit code of each side against README's table, that nothing is
 * left under the final name unless it was committed, that no temporary file is left by a
 * process that survived, and that nothing is written beside the target folder (each test
 * receives into PARENT/inbox and checks PARENT too).
 *
 * Tests headed "Regression" reproduce a bug this suite found (fixed in 7c25d83); the
 * comment above each says what used to happen.
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { execFileSync, spawn } from 'node:child_process';
import { chmod, mkdir, mkdtemp, open, readFile, rm, type FileHandle } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FrameDecoder, FrameType, type Frame } from '../src/framing.js';
import { jsonFrame, PROTOCOL_NAME, PROTOCOL_VERSION } from '../src/protocol/messages.js';
import { receiveConnection } from '../src/receiver.js';
import { StagedFile } from '../src/fs/staged-file.js';
import { SOFTWARE } from '../src/util/version.js';
import { FTX_BIN, runCli, startRecvCli, summaryOf, type CliRun } from './helpers/cli.js';
import { startFaultProxy, type FaultPlan, type FaultProxy } from './helpers/fault-proxy.js';
import { expectSameFile, listFolder, randomFile, sha256Of, tempFolder } from './helpers/files.js';
import { canMount, mountTmpfs } from './helpers/mounts.js';
import { sendTo, startReceiver } from './helpers/loopback.js';
import { seededRandom } from './helpers/random.js';
import { headerFrame, parseFrame, rawPeer, type RawPeer } from './helpers/raw-peer.js';

const FIXTURE_JPEG = new URL('./fixtures/06.jpg', import.meta.url).pathname;
const HOST = '127.0.0.1';

/** Frame sizes the cut points are placed by (PROTOCOL.md; the CLI's default digest is SHA-256). */
const GREETING_BYTES = jsonFrame(FrameType.Greeting, { protocol: PROTOCOL_NAME, version: PROTOCOL_VERSION, software: SOFTWARE }).length;
const ACCEPT_BYTES = jsonFrame(FrameType.Accept, { offset: 0 }).length;
const TRAILER_BYTES = jsonFrame(FrameType.Trailer, { hash: 'sha256', digest: '0'.repeat(64) }).length;

/** A temporary file as PROTOCOL.md names it: `.NAME.XXXXXXXX.ftx-part`. */
const TEMP_NAME = (name: string) => new RegExp(`^\\.${name.replace(/\./g, '\\.')}\\.[0-9a-f]{8}\\.ftx-part$`);

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

// ---------------------------------------------------------------------------------------
// Harness: every child process and proxy a test starts is torn down after it.

const children: CliRun[] = [];
const proxies: FaultProxy[] = [];

afterEach(async () => {
  for (const run of children.splice(0)) if (run.child.exitCode === null && run.child.signalCode === null) run.child.kill('SIGKILL');
  await Promise.all(proxies.splice(0).map((proxy) => proxy.close().catch(() => {})));
});

function cli(args: string[]): CliRun {
  const run = runCli(args);
  children.push(run);
  return run;
}

async function recvCli(args: string[]): Promise<CliRun & { port: number }> {
  const run = await startRecvCli(args);
  children.push(run);
  return run;
}

async function proxyTo(port: number, plan: FaultPlan): Promise<FaultProxy> {
  const proxy = await startFaultProxy({ host: HOST, port }, plan);
  proxies.push(proxy);
  return proxy;
}

/** The exit code, or 'running' if the process has not exited after `ms` (it kept waiting). */
function exitWithin(run: CliRun, ms: number): Promise<number | 'running'> {
  return Promise.race([run.exit, sleep(ms).then(() => 'running' as const)]);
}

/** PARENT/inbox: the receiver writes into inbox; PARENT shows anything written beside it. */
interface Landing {
  parent: string;
  inbox: string;
}

async function landing(): Promise<Landing> {
  const parent = await tempFolder();
  const inbox = join(parent, 'inbox');
  await mkdir(inbox);
  return { parent, inbox };
}

/** The inbox holds exactly `names` (so no temporary file), and nothing appeared beside it. */
async function expectLanded(where: Landing, names: string[]): Promise<void> {
  expect(await listFolder(where.inbox), 'files in the target folder').toEqual([...names].sort());
  expect(await listFolder(where.parent), 'files beside the target folder').toEqual(['inbox']);
}

/** The error line the CLI logged (level 50), or all of stderr: for failure messages. */
function errorOf(run: CliRun): string {
  const record = run.logs().find((line) => line.level === 50);
  return String(record?.msg ?? run.stderr());
}

const ROOT_WITH_MOUNT = canMount();
const tmpfs = mountTmpfs;

// ---------------------------------------------------------------------------------------
// 1. Through the fault proxy

describe('through the fault proxy: the bytes arrive whatever the segmentation', () => {
  /** In-process sender and receiver with the proxy between them; checks the copy and both digests. */
  async function transferThrough(plan: FaultPlan, source: string): Promise<FaultProxy> {
    const where = await landing();
    const target = join(where.inbox, 'copy.bin');
    const receiver = await startReceiver({ target });
    const proxy = await proxyTo(receiver.port, plan);
    const sent = await sendTo(proxy.port, source);
    const received = await receiver.result;
    await expectSameFile(target, source);
    const digest = await sha256Of(source);
    expect(sent).toMatchObject({ verified: true, digest, name: 'copy.bin' });
    expect(received).toMatchObject({ digest, path: target });
    await expectLanded(where, ['copy.bin']);
    return proxy;
  }

  const oneByte: FaultPlan = { up: { splitInto: 1 }, down: { splitInto: 1 } };

  it('1-byte segments both ways: a small file arrives byte-identical', async () => {
    const source = await randomFile(await tempFolder(), 'small.bin', 300);
    const proxy = await transferThrough(oneByte, source);
    // Header + 300 data bytes + trailer went up one byte at a time; greeting, accept and receipt came down.
    expect(proxy.forwarded.up).toBeGreaterThan(300 + TRAILER_BYTES);
    expect(proxy.forwarded.down).toBeGreaterThan(GREETING_BYTES + ACCEPT_BYTES);
  });

  it('1-byte segments both ways: the JPEG fixture arrives byte-identical', async () => {
    await transferThrough(oneByte, FIXTURE_JPEG);
  });

  it('1-byte segments both ways, real CLI on both ends (1 ms apart, so each is its own read)', async () => {
    const source = await randomFile(await tempFolder(), 'small.bin', 200);
    const where = await landing();
    const recv = await recvCli([where.inbox]);
    const proxy = await proxyTo(recv.port, { up: { splitInto: 1, splitGapMs: 1 }, down: { splitInto: 1, splitGapMs: 1 } });
    const send = cli(['send', source, `${HOST}:${proxy.port}`, '--json']);
    expect(await send.exit, errorOf(send)).toBe(0);
    expect(await recv.exit, errorOf(recv)).toBe(0);
    await expectSameFile(join(where.inbox, 'small.bin'), source);
    await expectLanded(where, ['small.bin']);
  });

  it('coalesced writes both ways (frames and data glued into one read): 1 MiB and the JPEG', async () => {
    const source = await randomFile(await tempFolder(), 'glued.bin', 1024 * 1024 + 3);
    const plan: FaultPlan = { up: { coalesceMs: 15 }, down: { coalesceMs: 15 } };
    await transferThrough(plan, source);
    await transferThrough(plan, FIXTURE_JPEG);
  });

  it('delayed chunks both ways: 1 MiB arrives byte-identical', async () => {
    const source = await randomFile(await tempFolder(), 'late.bin', 1024 * 1024);
    await transferThrough({ up: { delayMs: 20 }, down: { delayMs: 20 } }, source);
  });

  it('odd-sized segments (7 KiB + 7 up, 3 bytes down) with a delay: 256 KiB arrives byte-identical', async () => {
    const source = await randomFile(await tempFolder(), 'odd.bin', 256 * 1024);
    await transferThrough({ up: { splitInto: 7 * 1024 + 7 }, down: { splitInto: 3, delayMs: 5 } }, source);
  });
});

/**
 * A clean CLI run through a proxy measures how many bytes the sender sends for SOURCE
 * (its header holds the file's mode and mtime); the cut points are placed from it.
 */
const CUT_SOURCE_BYTES = 256 * 1024;
let cutSource = '';
let cutSourceFolder = '';
let upstreamBytes = 0;
let headerBytes = 0;

interface PairRun {
  where: Landing;
  send: CliRun;
  recv: CliRun & { port: number };
  sendExit: number;
  /** 'running': the receiver was still waiting for its file 1 s after the sender gave up. */
  recvExit: number | 'running';
}

/** `ftx send SOURCE` -> proxy(plan) -> `ftx recv PARENT/inbox/out.bin`, both with JSON output. */
async function pairThrough(plan: FaultPlan, timeouts: { recv?: number; send?: number } = {}): Promise<PairRun> {
  const where = await landing();
  const recv = await recvCli([join(where.inbox, 'out.bin'), '--timeout', String(timeouts.recv ?? 5)]);
  const proxy = await proxyTo(recv.port, plan);
  const send = cli(['send', cutSource, `${HOST}:${proxy.port}`, '--json', '--timeout', String(timeouts.send ?? 5)]);
  const sendExit = await send.exit;
  const recvExit = await exitWithin(recv, 1000);
  return { where, send, recv, sendExit, recvExit };
}

describe('through the fault proxy: stalls and cuts (CLI on both ends)', () => {
  beforeAll(async () => {
    cutSourceFolder = await mkdtemp(join(tmpdir(), 'ftx-cut-source-'));
    cutSource = await randomFile(cutSourceFolder, 'src.bin', CUT_SOURCE_BYTES);
    const where = await landing();
    const recv = await recvCli([join(where.inbox, 'out.bin')]);
    const proxy = await proxyTo(recv.port, {});
    const send = cli(['send', cutSource, `${HOST}:${proxy.port}`]);
    expect(await send.exit).toBe(0);
    expect(await recv.exit).toBe(0);
    upstreamBytes = proxy.forwarded.up;
    headerBytes = upstreamBytes - CUT_SOURCE_BYTES - TRAILER_BYTES;
    expect(headerBytes).toBeGreaterThan(40);
    await proxy.close();
    await rm(where.parent, { recursive: true, force: true });
  });
  afterAll(async () => {
    await rm(cutSourceFolder, { recursive: true, force: true });
  });

  describe('stalls', () => {
    it('upstream stalls mid-file for longer than the receiver --timeout: receiver 7, sender 7 (told why), no file', async () => {
      const run = await pairThrough({ up: { stallAfterBytes: 100_000 } }, { recv: 1, send: 5 });
      expect(run.recvExit, errorOf(run.recv)).toBe(7);
      expect(errorOf(run.recv)).toMatch(/the sender sent nothing for 1 s/);
      expect(run.sendExit, errorOf(run.send)).toBe(7);
      expect(summaryOf(run.send)).toMatchObject({ ok: false, exitCode: 7, error: { code: 'FTX_ERR_TIMEOUT', message: expect.stringMatching(/^the receiver reports: the sender sent nothing/) } });
      await expectLanded(run.where, []);
    });

    it('upstream stalls mid-file and the sender --timeout is the shorter: sender 7, receiver 7 at its own timeout, no file', async () => {
      const run = await pairThrough({ up: { stallAfterBytes: 100_000 } }, { recv: 2, send: 1 });
      expect(run.sendExit, errorOf(run.send)).toBe(7);
      expect(errorOf(run.send)).toMatch(/the receiver sent nothing for 1 s/);
      expect(await run.recv.exit, errorOf(run.recv)).toBe(7);
      await expectLanded(run.where, []);
    });

    it('downstream stalls just before the receipt: the file is stored, but the sender never claims success (7)', async () => {
      const run = await pairThrough({ down: { stallAfterBytes: GREETING_BYTES + ACCEPT_BYTES } }, { recv: 5, send: 1 });
      expect(run.sendExit, errorOf(run.send)).toBe(7);
      expect(run.recvExit, errorOf(run.recv)).toBe(0);
      await expectSameFile(join(run.where.inbox, 'out.bin'), cutSource);
      await expectLanded(run.where, ['out.bin']);
    });

    it('downstream stalls before the accept: sender 7; its Error frame lands in the data phase, so the receiver sees a lost connection (9); no file', async () => {
      const run = await pairThrough({ down: { stallAfterBytes: GREETING_BYTES } }, { recv: 5, send: 1 });
      expect(run.sendExit, errorOf(run.send)).toBe(7);
      expect(run.recvExit, errorOf(run.recv)).toBe(9);
      await expectLanded(run.where, []);
    });

    // Regression: a sender that times out before the greeting arrives sends an Error frame
    // (PROTOCOL.md: "Either side may send Error at any point after the greeting"); the
    // receiver used to answer it as garbage ("expected a Header or Ping frame first, got
    // Error", exit 4). It reports the sender's reason instead, as the sender does for the
    // receiver's errors (FTX_ERR_TIMEOUT -> 7).
    // Since issue 10, nothing before an Accept ends a one-shot receiver: it logs the
    // sender's reason and keeps waiting.
    it('downstream stalls inside the greeting: sender 7; the receiver logs that the sender timed out (not a protocol violation) and keeps waiting', async () => {
      const run = await pairThrough({ down: { stallAfterBytes: 10 } }, { recv: 5, send: 1 });
      expect(run.sendExit, errorOf(run.send)).toBe(7);
      await expectLanded(run.where, []);
      const logged = await run.recv.waitForLog((record) => record.code !== undefined && /still waiting/.test(String(record.msg)));
      expect(logged).toMatchObject({ code: 'FTX_ERR_TIMEOUT' });
      expect(run.recvExit).toBe('running');
    });
  });

  describe('cuts: the connection ends after K bytes in one direction', () => {
    interface CutCase {
      where: string;
      direction: 'up' | 'down';
      cutAfter: () => number;
      /** Exit codes by README's table; 'running': the receiver ignores it and keeps waiting. */
      recv: number | 'running';
      send: number;
      finOnly?: boolean;
    }
    const cases: CutCase[] = [
      // Before the Accept: the one-shot receiver logs it and keeps waiting for its file.
      { where: 'inside the header', direction: 'up', cutAfter: () => 10, recv: 'running', send: 9 },
      { where: 'right after the header (accepted, no data yet)', direction: 'up', cutAfter: () => headerBytes, recv: 9, send: 9 },
      { where: 'mid-data', direction: 'up', cutAfter: () => headerBytes + CUT_SOURCE_BYTES / 2, recv: 9, send: 9 },
      { where: 'inside the trailer', direction: 'up', cutAfter: () => upstreamBytes - 50, recv: 9, send: 9 },
      { where: 'one byte short of the trailer', direction: 'up', cutAfter: () => upstreamBytes - 1, recv: 9, send: 9 },
      { where: 'inside the accept', direction: 'down', cutAfter: () => GREETING_BYTES + 10, recv: 9, send: 9 },
      // With the old createReadStream data path this gave the sender exit 1 (EBADF: the
      // destroyed read stream closed the file's descriptor, then FileHandle.close() failed).
      // FIN only: with RST the proxy's 10 ms grace lets the whole file through (below).
      { where: 'right after the accept (the sender streams into a closed connection)', direction: 'down', cutAfter: () => GREETING_BYTES + ACCEPT_BYTES, recv: 9, send: 9, finOnly: true },
    ];
    for (const cutWith of ['fin', 'rst'] as const) {
      for (const c of cases.filter((c) => cutWith === 'fin' || !c.finOnly)) {
        it(`${c.direction}stream ${cutWith.toUpperCase()} ${c.where}: receiver ${c.recv}, sender ${c.send}, no file, no temp file`, async () => {
          const run = await pairThrough({ [c.direction]: { cutAfterBytes: c.cutAfter(), cutWith } });
          expect(run.sendExit, errorOf(run.send)).toBe(c.send);
          expect(summaryOf(run.send)).toMatchObject({ ok: false, error: { code: 'FTX_ERR_CONNECTION_LOST' } });
          expect(run.recvExit, errorOf(run.recv)).toBe(c.recv);
          await expectLanded(run.where, []);
        });
      }
    }

    it('downstream FIN inside the greeting: sender 9; the receiver takes it for a silent probe and still takes the next file', async () => {
      const run = await pairThrough({ down: { cutAfterBytes: 10 } });
      expect(run.sendExit, errorOf(run.send)).toBe(9);
      expect(run.recvExit).toBe('running');
      await expectLanded(run.where, []);
      const next = cli(['send', cutSource, `${HOST}:${run.recv.port}`]);
      expect(await next.exit, errorOf(next)).toBe(0);
      expect(await run.recv.exit).toBe(0);
      await expectSameFile(join(run.where.inbox, 'out.bin'), cutSource);
    });

    // Regression: a connection reset before the sender said a word used to end a one-shot
    // receiver with exit 9, while the same connection closed with FIN was ignored as a
    // probe (README: "Connections that close without a word ... are ignored"). Load
    // balancers and health checkers often close with RST.
    it('downstream RST inside the greeting: sender 9; the receiver still takes the next file', async () => {
      const run = await pairThrough({ down: { cutAfterBytes: 10, cutWith: 'rst' } });
      expect(run.sendExit, errorOf(run.send)).toBe(9);
      await expectLanded(run.where, []);
      expect(run.recvExit).toBe('running');
    });

    // Regression: the server sockets were not allowHalfOpen, so once the sender's FIN
    // arrived after its last byte Node ended the receiver's socket for writing, and the
    // receipt failed with EPIPE *after* the commit: exit 9 with out.bin stored. Now the
    // receipt goes into the half-open connection (lost here: the proxy cut it) and the
    // receiver exits 0; the sender, without a receipt, exits 9.
    it('upstream FIN after the last byte (only the receipt is missing): receiver 0 with the file, sender 9', async () => {
      const run = await pairThrough({ up: { cutAfterBytes: upstreamBytes } });
      expect(run.sendExit, errorOf(run.send)).toBe(9);
      await expectSameFile(join(run.where.inbox, 'out.bin'), cutSource);
      await expectLanded(run.where, ['out.bin']);
      expect(run.recvExit, errorOf(run.recv)).toBe(0);
    });

    // A reset that races the end of the transfer: the proxy resets 10 ms after its last
    // byte, and in those 10 ms a 256 KiB transfer on loopback may finish, commit, or even
    // get its receipt through (upstream cut: the receipt travels downstream, uncut). So
    // only what must hold whichever wins is asserted. (That the receiver's exit code
    // agrees with its disk is checked deterministically in-process below.)
    for (const [label, plan] of [
      ['upstream RST after the last byte', () => ({ up: { cutAfterBytes: upstreamBytes, cutWith: 'rst' as const } })],
      ['downstream RST right after the accept', () => ({ down: { cutAfterBytes: GREETING_BYTES + ACCEPT_BYTES, cutWith: 'rst' as const } })],
    ] as const) {
      it(`${label} (racing the commit): the sender exits 0 only if the file is stored whole, else 9; no temp file`, async () => {
        const run = await pairThrough(plan());
        expect([0, 9], errorOf(run.send)).toContain(run.sendExit);
        expect([0, 9], errorOf(run.recv)).toContain(run.recvExit);
        const names = await listFolder(run.where.inbox);
        expect(names.filter((name) => name !== 'out.bin'), 'temporary files').toEqual([]);
        expect(await listFolder(run.where.parent)).toEqual(['inbox']);
        if (names.includes('out.bin')) await expectSameFile(join(run.where.inbox, 'out.bin'), cutSource);
        if (run.sendExit === 0) expect({ stored: names.includes('out.bin'), recvExit: run.recvExit }).toEqual({ stored: true, recvExit: 0 });
        if (run.recvExit === 0) expect(names).toEqual(['out.bin']);
      });
    }
  });
});

// ---------------------------------------------------------------------------------------
// 2. Hostile clients against a one-shot receiver

/** What the receiver said after its greeting: "E:CODE", "R:reason", "C" (receipt), or "closed". */
async function verdictOf(peer: RawPeer): Promise<string> {
  for (;;) {
    let frame: Frame;
    try {
      frame = await peer.nextFrame();
    } catch {
      return 'closed';
    }
    if (frame.type === FrameType.Accept || frame.type === FrameType.KeepAlive) continue;
    const body = parseFrame(frame);
    const detail = body.code ?? body.reason;
    return detail === undefined ? String.fromCharCode(frame.type) : `${String.fromCharCode(frame.type)}:${String(detail)}`;
  }
}

function verdictMatches(actual: string, expected: string | RegExp): boolean {
  return typeof expected === 'string' ? actual === expected : expected.test(actual);
}

/** Seeded random bytes whose first byte is neither a digit (classic client) nor a frame type. */
function randomGarbage(seed: number, length: number): Buffer {
  const random = seededRandom(seed);
  const bytes = Buffer.alloc(length);
  for (let index = 0; index < length; index++) bytes[index] = Math.floor(random() * 256);
  bytes[0] = 0x80 | (bytes[0] as number); // high bit: no digit, no ASCII frame type
  return bytes;
}

/** A Header frame type byte followed by seeded random bytes (a random length prefix). */
function randomAfterHeaderType(seed: number, length: number): Buffer {
  const bytes = randomGarbage(seed, length);
  bytes[0] = FrameType.Header;
  bytes[1] = 0xf0 | (bytes[1] as number); // a length far over 64 KiB, whatever the seed
  return bytes;
}

const trailerFor = (data: Buffer) => jsonFrame(FrameType.Trailer, { hash: 'sha256', digest: sha256(data) });

describe('hostile clients against a one-shot receiver (CLI)', () => {
  interface HostileCase {
    name: string;
    /** Talks to the receiver after its greeting; returns what it observed. */
    act: (peer: RawPeer) => Promise<string>;
    /**
     * The receiver's exit code when the hostile client got as far as an Accept; 'waits'
     * when it did not: whatever happens before an Accept is logged and the receiver
     * keeps waiting for its file (any host on the LAN could end it otherwise).
     */
    exit: number | 'waits';
    /** What the client must have been told. */
    verdict?: string | RegExp;
  }
  const header = (fields: Record<string, unknown>) => headerFrame(fields);
  const cases: HostileCase[] = [
    { name: 'random bytes', act: async (peer) => (await peer.write(randomGarbage(1, 4096)), verdictOf(peer)), exit: 'waits', verdict: 'E:FTX_ERR_PROTOCOL' },
    { name: 'a Header type byte then random bytes', act: async (peer) => (await peer.write(randomAfterHeaderType(2, 64)), verdictOf(peer)), exit: 'waits', verdict: 'E:FTX_ERR_PROTOCOL' },
    { name: 'a huge length prefix (2^32-1)', act: async (peer) => (await peer.write(Buffer.from([FrameType.Header, 0xff, 0xff, 0xff, 0xff])), verdictOf(peer)), exit: 'waits', verdict: 'E:FTX_ERR_PROTOCOL' },
    {
      name: 'a truncated header, then EOF',
      act: async (peer) => {
        peer.socket.end(header({ name: 'x.bin', size: 10 }).subarray(0, 20));
        return verdictOf(peer);
      },
      exit: 'waits',
      verdict: 'closed',
    },
    {
      name: 'a truncated header, then RST',
      act: async (peer) => {
        await peer.write(header({ name: 'x.bin', size: 10 }).subarray(0, 20));
        await sleep(50);
        peer.socket.resetAndDestroy();
        return 'reset';
      },
      exit: 'waits',
    },
    { name: 'an absurd size (2^53-1)', act: async (peer) => (await peer.write(header({ name: 'x.bin', size: 2 ** 53 - 1 })), verdictOf(peer)), exit: 'waits', verdict: 'R:no-space' },
    { name: 'a size past 2^53-1', act: async (peer) => (await peer.write(header({ name: 'x.bin', size: 2 ** 64 })), verdictOf(peer)), exit: 'waits', verdict: 'E:FTX_ERR_PROTOCOL' },
    { name: 'a negative size', act: async (peer) => (await peer.write(header({ name: 'x.bin', size: -1 })), verdictOf(peer)), exit: 'waits', verdict: 'E:FTX_ERR_PROTOCOL' },
    { name: 'a valid header, then silence', act: async (peer) => (await peer.write(header({ name: 'x.bin', size: 10 })), verdictOf(peer)), exit: 7, verdict: 'E:FTX_ERR_TIMEOUT' },
    {
      name: 'more bytes than announced, glued before the trailer',
      act: async (peer) => {
        await peer.write(header({ name: 'x.bin', size: 5 }));
        await peer.nextFrame(FrameType.Accept);
        await peer.write(Buffer.concat([Buffer.from('abcdeXXXX'), trailerFor(Buffer.from('abcde'))]));
        return verdictOf(peer);
      },
      exit: 4,
      verdict: 'E:FTX_ERR_PROTOCOL',
    },
    { name: 'a path-traversal name (../escape)', act: async (peer) => (await peer.write(header({ name: '../escape', size: 10 })), verdictOf(peer)), exit: 'waits', verdict: 'R:bad-name' },
    { name: 'a name that looks like a temp file', act: async (peer) => (await peer.write(header({ name: '.x.0123abcd.ftx-part', size: 10 })), verdictOf(peer)), exit: 'waits', verdict: 'R:bad-name' },
    {
      name: 'a classic client announcing 20 digits',
      act: async (peer) => {
        const text: Buffer[] = [];
        peer.socket.on('data', (chunk: Buffer) => text.push(chunk));
        await peer.write('99999999999999999999');
        await peer.closed;
        return Buffer.concat(text).toString('latin1');
      },
      exit: 'waits',
      verdict: /^error: the sender sent a size of more than 16 digits/,
    },
  ];

  for (const c of cases) {
    const outcome = c.exit === 'waits' ? 'the receiver keeps waiting and takes the next file' : `exit ${c.exit}, no file`;
    it(`${c.name}: ${outcome}, no temp file, nothing beside the folder`, async () => {
      const where = await landing();
      const recv = await recvCli([where.inbox, '--timeout', '1']);
      const peer = await rawPeer(recv.port);
      const verdict = await c.act(peer);
      if (c.verdict !== undefined) expect(verdictMatches(verdict, c.verdict), `told ${JSON.stringify(verdict)}, expected ${String(c.verdict)}`).toBe(true);
      peer.socket.destroy();
      if (c.exit === 'waits') {
        await recv.waitForLog((record) => record.level === 40 && /still waiting/.test(String(record.msg)));
        await expectLanded(where, []);
        const good = cli(['send', FIXTURE_JPEG, `${HOST}:${recv.port}`]);
        expect(await good.exit, errorOf(good)).toBe(0);
        expect(await recv.exit, errorOf(recv)).toBe(0);
        await expectLanded(where, ['06.jpg']);
      } else {
        expect(await recv.exit, errorOf(recv)).toBe(c.exit);
        expect(summaryOf(recv)).toMatchObject({ ok: false, exitCode: c.exit });
        await expectLanded(where, []);
      }
    });
  }

  it('a valid transfer, then extra bytes after the trailer: exit 0, the file holds exactly the announced bytes', async () => {
    const where = await landing();
    const recv = await recvCli([where.inbox, '--timeout', '1']);
    const peer = await rawPeer(recv.port);
    await peer.write(headerFrame({ name: 'x.bin', size: 5 }));
    await peer.nextFrame(FrameType.Accept);
    await peer.write(Buffer.concat([Buffer.from('abcde'), trailerFor(Buffer.from('abcde')), Buffer.from('trailing junk, and more junk')]));
    expect(parseFrame(await peer.nextFrame(FrameType.Receipt))).toMatchObject({ bytes: 5, digest: sha256(Buffer.from('abcde')), name: 'x.bin' });
    expect(await recv.exit, errorOf(recv)).toBe(0);
    expect(await readFile(join(where.inbox, 'x.bin'), 'utf8')).toBe('abcde');
    await expectLanded(where, ['x.bin']);
    peer.socket.destroy();
  });

  // Regression (same cause as 'upstream FIN after the last byte'): a sender that
  // half-closes (shutdown(SHUT_WR)) after its trailer, a common way to say "that is all"
  // and not forbidden by PROTOCOL.md, used to get no receipt while the receiver exited 9
  // with x.bin stored.
  it('a sender that half-closes after its trailer still gets its receipt; the receiver exits 0', async () => {
    const where = await landing();
    const recv = await recvCli([where.inbox, '--timeout', '2']);
    const peer = await rawPeer(recv.port);
    await peer.write(headerFrame({ name: 'x.bin', size: 5 }));
    await peer.nextFrame(FrameType.Accept);
    peer.socket.end(Buffer.concat([Buffer.from('abcde'), trailerFor(Buffer.from('abcde'))]));
    const exit = await recv.exit;
    expect(await readFile(join(where.inbox, 'x.bin'), 'utf8')).toBe('abcde');
    await expectLanded(where, ['x.bin']);
    expect(await verdictOf(peer)).toBe('C');
    expect(exit, errorOf(recv)).toBe(0);
  });

  // Regression: a client that connects and resets at once (SO_LINGER 0: some port
  // scanners and load-balancer health checks) used to crash the receiver: the greeting
  // write failed with ECONNRESET and the socket emitted 'error' before anything listened
  // for it (the channel's async iterator attached its listeners only on the first read):
  // an unhandled 'error' event, exit 1.
  it('clients that connect and reset at once are ignored like silent probes; the next file still arrives', async () => {
    const where = await landing();
    const recv = await recvCli([where.inbox]);
    for (let attempt = 0; attempt < 5; attempt++) await connectAndReset(recv.port);
    expect(await exitWithin(recv, 300), errorOf(recv)).toBe('running');
    const send = cli(['send', FIXTURE_JPEG, `${HOST}:${recv.port}`]);
    expect(await send.exit).toBe(0);
    expect(await recv.exit).toBe(0);
    await expectLanded(where, ['06.jpg']);
  });
});

async function connectAndReset(port: number): Promise<void> {
  const socket = connect({ host: HOST, port });
  socket.on('error', () => {});
  await once(socket, 'connect');
  socket.resetAndDestroy();
  await once(socket, 'close');
}

// ---------------------------------------------------------------------------------------
// 3. Hostile clients against serve mode

describe('hostile clients against serve mode (CLI)', () => {
  /** One hostile connection: what it does, and what the receiver must have told it. */
  interface Storm {
    name: string;
    act: (port: number) => Promise<string>;
    verdict: string | RegExp;
  }

  const viaPeer = (action: (peer: RawPeer) => Promise<string>) => async (port: number) => {
    const peer = await rawPeer(port);
    try {
      return await action(peer);
    } finally {
      peer.socket.destroy();
    }
  };
  const sending = (bytes: Buffer) => viaPeer(async (peer) => (await peer.write(bytes), verdictOf(peer)));
  const afterAccept = (size: number, then: (peer: RawPeer) => Promise<string>, name = `partial-${size}.bin`) =>
    viaPeer(async (peer) => {
      await peer.write(headerFrame({ name, size }));
      await peer.nextFrame(FrameType.Accept);
      return then(peer);
    });

  function stormOf(): Storm[] {
    const storm: Storm[] = [];
    for (const seed of [11, 12, 13]) storm.push({ name: `random bytes #${seed}`, act: sending(randomGarbage(seed, 2048)), verdict: 'E:FTX_ERR_PROTOCOL' });
    for (const seed of [21, 22]) storm.push({ name: `header type + random #${seed}`, act: sending(randomAfterHeaderType(seed, 300)), verdict: 'E:FTX_ERR_PROTOCOL' });
    for (const n of [1, 2]) {
      storm.push({ name: `truncated header + EOF #${n}`, act: viaPeer(async (peer) => (peer.socket.end(headerFrame({ name: 'x.bin', size: 9 }).subarray(0, 12 * n)), verdictOf(peer))), verdict: 'closed' });
      storm.push({
        name: `truncated header + RST #${n}`,
        act: viaPeer(async (peer) => {
          await peer.write(headerFrame({ name: 'x.bin', size: 9 }).subarray(0, 12 * n));
          await sleep(20);
          peer.socket.resetAndDestroy();
          return 'reset';
        }),
        verdict: 'reset',
      });
      storm.push({ name: `absurd size #${n}`, act: sending(headerFrame({ name: `absurd-${n}.bin`, size: 2 ** 53 - n })), verdict: 'R:no-space' });
      storm.push({ name: `huge length prefix #${n}`, act: sending(Buffer.from([FrameType.Header, 0xff, 0xff, 0xff, 0xf0 + n])), verdict: 'E:FTX_ERR_PROTOCOL' });
      storm.push({ name: `header, then silence #${n}`, act: sending(headerFrame({ name: `silent-${n}.bin`, size: 1000 })), verdict: 'E:FTX_ERR_TIMEOUT' });
      storm.push({ name: `partial data, then silence #${n}`, act: afterAccept(100_000 + n, async (peer) => (await peer.write(Buffer.alloc(30_000, n)), verdictOf(peer))), verdict: 'E:FTX_ERR_TIMEOUT' });
      storm.push({
        name: `partial data, then RST #${n}`,
        act: afterAccept(200_000 + n, async (peer) => {
          await peer.write(Buffer.alloc(50_000, n));
          peer.socket.resetAndDestroy();
          return 'reset';
        }),
        verdict: 'reset',
      });
      storm.push({
        name: `more bytes than announced #${n}`,
        act: afterAccept(5, async (peer) => (await peer.write(Buffer.concat([Buffer.alloc(500, 0x41), trailerFor(Buffer.alloc(5, 0x41))])), verdictOf(peer)), `chatty-${n}.bin`),
        verdict: 'E:FTX_ERR_PROTOCOL',
      });
      storm.push({
        name: `RST right after the greeting #${n}`,
        act: viaPeer(async (peer) => {
          peer.socket.resetAndDestroy();
          return 'reset';
        }),
        verdict: 'reset',
      });
      storm.push({ name: `silent FIN #${n}`, act: viaPeer(async (peer) => (peer.socket.end(), verdictOf(peer))), verdict: 'closed' });
    }
    storm.push({ name: 'size past 2^53-1', act: sending(headerFrame({ name: 'big.bin', size: 2 ** 53 })), verdict: 'E:FTX_ERR_PROTOCOL' });
    for (const name of ['../escape', '.x.0123abcd.ftx-part', 'CON', '/etc/passwd']) {
      storm.push({ name: `bad name ${name}`, act: sending(headerFrame({ name, size: 10 })), verdict: 'R:bad-name' });
    }
    storm.push({
      name: 'classic client with 20 digits',
      act: viaPeer(async (peer) => {
        const text: Buffer[] = [];
        peer.socket.on('data', (chunk: Buffer) => text.push(chunk));
        await peer.write('99999999999999999999');
        await peer.closed;
        return Buffer.concat(text).toString('latin1');
      }),
      verdict: /^error: the sender sent a size of more than 16 digits/,
    });
    storm.push({
      name: 'classic client that closes early',
      act: viaPeer(async (peer) => {
        await peer.write('100');
        await sleep(300); // past the 200 ms that completes a classic size, so "ko" comes first
        peer.socket.end('only ten b');
        await peer.closed;
        return 'closed';
      }),
      verdict: 'closed',
    });
    storm.push({ name: 'a ping', act: sending(jsonFrame(FrameType.Ping, { message: 'still there?' })), verdict: 'Q' });
    storm.push({
      name: 'a valid transfer, then extra bytes',
      act: afterAccept(5, async (peer) => (await peer.write(Buffer.concat([Buffer.from('12345'), trailerFor(Buffer.from('12345')), Buffer.from('junk')])), verdictOf(peer)), 'extra.bin'),
      verdict: 'C',
    });
    return storm;
  }

  it('30+ hostile connections at once, mixed with good senders: it stays up, good files land whole, nothing else is left', async () => {
    const outbox = await tempFolder();
    const where = await landing();
    // Every client here comes from 127.0.0.1: lift the per-address limits (tested on their own in hostile.test.ts).
    const recv = await recvCli([where.inbox, '--serve', '--timeout', '1', '--per-host-conns', '200', '--per-host-transfers', '64']);
    const storm = stormOf();
    expect(storm.length).toBeGreaterThanOrEqual(30);
    const sizes = [0, 1, 4096, 300_000, 1024 * 1024 + 1, 2 * 1024 * 1024];
    const good = await Promise.all(sizes.map((size, i) => randomFile(outbox, `good-${i}.bin`, size)));

    const [verdicts, sent] = await Promise.all([
      Promise.all(storm.map((hostile) => hostile.act(recv.port).catch((error: unknown) => `threw: ${String(error)}`))),
      Promise.all(good.map((source) => sendTo(recv.port, source))),
    ]);

    const wrong = storm.flatMap((hostile, i) => (verdictMatches(verdicts[i] as string, hostile.verdict) ? [] : [`${hostile.name}: expected ${String(hostile.verdict)}, got ${verdicts[i]}`]));
    expect(wrong, 'hostile clients that were not told what they should have been').toEqual([]);
    expect(sent.every((result) => result.verified)).toBe(true);
    for (const [i, source] of good.entries()) {
      expect(await sha256Of(join(where.inbox, `good-${i}.bin`)), `good-${i}.bin`).toBe(await sha256Of(source));
    }
    expect(await readFile(join(where.inbox, 'extra.bin'), 'utf8')).toBe('12345');

    // Still serving: a good CLI sender after the storm.
    expect(recv.child.exitCode).toBeNull();
    const late = cli(['send', FIXTURE_JPEG, `${HOST}:${recv.port}`, '--quiet']);
    expect(await late.exit, errorOf(late)).toBe(0);
    await expectSameFile(join(where.inbox, '06.jpg'), FIXTURE_JPEG);

    // Every failed connection has finished (timeouts included) and left nothing behind.
    await expect.poll(() => listFolder(where.inbox), { timeout: 5000 }).toEqual(['06.jpg', 'extra.bin', ...good.map((_, i) => `good-${i}.bin`)].sort());
    await expectLanded(where, ['06.jpg', 'extra.bin', ...good.map((_, i) => `good-${i}.bin`)]);
    const failed = recv.logs().filter((record) => record.event === 'transfer-failed' || record.event === 'connection-failed');
    expect(failed.length).toBeGreaterThanOrEqual(20);
    recv.child.kill('SIGTERM');
    expect(await recv.exit).toBe(0);
  });

  // Regression (same cause as in the one-shot case): one client that connected and reset
  // at once crashed `ftx recv --serve` (exit 1), taking the backup box down for everyone.
  it('clients that connect and reset at once do not take the server down', async () => {
    const where = await landing();
    const recv = await recvCli([where.inbox, '--serve']);
    for (let attempt = 0; attempt < 5; attempt++) await connectAndReset(recv.port);
    expect(await exitWithin(recv, 300), errorOf(recv)).toBe('running');
    const send = cli(['send', FIXTURE_JPEG, `${HOST}:${recv.port}`]);
    expect(await send.exit).toBe(0);
    await expectLanded(where, ['06.jpg']);
    recv.child.kill('SIGTERM');
    expect(await recv.exit).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------
// 4. Crashes and signals, mid-file

describe('crashes and signals mid-file (CLI)', () => {
  /** A sender and a receiver mid-file: the proxy delays upstream so the transfer lasts. */
  async function midFile(receiverArgs: string[] = []) {
    const source = await randomFile(await tempFolder(), 'big.bin', 24 * 1024 * 1024);
    const where = await landing();
    const recv = await recvCli([join(where.inbox, 'out.bin'), '--timeout', '5', ...receiverArgs]);
    // About 64 KiB per 20 ms: seconds for the whole file, and what the kernel buffered
    // before a kill still drains quickly.
    const proxy = await proxyTo(recv.port, { up: { delayMs: 20 } });
    const send = cli(['send', source, `${HOST}:${proxy.port}`, '--json', '--timeout', '5']);
    await recv.waitForLog((record) => record.event === 'receiving');
    // Some data is in: the receiver's temporary file exists and holds bytes.
    await expect.poll(() => proxy.forwarded.up, { timeout: 10_000 }).toBeGreaterThan(200_000);
    await expect.poll(async () => (await listFolder(where.inbox)).length).toBe(1);
    return { source, where, recv, send, proxy };
  }

  it('kill -9 the sender: the receiver reports the lost connection (9, not a timeout), keeps no file and no temp file', async () => {
    const { where, recv, send } = await midFile();
    send.child.kill('SIGKILL');
    expect(await send.exit).toBe(128 + 9);
    expect(await recv.exit, errorOf(recv)).toBe(9);
    expect(summaryOf(recv)).toMatchObject({ ok: false, exitCode: 9, error: { code: 'FTX_ERR_CONNECTION_LOST' } });
    await expectLanded(where, []);
  });

  it('kill -9 the receiver: the sender exits 9 (not a timeout); the temp file stays, hidden and named .out.bin.XXXXXXXX.ftx-part; no out.bin', async () => {
    const { where, recv, send } = await midFile();
    recv.child.kill('SIGKILL');
    expect(await recv.exit).toBe(128 + 9);
    expect(await send.exit, errorOf(send)).toBe(9);
    expect(summaryOf(send)).toMatchObject({ ok: false, exitCode: 9, error: { code: 'FTX_ERR_CONNECTION_LOST' } });
    const names = await listFolder(where.inbox);
    expect(names).toHaveLength(1);
    expect(names[0]).toMatch(TEMP_NAME('out.bin'));
    expect(await listFolder(where.parent)).toEqual(['inbox']);
  });

  it('after a kill -9, a new receiver reports the stale temp file, leaves it alone, and takes the same name', async () => {
    const { source, where, recv, send } = await midFile();
    recv.child.kill('SIGKILL');
    await send.exit;
    const [stale] = await listFolder(where.inbox);
    const again = await recvCli([join(where.inbox, 'out.bin')]);
    const leftover = await again.waitForLog((record) => record.event === 'leftover');
    expect(leftover).toMatchObject({ level: 40, path: join(where.inbox, String(stale)) });
    const resend = cli(['send', source, `${HOST}:${again.port}`]);
    expect(await resend.exit, errorOf(resend)).toBe(0);
    expect(await again.exit).toBe(0);
    await expectSameFile(join(where.inbox, 'out.bin'), source);
    expect(await listFolder(where.inbox)).toEqual([stale, 'out.bin'].sort());
  });

  it('SIGINT the receiver with a real sender: receiver 130, sender 9, no file, no temp file', async () => {
    const { where, recv, send } = await midFile();
    recv.child.kill('SIGINT');
    expect(await recv.exit, errorOf(recv)).toBe(130);
    expect(await send.exit, errorOf(send)).toBe(9);
    await expectLanded(where, []);
  });

  it('SIGTERM the one-shot receiver: 143, sender 9, no file, no temp file', async () => {
    const { where, recv, send } = await midFile();
    recv.child.kill('SIGTERM');
    expect(await recv.exit, errorOf(recv)).toBe(143);
    expect(await send.exit, errorOf(send)).toBe(9);
    await expectLanded(where, []);
  });

  it('SIGTERM the sender: 143; the receiver reports the lost connection (9), no file', async () => {
    const { where, recv, send } = await midFile();
    send.child.kill('SIGTERM');
    expect(await send.exit, errorOf(send)).toBe(143);
    expect(await recv.exit, errorOf(recv)).toBe(9);
    await expectLanded(where, []);
  });
});

// ---------------------------------------------------------------------------------------
// 5. Disk trouble

describe('disk trouble on the receiver', () => {
  it.skipIf(!ROOT_WITH_MOUNT)('a read-only folder (tmpfs mounted ro): one-shot and serve mode exit 8 before listening', async () => {
    const readOnly = await tmpfs('ro,size=1m');
    const oneShot = cli(['recv', join(readOnly, 'out.bin'), '--port', '0', '--json']);
    expect(await oneShot.exit).toBe(8);
    expect(summaryOf(oneShot)).toMatchObject({ ok: false, exitCode: 8, error: { code: 'FTX_ERR_LOCAL_IO', message: expect.stringMatching(/read-only/) } });
    expect(oneShot.logs().some((record) => record.event === 'listening')).toBe(false);
    const serve = cli(['recv', readOnly, '--serve', '--port', '0', '--json']);
    expect(await serve.exit).toBe(8);
    expect(summaryOf(serve)).toMatchObject({ ok: false, exitCode: 8, error: { code: 'FTX_ERR_LOCAL_IO' } });
    expect(await listFolder(readOnly)).toEqual([]);
  });

  it.skipIf(!ROOT_WITH_MOUNT)('the folder turns read-only after the receiver started: receiver 8, sender 10, nothing written', async () => {
    const mountPoint = await tmpfs('size=4m');
    const recv = await recvCli([join(mountPoint, 'out.bin')]);
    execFileSync('mount', ['-o', 'remount,ro', mountPoint]);
    const send = cli(['send', FIXTURE_JPEG, `${HOST}:${recv.port}`, '--json']);
    expect(await recv.exit, errorOf(recv)).toBe(8);
    expect(errorOf(recv)).toMatch(/read-only/);
    expect(await send.exit, errorOf(send)).toBe(10);
    expect(summaryOf(send)).toMatchObject({ ok: false, error: { code: 'FTX_ERR_REMOTE_IO', message: expect.stringMatching(/^the receiver reports: .*read-only/) } });
    expect(await listFolder(mountPoint)).toEqual([]);
  });

  describe('permission denied (the receiver runs as an unprivileged user)', () => {
    const NOBODY = 65534;
    const asRoot = process.getuid?.() === 0;

    /** `ftx recv` as uid/gid 65534, which cannot write a root-owned 0555 folder even though root could. */
    function recvAsNobody(args: string[]): CliRun {
      const child = spawn(process.execPath, [FTX_BIN, 'recv', ...args, '--port', '0', '--bind', HOST, '--json'], {
        uid: NOBODY,
        gid: NOBODY,
        stdio: ['ignore', 'pipe', 'pipe'],
        cwd: tmpdir(),
      });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (text: string) => (stdout += text));
      child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
      const exit = new Promise<number>((resolve) => child.on('close', (code) => resolve(code ?? -1)));
      const logs = () => stderr.split('\n').filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as Record<string, unknown>);
      const waitForLog = async (match: (record: Record<string, unknown>) => boolean) => {
        for (let waited = 0; waited < 10_000; waited += 20) {
          const found = logs().find(match);
          if (found) return found;
          if (child.exitCode !== null) break;
          await sleep(20);
        }
        throw new Error(`no matching log line; stderr was:\n${stderr}`);
      };
      const run: CliRun = { child, stdout: () => stdout, stderr: () => stderr, logs, exit, waitForLog };
      children.push(run);
      return run;
    }

    async function lockedLanding(): Promise<Landing> {
      const where = await landing();
      await chmod(where.parent, 0o755); // mkdtemp makes it 0700: nobody could not even look in
      return where;
    }

    it.skipIf(!asRoot)('a folder the user may not write: exit 8 before listening, "permission denied"', async () => {
      const where = await lockedLanding();
      await chmod(where.inbox, 0o555);
      const recv = recvAsNobody([join(where.inbox, 'out.bin')]);
      expect(await recv.exit, recv.stderr()).toBe(8);
      expect(summaryOf(recv)).toMatchObject({ ok: false, exitCode: 8, error: { code: 'FTX_ERR_LOCAL_IO', message: expect.stringMatching(/permission denied/) } });
      await expectLanded(where, []);
    });

    it.skipIf(!asRoot)('write permission taken away after the receiver started: receiver 8, sender 10, nothing written', async () => {
      const where = await lockedLanding();
      await chmod(where.inbox, 0o777);
      const recv = recvAsNobody([join(where.inbox, 'out.bin')]);
      const listening = await recv.waitForLog((record) => record.event === 'listening');
      await chmod(where.inbox, 0o555);
      const send = cli(['send', FIXTURE_JPEG, `${HOST}:${String(listening.port)}`, '--json']);
      expect(await recv.exit, recv.stderr()).toBe(8);
      expect(errorOf(recv)).toMatch(/permission denied/);
      expect(await send.exit, errorOf(send)).toBe(10);
      expect(summaryOf(send)).toMatchObject({ ok: false, error: { code: 'FTX_ERR_REMOTE_IO', message: expect.stringMatching(/permission denied/) } });
      await expectLanded(where, []);
    });
  });

  it('the target folder is deleted mid-file: receiver 8, sender 10, no file anywhere', async () => {
    const source = await randomFile(await tempFolder(), 'doomed.bin', 512 * 1024);
    const where = await landing();
    const recv = await recvCli([join(where.inbox, 'out.bin')]);
    // The stall holds the data back long enough to delete the folder while the file is open.
    const proxy = await proxyTo(recv.port, { up: { stallAfterBytes: 200_000, stallMs: 1500 } });
    const send = cli(['send', source, `${HOST}:${proxy.port}`, '--json']);
    await recv.waitForLog((record) => record.event === 'receiving');
    await rm(where.inbox, { recursive: true });
    expect(await recv.exit, errorOf(recv)).toBe(8);
    expect(errorOf(recv)).toMatch(/cannot store .*out\.bin: no such file or folder/);
    expect(await send.exit, errorOf(send)).toBe(10);
    expect(summaryOf(send)).toMatchObject({ ok: false, exitCode: 10, error: { code: 'FTX_ERR_REMOTE_IO' } });
    expect(await listFolder(where.parent)).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------
// In-process checks for what the CLI cases above can only hit by chance

describe('invariants the races above depend on (in-process)', () => {
  /** A Duplex standing in for a socket: the test feeds the sender's bytes; writes whose first byte is `failOn` fail with ECONNRESET. */
  function scriptedSocket(failOn: number) {
    const frames: Frame[] = [];
    const decoder = new FrameDecoder();
    const stream = new Duplex({
      read() {},
      write(chunk: Buffer, _encoding, callback) {
        if (chunk[0] === failOn) {
          callback(Object.assign(new Error('write ECONNRESET'), { code: 'ECONNRESET' }));
          return;
        }
        frames.push(...decoder.push(chunk));
        callback();
      },
    });
    return { stream, frames };
  }

  // Regression: when the receipt could not be sent after the commit (the connection reset
  // while the file was being fsync'd and renamed), the receiver rejected with
  // ConnectionLostError (CLI: exit 9, --json ok:false) although the file was complete,
  // verified and under its final name. Seen through the proxy as "receiver 9 with out.bin
  // present". Its verdict must match its disk.
  it("a receipt that cannot be sent after the commit: the receiver's verdict matches its disk", async () => {
    const folder = await tempFolder();
    const { stream, frames } = scriptedSocket(FrameType.Receipt);
    const handled = receiveConnection(stream, { target: join(folder, 'out.bin'), onConflict: 'refuse', idleTimeoutMs: 0 });
    const data = Buffer.from('the whole file');
    stream.push(headerFrame({ name: 'out.bin', size: data.length }));
    await expect.poll(() => frames.some((frame) => frame.type === FrameType.Accept)).toBe(true);
    stream.push(Buffer.concat([data, trailerFor(data)]));
    const verdict = await handled.then(
      () => 'stored',
      () => 'failed',
    );
    const stored = (await listFolder(folder)).includes('out.bin');
    expect(await listFolder(folder), 'no temp file either way').toEqual(stored ? ['out.bin'] : []);
    expect(verdict).toBe(stored ? 'stored' : 'failed');
  });

  // Regression: the write stream was an fs.WriteStream on the FileHandle's numeric fd with
  // autoClose: false, but a *destroyed* fs stream closes its fd anyway (autoClose only
  // governs a stream that ends). pipeline() destroys it when the connection dies mid-file,
  // so the fd was closed behind the FileHandle and discard() closed the same number again,
  // by then possibly another transfer's file (serve mode): that file's fd was closed, or,
  // if yet another file reused the number, its writes went to the wrong file.
  it("discarding after the write stream was destroyed (connection lost mid-file) leaves other files' descriptors alone", async () => {
    const folder = await tempFolder();
    const staged = await StagedFile.create(join(folder, 'lost.bin'));
    const stream = staged.createWriteStream();
    const closed = new Promise<void>((resolve) => stream.once('close', () => resolve()));
    stream.on('error', () => {}); // the error pipeline() would report
    stream.write(Buffer.alloc(1000));
    stream.destroy(new Error('the sender vanished')); // what pipeline() does when the socket dies
    await closed;
    // Other transfers open their temporary files; the kernel hands out the lowest free fds,
    // so a descriptor the stream closed behind the StagedFile goes to the first of these.
    const others: FileHandle[] = [];
    try {
      for (let index = 0; index < 4; index++) others.push(await open(join(folder, `other-${index}.bin`), 'w'));
      await staged.discard();
      for (const other of others) await other.write('still mine');
    } finally {
      await Promise.all(others.map((other) => other.close().catch(() => {})));
    }
  });
});
