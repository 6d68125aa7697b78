/**
 * Helpers of the resume suites (issue 15: resume.test.ts, resume-crash.test.ts): the real
 * CLI with no key from the environment (killed after each test), a loopback proxy that
 * slows the sender's bytes to a steady rate so a kill lands mid-file, and readers of
 * what a cut transfer leaves: `.NAME.KEY.ftx-part` and its record `.NAME.KEY.ftx-resume`.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream, readdirSync, readFileSync, statSync } from 'node:fs';
import { utimes } from 'node:fs/promises';
import { connect, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, expect } from 'vitest';
import { runCli, type CliRun } from './cli.js';
import { killAfterTest, within } from './harness.js';

export const HOST = '127.0.0.1';

const MiB = 1024 * 1024;

/** A partial file: `.NAME.KEY.ftx-part`, KEY 12 hex digits (not a plain temporary file's 8). */
export const PARTIAL_NAME = /^\..+\.[0-9a-f]{12}\.ftx-part$/;
/** Its record. */
export const RECORD_NAME = /^\..+\.[0-9a-f]{12}\.ftx-resume$/;

/** The CLI with FTX_KEY_FILE blanked (a key in the runner's environment must not change a plain run); killed after the test. */
export function ftx(args: string[], env: NodeJS.ProcessEnv = {}): CliRun {
  return killAfterTest(runCli(args, { env: { FTX_KEY_FILE: '', ...env } }));
}

/** `ftx recv ARGS --port 0 --bind 127.0.0.1 --json`, once it listens. */
export async function recvCli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliRun & { port: number }> {
  const run = ftx(['recv', ...args, '--port', '0', '--bind', HOST, '--json'], env);
  const listening = await run.waitForLog((record) => record.event === 'listening', 15_000);
  return { ...run, port: listening.port as number };
}

/** `ftx send PATHS... 127.0.0.1:PORT --json --timeout 10 OPTIONS...`. */
export function sendCli(paths: string[], port: number, options: string[] = [], env: NodeJS.ProcessEnv = {}): CliRun {
  return ftx(['send', ...paths, `${HOST}:${port}`, '--json', '--timeout', '10', ...options], env);
}

/** Log records with this event, as the CLI wrote them so far. */
export const eventsOf = (run: CliRun, event: string) => run.logs().filter((record) => record.event === event);

/** The --json summary on stdout (the last line), or a readable failure. */
export function jsonOf(run: CliRun): Record<string, unknown> {
  const line = run.stdout().trim().split('\n').at(-1) ?? '';
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    throw new Error(`no JSON summary on stdout (${JSON.stringify(run.stdout())}); stderr:\n${run.stderr()}`);
  }
}

export { within } from './harness.js';

/** `size` random bytes, written 8 MiB at a time, with a fixed whole-second mtime (1_700_000_000 s) a test can put back. */
export async function bigFile(folder: string, name: string, size: number): Promise<string> {
  const path = join(folder, name);
  const out = createWriteStream(path);
  for (let left = size; left > 0; left -= 8 * MiB) {
    if (!out.write(randomBytes(Math.min(left, 8 * MiB)))) await once(out, 'drain');
  }
  out.end();
  await once(out, 'close');
  await utimes(path, 1_700_000_000, 1_700_000_000);
  return path;
}

/** cmp: the two files hold the same bytes. */
export function expectIdentical(actual: string, expected: string, what = ''): void {
  const result = spawnSync('cmp', [actual, expected], { encoding: 'utf8' });
  expect(result.status, `${what} cmp ${actual} ${expected}: ${result.stdout}${result.stderr}`).toBe(0);
}

/** cmp -n: the first `bytes` bytes of the partial are the source's (what its record vouches for is true). */
export function expectSamePrefix(partial: string, source: string, bytes: number, what = ''): void {
  const result = spawnSync('cmp', ['-n', String(bytes), partial, source], { encoding: 'utf8' });
  expect(result.status, `${what} cmp -n ${bytes} ${partial} ${source}: ${result.stdout}${result.stderr}`).toBe(0);
}

/** A CLI run's exit code, or a failure naming what did not exit in time. */
export const exitOf = (run: CliRun, what: string, ms = 30_000): Promise<number> => within(run.exit, ms, `${what} to exit; stderr:\n${run.stderr()}`);

/** Polls `check` every `everyMs` until it returns a value other than undefined; fails after `ms`. */
export async function waitFor<T>(check: () => T | undefined | Promise<T | undefined>, what: string, ms = 20_000, everyMs = 10): Promise<T> {
  const deadline = performance.now() + ms;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (performance.now() > deadline) throw new Error(`expected: ${what}, within ${ms} ms`);
    await sleep(everyMs);
  }
}

export interface PartialOnDisk {
  data: string;
  record: string | undefined;
  /** Size of the data file. */
  bytes: number;
}

/** The partial files in `folder` (not recursive), with their records when there are. */
export function partialsIn(folder: string): PartialOnDisk[] {
  let names: string[];
  try {
    names = readdirSync(folder);
  } catch {
    return [];
  }
  return names
    .filter((name) => PARTIAL_NAME.test(name))
    .map((name) => {
      const record = name.replace(/\.ftx-part$/, '.ftx-resume');
      let bytes = 0;
      try {
        bytes = statSync(join(folder, name)).size;
      } catch {
        // Gone meanwhile.
      }
      return { data: join(folder, name), record: names.includes(record) ? join(folder, record) : undefined, bytes };
    });
}

/** Size of the one partial file in `folder` (0 if there is none yet). */
export function partialBytes(folder: string): number {
  return partialsIn(folder).reduce((sum, partial) => Math.max(sum, partial.bytes), 0);
}

export interface RecordOnDisk {
  version: number;
  target: string;
  size: number;
  mtime: number | null;
  hash: string;
  identity: string | null;
  created: string;
  durable: number;
}

/** A record as JSON, or undefined if it is missing or not JSON. */
export function readRecordJson(path: string | undefined): RecordOnDisk | undefined {
  if (path === undefined) return undefined;
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as RecordOnDisk;
  } catch {
    return undefined;
  }
}

/** Every hidden ftx file in `folder`: temporary files, partials, records. */
export function ftxFilesIn(folder: string): string[] {
  return readdirSync(folder)
    .filter((name) => name.startsWith('.') && (name.endsWith('.ftx-part') || name.endsWith('.ftx-resume')))
    .sort();
}

// ---------------------------------------------------------------------------------------
// A proxy that slows the sender's bytes (client -> server) to a steady rate.

export interface SlowProxy {
  readonly port: number;
  /** Bytes forwarded client -> server on each connection, by its index. */
  readonly upBytes: number[];
  close(): Promise<void>;
}

const proxies: SlowProxy[] = [];

afterEach(async () => {
  await Promise.all(proxies.splice(0).map((proxy) => proxy.close()));
});

/**
 * Forwards 127.0.0.1:PORT to `target`, the client's bytes at about `bytesPerSecond`
 * (paused while ahead of that rate or while the server's socket is full), the server's
 * unchanged. A client that goes away (kill -9) is mirrored to the server: its end after
 * the bytes already read, its reset as a reset. Closed after the test.
 */
export async function slowProxy(target: number, bytesPerSecond: number): Promise<SlowProxy> {
  const sockets = new Set<Socket>();
  const upBytes: number[] = [];
  const server = createServer({ allowHalfOpen: true }, (client) => {
    const index = upBytes.length;
    upBytes.push(0);
    const upstream = connect({ host: HOST, port: target, allowHalfOpen: true });
    sockets.add(client);
    sockets.add(upstream);
    client.on('close', () => sockets.delete(client));
    upstream.on('close', () => sockets.delete(upstream));
    client.pause();
    const started = performance.now();
    let timer: NodeJS.Timeout | undefined;
    upstream.once('connect', () => client.resume());
    client.on('data', (chunk: Buffer) => {
      upBytes[index] = (upBytes[index] ?? 0) + chunk.length;
      const drained = upstream.write(chunk);
      const aheadMs = ((upBytes[index] ?? 0) / bytesPerSecond) * 1000 - (performance.now() - started);
      if (!drained || aheadMs > 0) {
        client.pause();
        let waits = (drained ? 0 : 1) + (aheadMs > 0 ? 1 : 0);
        const go = () => {
          waits -= 1;
          if (waits === 0 && !client.destroyed) client.resume();
        };
        if (!drained) upstream.once('drain', go);
        if (aheadMs > 0) timer = setTimeout(go, aheadMs);
      }
    });
    upstream.on('data', (chunk: Buffer) => {
      if (!client.write(chunk)) {
        upstream.pause();
        client.once('drain', () => upstream.resume());
      }
    });
    client.on('end', () => upstream.end());
    upstream.on('end', () => client.end());
    client.on('error', () => {
      clearTimeout(timer);
      upstream.resetAndDestroy();
    });
    upstream.on('error', () => {
      clearTimeout(timer);
      client.resetAndDestroy();
    });
    client.on('close', () => {
      clearTimeout(timer);
      if (!upstream.writableEnded) upstream.destroy();
    });
    upstream.on('close', () => {
      if (!client.writableEnded) client.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, HOST, () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  let closing: Promise<void> | undefined;
  const proxy: SlowProxy = {
    port,
    upBytes,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      })),
  };
  proxies.push(proxy);
  return proxy;
}
