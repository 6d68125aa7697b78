/**
 * The harness of the reliability suite (issue 6: faults.test.ts, hostile-input.test.ts,
 * crashes.test.ts, disk.test.ts; receiver.test.ts uses `trailerFor`): the real CLI and
 * fault proxies that are torn down after each test, the PARENT/inbox landing every CLI
 * case receives into, and the frame sizes the cut points are placed by.
 *
 * Importing it registers an afterEach that kills every child process still running and
 * closes every proxy the test started (as files.ts removes its temp folders).
 */
import { createHash } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, expect } from 'vitest';
import { DIGEST_NAMES } from '../../src/digest/names.js';
import { FrameType } from '../../src/framing.js';
import { jsonFrame, PROTOCOL_NAME, PROTOCOL_VERSION, PROTOCOL_VERSIONS } from '../../src/protocol/messages.js';
import { SOFTWARE } from '../../src/util/version.js';
import { runCli, startRecvCli, type CliRun } from './cli.js';
import { startFaultProxy, type FaultPlan, type FaultProxy } from './fault-proxy.js';
import { listFolder, tempFolder } from './files.js';

export const FIXTURE_JPEG = new URL('../fixtures/06.jpg', import.meta.url).pathname;
export const HOST = '127.0.0.1';

/**
 * Frame sizes the cut points are placed by (PROTOCOL.md). The CLI sends one file as a
 * session of one entry (protocol 2): downstream Greeting, Accept, Decision, Result,
 * Summary; upstream Open, Entry, a Data frame, the entry's Trailer, End.
 */
export const GREETING_BYTES = jsonFrame(FrameType.Greeting, { protocol: PROTOCOL_NAME, version: PROTOCOL_VERSION, versions: [...PROTOCOL_VERSIONS], software: SOFTWARE, digests: [...DIGEST_NAMES] }).length;
export const ACCEPT_BYTES = jsonFrame(FrameType.Accept, { offset: 0 }).length;
export const DECISION_BYTES = jsonFrame(FrameType.Decision, { id: 1, action: 'store', offset: 0 }).length;
/** A session's first entry's Trailer (BLAKE3, the CLI's default) and the End after it, for a file of `size` bytes. */
export const sessionTailBytes = (size: number) =>
  jsonFrame(FrameType.Trailer, { id: 1, bytes: size, hash: 'blake3', digest: '0'.repeat(64) }).length + jsonFrame(FrameType.End, { entries: 1, bytes: size }).length;
export const endBytes = (size: number) => jsonFrame(FrameType.End, { entries: 1, bytes: size }).length;

/** A temporary file as PROTOCOL.md names it: `.NAME.XXXXXXXX.ftx-part`. */
export const TEMP_NAME = (name: string) => new RegExp(`^\\.${name.replace(/\./g, '\\.')}\\.[0-9a-f]{8}\\.ftx-part$`);

export const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

/** A SHA-256 Trailer frame for `data`, as a sender writes it after the data. */
export const trailerFor = (data: Buffer) => jsonFrame(FrameType.Trailer, { hash: 'sha256', digest: sha256(data) });

// ---------------------------------------------------------------------------------------
// Every child process and proxy a test starts is torn down after it.

const children: CliRun[] = [];
const proxies: FaultProxy[] = [];

afterEach(async () => {
  for (const run of children.splice(0)) if (run.child.exitCode === null && run.child.signalCode === null) run.child.kill('SIGKILL');
  await Promise.all(proxies.splice(0).map((proxy) => proxy.close().catch(() => {})));
});

/** Kills `run` after the current test if it is still running (for CLI runs started by other means). */
export function killAfterTest<T extends CliRun>(run: T): T {
  children.push(run);
  return run;
}

export function cli(args: string[]): CliRun {
  const run = runCli(args);
  children.push(run);
  return run;
}

export async function recvCli(args: string[]): Promise<CliRun & { port: number }> {
  const run = await startRecvCli(args);
  children.push(run);
  return run;
}

export async function proxyTo(port: number, plan: FaultPlan): Promise<FaultProxy> {
  const proxy = await startFaultProxy({ host: HOST, port }, plan);
  proxies.push(proxy);
  return proxy;
}

/** The exit code, or 'running' if the process has not exited after `ms` (it kept waiting). */
export function exitWithin(run: CliRun, ms: number): Promise<number | 'running'> {
  return Promise.race([run.exit, sleep(ms).then(() => 'running' as const)]);
}

/** PARENT/inbox: the receiver writes into inbox; PARENT shows anything written beside it. */
export interface Landing {
  parent: string;
  inbox: string;
}

export async function landing(): Promise<Landing> {
  const parent = await tempFolder();
  const inbox = join(parent, 'inbox');
  await mkdir(inbox);
  return { parent, inbox };
}

/** The inbox holds exactly `names` (so no temporary file), and nothing appeared beside it. */
export async function expectLanded(where: Landing, names: string[]): Promise<void> {
  expect(await listFolder(where.inbox), 'files in the target folder').toEqual([...names].sort());
  expect(await listFolder(where.parent), 'files beside the target folder').toEqual(['inbox']);
}

/** The error line the CLI logged (level 50), or all of stderr: for failure messages. */
export function errorOf(run: CliRun): string {
  const record = run.logs().find((line) => line.level === 50);
  return String(record?.msg ?? run.stderr());
}

/** Resolves as `promise` does, or rejects after `ms` saying what did not happen; leaves no timer behind. */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`expected: ${what}, within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
