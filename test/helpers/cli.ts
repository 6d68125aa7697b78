/** Runs the real CLI (bin/ftx.js, built into dist/ by `npm test`) as a child process. */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const FTX_BIN = fileURLToPath(new URL('../../bin/ftx.js', import.meta.url));

export interface CliRun {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** stderr's JSON log lines, parsed (non-JSON lines are skipped). */
  logs: () => Array<Record<string, unknown>>;
  /** Resolves with the exit code (or 128 + signal number when killed by a signal). */
  exit: Promise<number>;
  /** Resolves with the first log record for which `match` is true. */
  waitForLog: (match: (record: Record<string, unknown>) => boolean, timeoutMs?: number) => Promise<Record<string, unknown>>;
}

const SIGNAL_NUMBERS: Record<string, number> = { SIGINT: 2, SIGKILL: 9, SIGTERM: 15 };

/**
 * `prefix`: a command to run the CLI under (e.g. ['prlimit', '--nofile=48:48']);
 * `bin`: another ftx's bin/ftx.js (an installed copy of the package).
 */
export function runCli(args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; prefix?: string[]; bin?: string } = {}): CliRun {
  const [command, ...commandArgs] = [...(options.prefix ?? []), process.execPath, options.bin ?? FTX_BIN, ...args] as [string, ...string[]];
  const child = spawn(command, commandArgs, {
    cwd: options.cwd,
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  const listeners = new Set<() => void>();
  child.stdout?.setEncoding('utf8').on('data', (text: string) => (stdout += text));
  child.stderr?.setEncoding('utf8').on('data', (text: string) => {
    stderr += text;
    for (const listener of listeners) listener();
  });
  const exit = new Promise<number>((resolve) => {
    child.on('close', (code, signal) => resolve(code ?? 128 + (SIGNAL_NUMBERS[signal ?? ''] ?? 0)));
  });
  const logs = () =>
    stderr
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  const waitForLog = (match: (record: Record<string, unknown>) => boolean, timeoutMs = 10_000) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const check = () => {
        const found = logs().find(match);
        if (found) {
          cleanup();
          resolve(found);
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`no matching log line within ${timeoutMs} ms; stderr was:\n${stderr}`));
      }, timeoutMs);
      const onExit = () => {
        check();
        cleanup();
        reject(new Error(`ftx exited before the expected log line; stderr was:\n${stderr}`));
      };
      const cleanup = () => {
        clearTimeout(timer);
        listeners.delete(check);
        child.removeListener('close', onExit);
      };
      listeners.add(check);
      child.once('close', onExit);
      check();
    });
  return { child, stdout: () => stdout, stderr: () => stderr, logs, exit, waitForLog };
}

/** Starts `ftx recv` on a free loopback port and resolves once it listens. */
export async function startRecvCli(args: string[], options: { cwd?: string; bind?: string; bin?: string } = {}): Promise<CliRun & { port: number }> {
  const run = runCli(['recv', ...args, '--port', '0', '--bind', options.bind ?? '127.0.0.1', '--json'], options);
  const listening = await run.waitForLog((record) => record.event === 'listening');
  return { ...run, port: listening.port as number };
}

/** The --json summary line from stdout. */
export function summaryOf(run: CliRun): Record<string, unknown> {
  const line = run.stdout().trim().split('\n').at(-1) ?? '';
  return JSON.parse(line) as Record<string, unknown>;
}
