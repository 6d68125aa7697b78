/**
 * Resume after crashes (issue 15): kill -9 of either side at random points of a transfer,
 * several times over the same file, each attempt resuming the last; then the last attempt
 * completes and the file is byte-identical. After every kill the partial's record is
 * checked against its data: it never counts more bytes than the file holds, its prefix is
 * the source's, and the next receiver offers exactly what the record says (never more).
 * Also the gentler cuts: Ctrl-C of the receiver, SIGTERM of the sender, an idle timeout on
 * a stalled network, a connection reset: each keeps the partial and the next send resumes.
 *
 * Kill points are random but seeded (FTX_RESUME_SEED=N reproduces a run; the seed is in
 * every failure message). The first attempts go through a loopback proxy that slows the
 * sender to a steady rate, and the kills wait for the partial file (or its record) to
 * grow, so they land during the data. Every wait is bounded; no timing asserts.
 */
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import type { CliRun } from './helpers/cli.js';
import { tempFolder } from './helpers/files.js';
import { proxyTo } from './helpers/harness.js';
import { seededRandom } from './helpers/random.js';
import { bigFile, eventsOf, exitOf, expectIdentical, expectSamePrefix, ftxFilesIn, jsonOf, partialBytes, partialsIn, readRecordJson, recvCli, sendCli, slowProxy, waitFor } from './helpers/resume.js';

const MiB = 1024 * 1024;
const SIZE = 64 * MiB;
const SEED = Number(process.env.FTX_RESUME_SEED ?? Math.floor(Math.random() * 2 ** 31));
const ROUNDS = 3;


/** The one partial in `folder` and what its record says (durable 0 when there is no readable record). */
function partialState(folder: string, context: string): { data: string; bytes: number; durable: number; hasRecord: boolean } {
  const partials = partialsIn(folder);
  expect(partials.length, `${context}: partials in ${folder}: ${ftxFilesIn(folder).join(', ')}`).toBeLessThanOrEqual(1);
  const partial = partials[0];
  if (!partial) return { data: '', bytes: 0, durable: 0, hasRecord: false };
  const record = readRecordJson(partial.record);
  return { data: partial.data, bytes: partial.bytes, durable: record?.durable ?? 0, hasRecord: record !== undefined };
}

/** Completes the transfer (no proxy) and checks it resumed from `offset`. */
async function finish(inbox: string, source: string, offset: number, context: string): Promise<void> {
  const recv = await recvCli([inbox]);
  const sender = sendCli([source], recv.port);
  expect(await exitOf(sender, 'the last sender'), `${context}\n${sender.stderr()}`).toBe(0);
  expect(await exitOf(recv, 'the last receiver'), `${context}\n${recv.stderr()}`).toBe(0);
  expectIdentical(join(inbox, 'big.bin'), source, context);
  expect(jsonOf(sender), context).toMatchObject({ ok: true, bytes: SIZE, bytesSkipped: offset });
  expect(jsonOf(recv), context).toMatchObject({ ok: true, bytes: SIZE - offset, bytesSkipped: offset });
  expect(ftxFilesIn(inbox), context).toEqual([]);
}

describe(`kill -9 at random points, then resume (seed ${SEED})`, { timeout: 120_000 }, () => {
  it(`the sender, ${ROUNDS} times over one file (during the data, and once right as an attempt starts): each attempt resumes the last one's durable bytes; identical at the end`, async () => {
    const random = seededRandom(SEED);
    const source = await bigFile(await tempFolder(), 'big.bin', SIZE);
    const inbox = await tempFolder();
    // Kill marks, one in each of ROUNDS equal slices of 10%..85% of the file, in order.
    const marks = Array.from({ length: ROUNDS }, (_, i) => Math.floor(SIZE * (0.1 + (0.75 * (i + random())) / ROUNDS)));
    let offset = 0;
    const history: string[] = [];
    for (let round = 0; round <= ROUNDS; round++) {
      // The last round (with a partial to resume) kills the sender as soon as the receiver has offered it.
      const early = round === ROUNDS && offset > 0;
      const mark = Math.max(marks[round] ?? 0, offset + 2 * MiB);
      const extraMs = Math.floor(random() * 30);
      const context = `seed ${SEED}, round ${round}${early ? ' (early)' : ` at ${mark} +${extraMs} ms`}, offset ${offset}; so far: ${history.join('; ')}`;
      const recv = await recvCli([inbox]);
      const proxy = await slowProxy(recv.port, 24 * MiB);
      const sender = sendCli([source], proxy.port);
      if (early) {
        await recv.waitForLog((record) => record.event === 'receiving', 15_000);
      } else {
        await waitFor(() => (partialBytes(inbox) >= mark ? true : undefined), `the partial to pass ${mark} bytes (${context})`, 30_000);
        await sleep(extraMs);
      }
      expect(sender.child.exitCode, `the sender finished before it was killed (${context})`).toBeNull();
      sender.child.kill('SIGKILL');
      expect(await exitOf(sender, 'the killed sender')).toBe(137);
      expect(await exitOf(recv, 'the receiver'), `${context}\n${recv.stderr()}`).toBe(9);
      if (offset > 0) {
        // What the receiver offered and resumed from is what the last record said, no more.
        const resumed = eventsOf(recv, 'resumed');
        if (resumed.length > 0) expect(resumed[0], context).toMatchObject({ offset });
        expect(eventsOf(recv, 'resume-refused'), context).toEqual([]);
      }
      const state = partialState(inbox, context);
      expect(state.hasRecord, `a kept partial has its record (${context})`).toBe(true);
      expect(state.durable, context).toBeLessThanOrEqual(state.bytes);
      expect(state.durable, `the durable prefix never goes back (${context})`).toBeGreaterThanOrEqual(offset);
      expect(state.durable, context).toBeLessThan(SIZE);
      if (!early) expect(state.durable, context).toBeGreaterThan(offset);
      expectSamePrefix(state.data, source, state.durable, context);
      expect(eventsOf(recv, 'partial-kept').at(-1), context).toMatchObject({ bytes: state.durable });
      history.push(`round ${round}: kept ${state.durable}`);
      offset = state.durable;
    }
    await finish(inbox, source, offset, `seed ${SEED}: ${history.join('; ')}`);
  });

  it(`the receiver, ${ROUNDS} times over one file: after each restart the offer is exactly the record's durable bytes (never more, never past the data), whose prefix is the source's; identical at the end`, async () => {
    const random = seededRandom(SEED + 1);
    const source = await bigFile(await tempFolder(), 'big.bin', SIZE);
    const inbox = await tempFolder();
    let offset = 0;
    const history: string[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const extraMs = Math.floor(random() * 800);
      const context = `seed ${SEED + 1}, round ${round}, +${extraMs} ms after a checkpoint, offset ${offset}; so far: ${history.join('; ')}`;
      const recv = await recvCli([inbox]);
      const proxy = await slowProxy(recv.port, 8 * MiB);
      const sender = sendCli([source], proxy.port);
      if (offset > 0) {
        const resumed = await recv.waitForLog((record) => record.event === 'resumed' || record.event === 'resume-refused', 15_000);
        expect(resumed, `the receiver offered what its record said (${context})`).toMatchObject({ event: 'resumed', offset });
      }
      // A checkpoint of this attempt is recorded (about a second in), then a random moment later: kill -9.
      await waitFor(() => {
        const state = partialState(inbox, context);
        return state.durable > offset ? true : undefined;
      }, `a checkpoint past ${offset} (${context})`, 30_000);
      await sleep(extraMs);
      expect(sender.child.exitCode, `the sender finished before the receiver was killed (${context})`).toBeNull();
      recv.child.kill('SIGKILL');
      expect(await exitOf(recv, 'the killed receiver')).toBe(137);
      expect(await exitOf(sender, 'the sender'), `${context}\n${sender.stderr()}`).toBe(9);
      if (offset > 0) expect(eventsOf(sender, 'resumed'), context).toEqual([expect.objectContaining({ offset })]);
      const state = partialState(inbox, context);
      // kill -9 may tear the record mid-rewrite: then nothing is offered, which is honest.
      if (state.hasRecord) {
        expect(state.durable, `the record never counts more than the data holds (${context})`).toBeLessThanOrEqual(state.bytes);
        expect(state.durable, context).toBeGreaterThan(offset);
        expectSamePrefix(state.data, source, state.durable, context);
      }
      history.push(`round ${round}: record ${state.hasRecord ? state.durable : 'torn'}, data ${state.bytes}`);
      offset = state.durable;
    }
    await finish(inbox, source, offset, `seed ${SEED + 1}: ${history.join('; ')}`);
  });
});

describe('gentler cuts keep the partial too, and the same send resumes', { timeout: 60_000 }, () => {
  /** Starts a slowed transfer and waits until the partial holds a third of the file. */
  async function midway(receiverArgs: string[] = []) {
    const source = await bigFile(await tempFolder(), 'big.bin', SIZE);
    const inbox = await tempFolder();
    const recv = await recvCli([inbox, ...receiverArgs]);
    const proxy = await slowProxy(recv.port, 32 * MiB);
    const sender = sendCli([source], proxy.port);
    await waitFor(() => (partialBytes(inbox) >= SIZE / 3 ? true : undefined), 'the partial to reach a third of the file', 30_000);
    return { source, inbox, recv, sender };
  }

  async function resumes(inbox: string, source: string, recv: CliRun, context: string): Promise<void> {
    const kept = await recv.waitForLog((record) => record.event === 'partial-kept', 10_000);
    const state = partialState(inbox, context);
    expect(state.hasRecord, context).toBe(true);
    expect(state.durable, context).toBeGreaterThan(0);
    expect(kept, context).toMatchObject({ bytes: state.durable });
    await finish(inbox, source, state.durable, context);
  }

  it('Ctrl-C (SIGINT) of the receiver: exit 130, the sender 9, the partial kept; resumed', async () => {
    const { source, inbox, recv, sender } = await midway();
    recv.child.kill('SIGINT');
    expect(await exitOf(recv, 'the receiver'), recv.stderr()).toBe(130);
    expect(await exitOf(sender, 'the sender'), sender.stderr()).toBe(9);
    await resumes(inbox, source, recv, 'SIGINT receiver');
  });

  it('SIGTERM of the sender: exit 143, the receiver 9, the partial kept; resumed', async () => {
    const { source, inbox, recv, sender } = await midway();
    sender.child.kill('SIGTERM');
    expect(await exitOf(sender, 'the sender'), sender.stderr()).toBe(143);
    expect(await exitOf(recv, 'the receiver'), recv.stderr()).toBe(9);
    await resumes(inbox, source, recv, 'SIGTERM sender');
  });

  it('an idle timeout on a stalled network: the receiver times out, keeps the partial; resumed', async () => {
    const source = await bigFile(await tempFolder(), 'big.bin', SIZE);
    const inbox = await tempFolder();
    const recv = await recvCli([inbox, '--timeout', '2']);
    const proxy = await proxyTo(recv.port, { up: { stallAfterBytes: 20 * MiB } });
    const sender = sendCli([source], proxy.port);
    const code = await exitOf(recv, 'the receiver');
    expect(eventsOf(recv, 'partial-kept'), recv.stderr()).toHaveLength(1);
    expect(code).not.toBe(0);
    sender.child.kill('SIGKILL');
    await exitOf(sender, 'the sender');
    await resumes(inbox, source, recv, 'idle timeout');
  });

  it('a connection reset midway: both ends fail, the partial is kept; resumed', async () => {
    const source = await bigFile(await tempFolder(), 'big.bin', SIZE);
    const inbox = await tempFolder();
    const recv = await recvCli([inbox]);
    const proxy = await proxyTo(recv.port, { up: { cutAfterBytes: 20 * MiB, cutWith: 'rst' } });
    const sender = sendCli([source], proxy.port);
    expect(await exitOf(sender, 'the sender')).not.toBe(0);
    expect(await exitOf(recv, 'the receiver')).not.toBe(0);
    await resumes(inbox, source, recv, 'reset');
  });
});
