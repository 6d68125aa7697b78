/**
 * One batch of the many-senders scenario: a fresh `ftx recv --serve` into an empty folder,
 * N `ftx send` processes (all at once, or one after another), SIGTERM to the receiver once
 * every sender has exited, then checks: every sender exited 0 and reported its source's
 * digest (ftx's default, as the bench computed it: b3sum for BLAKE3), the receiver logged one
 * transfer-done per file with the right bytes, algorithm and digest, stopped cleanly, and every
 * stored file is byte-identical to its source (`cmp`, after the clock has stopped).
 *
 * The clock starts just before the first sender is spawned (the receiver already listens,
 * as a serving box would) and stops when the last sender exits, so process start-up of
 * every sender is included. The receiver's own view, free of sender start-up, comes from
 * its JSON log: first transfer-start to last transfer-done, on its clock (pino `time`, ms).
 */
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as delay } from 'node:timers/promises';
import { lastJson } from './peers.mjs';
import { runQuiet, startMeasured, waitForLine } from './proc.mjs';
import { MB, median } from './stats.mjs';

const READY_TIMEOUT_MS = 15_000;
/** A sender exits on the receipt; the receiver logs transfer-done as the connection closes, a moment later. */
const LOG_SETTLE_MS = 5_000;
const STOP_TIMEOUT_MS = 15_000;

/**
 * @param mode     'concurrent' (all senders spawned at once) or 'sequential' (each after the last exited)
 * @param files    [{ path, name, size, sha256, digests }] from ensureServeFiles()
 * @param options  { ftxBin, cwd, timeBinary, folder (emptied first, removed after), timeoutMs,
 *                   digest: the algorithm ftx uses by default (senders run without --hash) }
 */
export async function runServeBatch(mode, files, { ftxBin, cwd, timeBinary, folder, timeoutMs, digest }) {
  const totalBytes = files.reduce((sum, file) => sum + file.size, 0);
  const record = { mode, senders: files.length, bytes: totalBytes, valid: false, error: null, problems: [] };
  rmSync(folder, { recursive: true, force: true });
  mkdirSync(folder, { recursive: true });
  const started = [];
  let timer;
  try {
    const receiver = startMeasured(
      process.execPath,
      // --max-conns = N, and the per-address limits too (every sender is 127.0.0.1): the limits are
      // not what this scenario measures; a busy refusal here is a finding.
      [
        ftxBin, 'recv', '--serve', '--insecure', folder, '--port', '0', '--bind', '127.0.0.1', '--log-level', 'info', '--log-format', 'json', '--on-conflict', 'rename',
        '--max-conns', String(files.length), '--per-host-transfers', String(files.length), '--per-host-conns', String(files.length),
      ],
      { cwd, timeBinary },
    );
    started.push(receiver);
    const events = [];
    const otherLines = [];
    receiver.onLine((line) => {
      if (!line.trim()) return;
      try {
        const entry = JSON.parse(line);
        events.push({ ...entry, arrivedAt: performance.now() });
      } catch {
        otherLines.push(line);
      }
    });
    const port = Number((await waitForLine(receiver, /"event":"listening".*?"port":(\d+)/, READY_TIMEOUT_MS, 'ftx recv --serve'))[1]);

    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no result after ${timeoutMs / 1000} s; killed`)), timeoutMs);
    });
    const spawnSender = (file) => {
      const sender = startMeasured(process.execPath, [ftxBin, 'send', file.path, `127.0.0.1:${port}`, '--quiet', '--json', '--name', file.name], { cwd, timeBinary });
      started.push(sender);
      return sender;
    };
    const t0 = performance.now();
    let sent;
    if (mode === 'concurrent') {
      const senders = files.map(spawnSender);
      sent = await Promise.race([Promise.all(senders.map((sender) => sender.done)), timeout]);
    } else {
      sent = [];
      for (const file of files) sent.push(await Promise.race([spawnSender(file).done, timeout]));
    }
    const tEnd = Math.max(...sent.map((result) => result.endedAt));

    // Let the receiver log the last connections' ends before asking it to stop.
    const settled = () => events.filter((entry) => entry.event === 'transfer-done' || entry.event === 'transfer-failed').length >= files.length;
    for (const deadline = Date.now() + LOG_SETTLE_MS; !settled() && Date.now() < deadline; ) await delay(10);
    if (!receiver.signal('SIGTERM')) throw new Error('could not send SIGTERM to the receiver');
    const stopTimer = setTimeout(() => receiver.kill(), STOP_TIMEOUT_MS);
    const received = await receiver.done;
    clearTimeout(stopTimer);

    record.wallSeconds = (tEnd - t0) / 1000;
    record.mbps = totalBytes / MB / record.wallSeconds;
    record.receiver = {
      exitCode: received.code,
      signal: received.signal,
      cpuSeconds: received.cpuSeconds,
      peakRssBytes: received.peakRssBytes,
      meter: received.meter,
      otherLines: otherLines.slice(-20),
    };
    record.sendersSummary = {
      cpuSeconds: sum(sent.map((result) => result.cpuSeconds)),
      maxPeakRssBytes: Math.max(...sent.map((result) => result.peakRssBytes ?? 0)) || null,
      medianWallSeconds: median(sent.map((result) => result.wallSeconds)),
    };
    Object.assign(record, receiverView(events, t0, totalBytes));
    record.problems = checkBatch(files, sent, received, events, digest);
    record.stored = await verifyStored(files, folder, events, record.problems, digest);
    if (record.problems.length) throw new Error(record.problems.slice(0, 3).join('; ') + (record.problems.length > 3 ? `; and ${record.problems.length - 3} more` : ''));
    record.valid = true;
  } catch (error) {
    record.error = error.message;
  } finally {
    clearTimeout(timer);
    for (const proc of started) proc.kill();
    rmSync(folder, { recursive: true, force: true });
  }
  return record;
}

/**
 * What the receiver's log says about the batch, on its own clock (pino `time`, ms):
 * - its busy rate: bytes over the time at least one transfer was in flight (transfer-start
 *   to transfer-done), so the time spent waiting for senders to start is left out, whether
 *   before the first connection (at once) or between connections (one after another);
 * - its span: first transfer-start to last transfer-done (gaps included);
 * - the most transfers in flight at once;
 * and, on the bench's clock, when the first and last sender got through to it (seconds
 * after the first spawn: the cost of starting N node processes shows up here).
 */
function receiverView(events, t0, totalBytes) {
  const starts = events.filter((entry) => entry.event === 'transfer-start');
  const dones = events.filter((entry) => entry.event === 'transfer-done');
  const startTimes = dones.map((done) => starts.find((start) => start.id === done.id)?.time ?? done.time - done.seconds * 1000);
  const spanSeconds = dones.length ? (Math.max(...dones.map((done) => done.time)) - Math.min(...startTimes)) / 1000 : null;
  // Sweep start (+1) and end (-1) instants; at equal times an end goes first.
  const edges = [...startTimes.map((time) => [time, 1]), ...dones.map((done) => [done.time, -1])].sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let inFlight = 0;
  let peakInFlight = 0;
  let busyMs = 0;
  let previous = 0;
  for (const [time, step] of edges) {
    if (inFlight > 0) busyMs += time - previous;
    previous = time;
    peakInFlight = Math.max(peakInFlight, (inFlight += step));
  }
  const arrivals = starts.map((start) => (start.arrivedAt - t0) / 1000);
  return {
    receiverSpanSeconds: spanSeconds,
    receiverSpanMbps: spanSeconds ? totalBytes / MB / spanSeconds : null,
    receiverBusySeconds: busyMs / 1000,
    receiverMbps: busyMs > 0 ? totalBytes / MB / (busyMs / 1000) : null,
    transferSecondsSum: sum(dones.map((done) => done.seconds)),
    peakInFlight,
    firstConnectSeconds: arrivals.length ? Math.min(...arrivals) : null,
    lastConnectSeconds: arrivals.length ? Math.max(...arrivals) : null,
    busyRefusals: events.filter((entry) => entry.event === 'transfer-failed' && entry.reason === 'busy').length,
    receiverEvents: countBy(events.map((entry) => entry.event ?? `level ${entry.level}`)),
  };
}

/** Exit codes, summaries and log lines; returns a list of problems (empty when all is well). */
function checkBatch(files, sent, received, events, digest) {
  const problems = [];
  files.forEach((file, index) => {
    const result = sent[index];
    if (result.code !== 0) {
      const busy = /busy/i.test(result.stderr) ? ' (refused as busy)' : '';
      problems.push(`sender ${file.name} exited ${result.code ?? result.signal}${busy}: ${result.stderr.trim().slice(-200)}`);
      return;
    }
    const summary = lastJson(result.stdout);
    if (summary?.hash !== digest) problems.push(`sender ${file.name} used ${summary?.hash ?? 'no digest'}, not ${digest}`);
    else if (summary.digest !== file.digests[digest]) problems.push(`sender ${file.name} reported ${digest} ${summary.digest ?? 'none'}, the source's is ${file.digests[digest]}`);
  });
  if (received.code !== 0) problems.push(`receiver exited ${received.code ?? received.signal} after SIGTERM: ${received.stderr.trim().slice(-300)}`);
  for (const failed of events.filter((entry) => entry.event === 'transfer-failed')) problems.push(`receiver: transfer #${failed.id} failed: ${failed.code} ${failed.reason ?? ''} ${failed.msg ?? ''}`.trim());
  for (const entry of events.filter((line) => line.level >= 40 && line.event !== 'transfer-failed')) problems.push(`receiver logged ${entry.event ?? entry.code ?? 'level ' + entry.level}: ${entry.msg ?? ''}`);
  const stopped = events.find((entry) => entry.event === 'stopped');
  if (!stopped) problems.push('receiver never logged "stopped"');
  else if (stopped.stored !== files.length || stopped.failed !== 0 || stopped.cut !== 0) problems.push(`receiver stopped with ${stopped.stored} stored, ${stopped.failed} failed, ${stopped.cut} cut; expected ${files.length}, 0, 0`);
  return problems;
}

/**
 * Every stored file byte-compared with its source (`cmp`), matched by the name its sender
 * gave; the receiver's own transfer-done line must name the algorithm and give the source's
 * digest as the bench computed it. Anything else in the folder (a renamed copy, a leftover
 * temp file) is a problem.
 */
async function verifyStored(files, folder, events, problems, digest) {
  const dones = new Map(events.filter((entry) => entry.event === 'transfer-done').map((entry) => [entry.name, entry]));
  let verified = 0;
  for (const file of files) {
    const done = dones.get(file.name);
    if (!done) {
      problems.push(`no transfer-done for ${file.name}`);
      continue;
    }
    if (done.bytes !== file.size || done.hash !== digest || done.digest !== file.digests[digest]) {
      problems.push(`receiver logged ${file.name} as ${done.bytes} bytes, ${done.hash} ${done.digest}; the source is ${file.size} bytes, ${digest} ${file.digests[digest]}`);
    }
    const compared = await runQuiet('cmp', [file.path, join(folder, file.name)]);
    if (compared.code !== 0) problems.push(`stored ${file.name} differs from its source: ${(compared.stdout + compared.stderr).trim()}`);
    else verified += 1;
  }
  const expected = new Set(files.map((file) => file.name));
  const extra = readdirSync(folder).filter((name) => !expected.has(name));
  if (extra.length) problems.push(`unexpected entries in the serve folder: ${extra.slice(0, 5).join(', ')}${extra.length > 5 ? ', ...' : ''}`);
  return { verified, of: files.length, method: `cmp of each stored file against its source; ${digest} reported by both ends checked against the bench's own` };
}

function sum(values) {
  const finite = values.filter((value) => typeof value === 'number' && Number.isFinite(value));
  return finite.length ? finite.reduce((total, value) => total + value, 0) : null;
}

function countBy(values) {
  const counts = {};
  for (const value of values) counts[value] = (counts[value] ?? 0) + 1;
  return counts;
}
