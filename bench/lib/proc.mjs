/**
 * Child processes with their cost: wall time, CPU seconds (user + sys) and peak RSS.
 *
 * Preferred meter: GNU time (`/usr/bin/time -f ... -o FILE`), which reads the child's
 * rusage when it is reaped, so nothing is missed at exit. Writing its report to a file
 * keeps the child's own stderr clean (we parse ftx's JSON log lines from it).
 * Fallback when GNU time is unavailable: sample /proc/PID/{stat,status} every 20 ms;
 * VmHWM is a high-water mark so peak RSS is exact, but the last <= 20 ms of CPU time
 * can be missed. Each result says which meter produced it.
 *
 * Every child runs in its own process group (detached) so that a stuck transfer can be
 * killed with everything it started, by group id, and nothing else. With `limitSeconds`
 * the whole chain also runs under `timeout -k`, so it is bounded even if the bench itself
 * dies before its own timer fires (timeout leads the group and signals all of it).
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

/** Kernel clock ticks per second for /proc/PID/stat; 100 on every Linux we target. */
const CLOCK_TICKS_PER_SECOND = 100;
const PROC_SAMPLE_MS = 20;
/** `timeout -k`: seconds between its SIGTERM and the SIGKILL that follows if the group lingers. */
const LIMIT_KILL_AFTER_SECONDS = 5;
/** Only the tail of a child's output is kept: enough for a JSON summary or an error. */
const KEEP_OUTPUT_CHARS = 64 * 1024;

const live = new Set();

let meterCounter = 0;

/**
 * Starts `command args` and measures it.
 * stdin/stdout: a path (opened for the child, like a shell redirect), or 'ignore';
 * stdout defaults to a pipe whose text is collected. stderr is always collected.
 * limitSeconds: run under `timeout -k 5 LIMIT` (outermost, so GNU time still meters the command).
 * Returns { pid, startedAt, onLine(fn), kill(), signal(name), done } where `done` resolves to
 * { code, signal, startedAt, endedAt, wallSeconds, userSeconds, sysSeconds, cpuSeconds,
 *   peakRssBytes, meter, stdout, stderr }.
 */
export function startMeasured(command, args, { timeBinary, stdin = 'ignore', stdout = 'pipe', cwd, env, limitSeconds } = {}) {
  const opened = [];
  const stdioFor = (spec, flags) => {
    if (spec === 'ignore' || spec === 'pipe') return spec;
    const fd = openSync(spec, flags);
    opened.push(fd);
    return fd;
  };
  const stdio = [stdioFor(stdin, 'r'), stdioFor(stdout, 'w'), 'pipe'];

  let reportPath;
  let file = command;
  let argv = args;
  if (timeBinary) {
    reportPath = join(tmpdir(), `ftx-bench-time-${process.pid}-${++meterCounter}.txt`);
    file = timeBinary;
    argv = ['-f', '%e %U %S %M', '-o', reportPath, command, ...args];
  }
  if (limitSeconds) {
    argv = ['-k', String(LIMIT_KILL_AFTER_SECONDS), String(Math.ceil(limitSeconds)), file, ...argv];
    file = 'timeout';
  }
  /** Wrappers between the spawned process and the measured command (timeout, GNU time). */
  const wrappers = (limitSeconds ? 1 : 0) + (timeBinary ? 1 : 0);

  const startedAt = performance.now();
  const child = spawn(file, argv, { cwd, env, stdio, detached: true });
  for (const fd of opened) closeSync(fd); // The child has its own copies now.
  live.add(child);

  let stdoutText = '';
  let stderrText = '';
  const lineListeners = [];
  const feed = (streamName) => {
    let partial = '';
    return (chunk) => {
      const text = chunk.toString('utf8');
      if (streamName === 'stdout') stdoutText = (stdoutText + text).slice(-KEEP_OUTPUT_CHARS);
      else stderrText = (stderrText + text).slice(-KEEP_OUTPUT_CHARS);
      if (lineListeners.length === 0) return;
      const lines = (partial + text).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) for (const listener of lineListeners) listener(line, streamName);
    };
  };
  child.stdout?.on('data', feed('stdout'));
  child.stderr.on('data', feed('stderr'));

  const sampler = timeBinary ? undefined : sampleProc(child.pid);

  const done = new Promise((resolve) => {
    let spawnError;
    child.once('error', (error) => {
      spawnError = error;
    });
    // 'close', not 'exit': by then stdout/stderr are fully read.
    child.once('close', (code, signal) => {
      const endedAt = performance.now();
      live.delete(child);
      const usage = timeBinary ? readTimeReport(reportPath) : sampler.stop();
      resolve({
        code: spawnError ? -1 : code,
        signal,
        startedAt,
        endedAt,
        wallSeconds: (endedAt - startedAt) / 1000,
        ...usage,
        cpuSeconds: usage.userSeconds === null ? null : usage.userSeconds + usage.sysSeconds,
        meter: timeBinary ? 'gnu-time' : 'proc-sampling',
        stdout: stdoutText,
        stderr: spawnError ? `${stderrText}${spawnError.message}` : stderrText,
      });
    });
  });

  return {
    pid: child.pid,
    startedAt,
    done,
    /** Calls fn(line, 'stdout' | 'stderr') for every complete line from now on. */
    onLine(fn) {
      lineListeners.push(fn);
    },
    kill() {
      killGroup(child);
    },
    /**
     * Sends `signal` to the measured command itself. Under GNU time that is time's child:
     * time would die of SIGTERM without reaping the child or writing its report. Under
     * timeout too, one level further down.
     */
    signal(signal) {
      let pid = child.pid;
      for (let level = 0; level < wrappers && pid !== undefined; level++) pid = childOf(pid);
      if (pid === undefined) return false;
      try {
        process.kill(pid, signal);
        return true;
      } catch {
        return false; // Already gone.
      }
    },
  };
}

/** The one child of `pid` (GNU time runs exactly one), from /proc; undefined if none yet. */
function childOf(pid) {
  try {
    const first = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/)[0];
    return first ? Number(first) : undefined;
  } catch {
    return undefined;
  }
}

/** Resolves with the first line matching `pattern` (its match array); rejects on exit or timeout. */
export function waitForLine(measured, pattern, timeoutMs, what) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what}: no "${pattern}" within ${timeoutMs / 1000} s`)), timeoutMs);
    measured.onLine((line) => {
      const match = pattern.exec(line);
      if (match) {
        clearTimeout(timer);
        resolve(match);
      }
    });
    measured.done.then((result) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited (code ${result.code}) before it was ready: ${result.stderr.trim().slice(-500)}`));
    });
  });
}

/** Kills every child still running (on Ctrl-C or a failed run). */
export function killAll() {
  for (const child of live) killGroup(child);
}

function killGroup(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    // Already gone.
  }
}

function readTimeReport(path) {
  try {
    // GNU time may write "Command exited with non-zero status N" first; the format line is last.
    const lines = readFileSync(path, 'utf8').trim().split('\n');
    const [, user, sys, maxRssKiB] = (lines.at(-1) ?? '').trim().split(/\s+/).map(Number);
    if ([user, sys, maxRssKiB].some((value) => !Number.isFinite(value))) throw new Error('unreadable');
    return { userSeconds: user, sysSeconds: sys, peakRssBytes: maxRssKiB * 1024 };
  } catch {
    return { userSeconds: null, sysSeconds: null, peakRssBytes: null };
  } finally {
    rmSync(path, { force: true });
  }
}

/** The /proc fallback: last readable sample wins (the process vanishes at exit). */
function sampleProc(pid) {
  const last = { userSeconds: null, sysSeconds: null, peakRssBytes: null };
  const sample = () => {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      const hwm = /VmHWM:\s+(\d+) kB/.exec(status);
      last.userSeconds = Number(fields[11]) / CLOCK_TICKS_PER_SECOND;
      last.sysSeconds = Number(fields[12]) / CLOCK_TICKS_PER_SECOND;
      if (hwm) last.peakRssBytes = Math.max(last.peakRssBytes ?? 0, Number(hwm[1]) * 1024);
    } catch {
      // Exited between samples.
    }
  };
  sample();
  const timer = setInterval(sample, PROC_SAMPLE_MS);
  return {
    stop() {
      clearInterval(timer);
      return { ...last };
    },
  };
}

/** Runs a command to completion and returns { code, stdout, stderr } (for setup steps). */
export function runQuiet(command, args, options = {}) {
  return new Promise((resolve) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.once('error', (error) => resolve({ code: -1, stdout, stderr: String(error.message) }));
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}
