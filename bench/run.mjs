#!/usr/bin/env node
/**
 * `npm run bench`: ftx against netcat, the classic tutorial and a bare Node pipe, on
 * loopback, with the targets of issue #5 printed next to each figure.
 *
 * Scenarios (each can be chosen with --only / left out with --skip):
 *   large    one large random file, every peer, several rounds; peers alternate within
 *            a round (order rotated each round) and ratios are taken within a round,
 *            because this machine is shared and noisy. File mode writes to /dev/shm
 *            (tmpfs: the disk is not what we measure); sink mode writes to /dev/null.
 *   memory   ftx sender and receiver peak RSS for 64 MiB, 1 GiB and 4 GiB files.
 *   slow     ftx through a proxy that forwards ~20 MB/s: the sender's RSS proves backpressure.
 *   startup  `ftx --help` and `ftx send` to a closed port, against `node -e 0`.
 *   serve    N senders (default 32, each its own file) into one `ftx recv --serve`, all at
 *            once against the same files one after another, each batch into a fresh
 *            receiver; aggregate MB/s and the receiver's peak RSS; every stored file hashed.
 *
 * Results: a table on stdout, everything (every run) in bench/results/<timestamp>.json.
 * Generated data lives in bench/data/ and is reused. Run `node bench/run.mjs --help`.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, hostname, release, tmpdir, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { summarizeProfile } from './lib/cpuprofile.mjs';
import { definePeers, freePort, lastJson } from './lib/peers.mjs';
import { killAll, startMeasured, waitForLine } from './lib/proc.mjs';
import { fixed, mb, ms, ratio, spread, table } from './lib/report.mjs';
import { runServeBatch } from './lib/serve.mjs';
import { availableMemoryBytes, ensureDataFile, ensureServeFiles, ensureTool, freeBytes, isGnuTime, isOpenbsdNetcat, missingServeBytes, parseSize, sizeLabel, warmCache } from './lib/setup.mjs';
import { MB, median, summarize } from './lib/stats.mjs';
import { runTransfer } from './lib/transfer.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const FTX_BIN = join(ROOT, 'bin', 'ftx.js');
const GIB = 1024 ** 3;
const SCENARIOS = ['large', 'memory', 'slow', 'startup', 'serve'];

/** Issue #5's targets. */
const TARGET = {
  ftxVsNcFile: 1.0,
  ftxVsNcSink: 0.9,
  ftxVsClassic: 3.5,
  peakRssBytes: 100 * MB,
  helpVsNode: 2.0,
  /** 32 senders at once against the same bytes sent one after another (same round). */
  serveVsSequential: 0.9,
  serveRssBytes: 200 * MB,
  serveSenders: 32,
};
/**
 * "Flat" RSS across file sizes: the largest file's peak may exceed the smallest's by at
 * most this much. Some growth is V8 settling its heap, not buffering the file: a file
 * held in memory would show up as hundreds of MB, not a few.
 */
const FLAT_TOLERANCE_BYTES = 16 * MB;

const HELP = `Usage: npm run bench -- [options]      (or: node bench/run.mjs [options] after npm run build)

  --size SIZE          large-file size (default 1G; e.g. 256M for a quick run)
  --rounds N           rounds of the large-file and serve scenarios (default 5)
  --mem-sizes LIST     file sizes for the memory scenario (default 64M,1G,4G)
  --no-4g              leave 4G out of the memory scenario (it is left out anyway without the space)
  --mem-rounds N       transfers per size in the memory scenario (default 1)
  --slow-size SIZE     file sent through the throttling proxy (default 256M)
  --slow-rate MBPS     proxy rate in MB/s (default 20)
  --startup-runs N     runs of each start-up command (default 10)
  --senders N          serve scenario: senders, each with its own file (default 32)
  --serve-bytes SIZE   serve scenario: total bytes, split evenly among the senders (default 1G)
  --only LIST          scenarios to run: ${SCENARIOS.join(',')}
  --skip LIST          scenarios to leave out
  --profile            also run one ftx transfer under node --cpu-prof and list top self time
  --profile-dir DIR    where the .cpuprofile files go (default: a new folder in ${tmpdir()})
  --out-dir DIR        where received files are written (default /dev/shm/ftx-bench-PID)
  -h, --help           this text
`;

function parseOptions(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      size: { type: 'string', default: '1G' },
      rounds: { type: 'string', default: '5' },
      'mem-sizes': { type: 'string', default: '64M,1G,4G' },
      'no-4g': { type: 'boolean', default: false },
      'mem-rounds': { type: 'string', default: '1' },
      'slow-size': { type: 'string', default: '256M' },
      'slow-rate': { type: 'string', default: '20' },
      'startup-runs': { type: 'string', default: '10' },
      senders: { type: 'string', default: '32' },
      'serve-bytes': { type: 'string', default: '1G' },
      only: { type: 'string' },
      skip: { type: 'string' },
      profile: { type: 'boolean', default: false },
      'profile-dir': { type: 'string' },
      'out-dir': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  const list = (text) => (text ? text.split(',').map((item) => item.trim()).filter(Boolean) : []);
  const positive = (text, name) => {
    const value = Number(text);
    if (!Number.isInteger(value) || value < 1) throw new Error(`--${name} must be a whole number >= 1, not "${text}"`);
    return value;
  };
  const only = list(values.only);
  const skip = list(values.skip);
  for (const name of [...only, ...skip]) {
    if (!SCENARIOS.includes(name)) throw new Error(`unknown scenario "${name}"; choose from ${SCENARIOS.join(', ')}`);
  }
  const senders = positive(values.senders, 'senders');
  const serveBytes = parseSize(values['serve-bytes']);
  if (serveBytes < senders) throw new Error(`--serve-bytes ${values['serve-bytes']} cannot be split among ${senders} senders`);
  const slowRate = Number(values['slow-rate']);
  if (!(slowRate > 0)) throw new Error(`--slow-rate must be a positive number of MB/s, not "${values['slow-rate']}"`);
  return {
    help: values.help,
    size: parseSize(values.size),
    rounds: positive(values.rounds, 'rounds'),
    memSizes: list(values['mem-sizes']).map(parseSize).filter((size) => !(values['no-4g'] && size >= 4 * GIB)),
    memRounds: positive(values['mem-rounds'], 'mem-rounds'),
    slowSize: parseSize(values['slow-size']),
    slowRate,
    startupRuns: positive(values['startup-runs'], 'startup-runs'),
    senders,
    serveBytes,
    scenarios: new Set((only.length ? only : SCENARIOS).filter((name) => !skip.includes(name))),
    profile: values.profile,
    profileDir: values['profile-dir'],
    outDir: values['out-dir'],
  };
}

const log = (message) => process.stderr.write(`bench: ${message}\n`);

/** Generous: a stuck run is killed, never waited on forever. 5 MB/s is far below any peer. */
const transferTimeoutMs = (bytes) => 60_000 + (bytes / (5 * MB)) * 1000;

// ---------------------------------------------------------------- scenarios

async function runLarge(context) {
  const { peers, options, outDir } = context;
  const source = await ensureDataFile(context.dataDir, options.size, log);
  await warmCache(source.path);
  const plan = peers.filter((peer) => !peer.skip).flatMap((peer) => peer.modes.map((mode) => ({ peer, mode })));
  const skipped = peers.filter((peer) => peer.skip).map((peer) => ({ peer: peer.id, reason: peer.skip }));
  for (const { peer, reason } of skipped) log(`skipping ${peer}: ${reason}`);

  const runs = [];
  for (let round = 1; round <= options.rounds; round++) {
    // Rotate the order so no peer always runs first (after a pause) or last.
    const shift = (round - 1) % plan.length;
    const order = [...plan.slice(shift), ...plan.slice(0, shift)];
    for (const { peer, mode } of order) {
      const run = await runTransfer(peer, mode, source, { out: join(outDir, `large-${peer.id}.bin`), timeoutMs: transferTimeoutMs(source.size) });
      run.round = round;
      runs.push(run);
      log(`large ${round}/${options.rounds}  ${`${peer.id} ${mode}`.padEnd(12)} ${describeRun(run)}`);
    }
  }

  const groups = plan.map(({ peer, mode }) => {
    const mine = runs.filter((run) => run.peer === peer.id && run.mode === mode);
    const valid = mine.filter((run) => run.valid);
    const ratioTo = (otherPeer, otherMode = mode) => {
      const ratios = [];
      for (const run of valid) {
        const other = runs.find((candidate) => candidate.valid && candidate.round === run.round && candidate.peer === otherPeer && candidate.mode === otherMode);
        if (other) ratios.push(run.mbps / other.mbps);
      }
      return ratios.length ? { ...summarize(ratios), perRound: ratios } : null;
    };
    return {
      peer: peer.id,
      label: peer.label,
      mode,
      runs: mine.length,
      valid: valid.length,
      errors: mine.filter((run) => !run.valid).map((run) => `round ${run.round}: ${run.error}`),
      mbps: summarize(valid.map((run) => run.mbps)),
      wallSeconds: summarize(valid.map((run) => run.wallSeconds)),
      sender: sideSummary(valid.map((run) => run.sender)),
      receiver: sideSummary(valid.map((run) => run.receiver)),
      vsNc: peer.id === 'nc' ? null : ratioTo('nc'),
      vsClassic: peer.id.startsWith('ftx') ? ratioTo('classic', 'file') : null,
      vsNode: peer.id.startsWith('ftx') ? ratioTo('node', 'file') : null,
      selfReportedMbps: peer.id.startsWith('ftx') ? summarize(valid.map((run) => run.selfReport?.recvMbps)) : null,
    };
  });
  return { source: { path: source.path, bytes: source.size, sha256: source.sha256 }, rounds: options.rounds, skipped, groups, runs };
}

async function runMemory(context) {
  const { options, outDir } = context;
  const ftx = context.peers.find((peer) => peer.id === 'ftx');
  const sizes = [];
  for (const size of options.memSizes) {
    const lacking = lackingSpace(context, size);
    if (lacking) {
      log(`memory: skipping ${sizeLabel(size)}: ${lacking}`);
      sizes.push({ size, label: sizeLabel(size), skipped: lacking });
      continue;
    }
    const source = await ensureDataFile(context.dataDir, size, log);
    await warmCache(source.path);
    const runs = [];
    for (let round = 1; round <= options.memRounds; round++) {
      const run = await runTransfer(ftx, 'file', source, { out: join(outDir, 'memory-ftx.bin'), timeoutMs: transferTimeoutMs(size) });
      runs.push(run);
      log(`memory ${sizeLabel(size).padEnd(4)} ${round}/${options.memRounds}  ${describeRun(run)}`);
    }
    const valid = runs.filter((run) => run.valid);
    sizes.push({
      size,
      label: sizeLabel(size),
      valid: valid.length,
      errors: runs.filter((run) => !run.valid).map((run) => run.error),
      mbps: summarize(valid.map((run) => run.mbps)),
      senderPeakRssBytes: maxOf(valid.map((run) => run.sender.peakRssBytes)),
      receiverPeakRssBytes: maxOf(valid.map((run) => run.receiver.peakRssBytes)),
      runs,
    });
  }
  const measured = sizes.filter((entry) => !entry.skipped && entry.valid > 0);
  const flatness = (key) => {
    if (measured.length < 2) return null;
    const values = measured.map((entry) => entry[key]);
    const growth = values.at(-1) - values[0];
    return { smallest: values[0], largest: values.at(-1), growthBytes: growth, flat: growth <= FLAT_TOLERANCE_BYTES };
  };
  return { sizes, flatToleranceBytes: FLAT_TOLERANCE_BYTES, senderFlat: flatness('senderPeakRssBytes'), receiverFlat: flatness('receiverPeakRssBytes') };
}

async function runSlow(context) {
  const { options, outDir } = context;
  const lacking = lackingSpace(context, options.slowSize);
  if (lacking) return { skipped: lacking };
  const ftx = context.peers.find((peer) => peer.id === 'ftx');
  const source = await ensureDataFile(context.dataDir, options.slowSize, log);
  await warmCache(source.path);
  const via = async (receiverPort) => {
    const proc = startMeasured(process.execPath, [join(ROOT, 'bench', 'throttle-proxy.mjs'), '--to', `127.0.0.1:${receiverPort}`, '--rate', String(options.slowRate)], { cwd: ROOT });
    const match = await waitForLine(proc, /^listening on (\d+)/, 15_000, 'throttle-proxy');
    return { proc, port: Number(match[1]) };
  };
  const expectedSeconds = options.slowSize / (options.slowRate * MB);
  log(`slow: sending ${sizeLabel(options.slowSize)} through a ${options.slowRate} MB/s proxy (about ${expectedSeconds.toFixed(0)} s)...`);
  const run = await runTransfer(ftx, 'file', source, { out: join(outDir, 'slow-ftx.bin'), timeoutMs: 60_000 + expectedSeconds * 3000, via });
  log(`slow  ${describeRun(run)}`);
  return { bytes: options.slowSize, rateMbps: options.slowRate, run };
}

async function runStartup(context) {
  const { options } = context;
  const closedPort = await freePort();
  const sendFile = join(ROOT, 'package.json');
  const commands = [
    { id: 'node -e 0', argv: ['-e', '0'], expectCode: 0 },
    { id: 'ftx --help', argv: [FTX_BIN, '--help'], expectCode: 0 },
    { id: 'ftx send (refused)', argv: [FTX_BIN, 'send', sendFile, `127.0.0.1:${closedPort}`, '--json', '--quiet'], expectCode: 'nonzero' },
  ];
  const samples = new Map(commands.map((command) => [command.id, []]));
  const problems = [];
  // One unmeasured warm-up each (page cache, compile cache), then interleaved runs.
  for (let run = 0; run <= options.startupRuns; run++) {
    const shift = run % commands.length;
    for (const command of [...commands.slice(shift), ...commands.slice(0, shift)]) {
      const result = await timeCommand(process.execPath, command.argv);
      const expected = command.expectCode === 0 ? result.code === 0 : result.code !== 0 && result.code !== null;
      if (!expected) problems.push(`${command.id}: exit ${result.code}: ${result.stderr.trim().slice(-200)}`);
      if (command.id.startsWith('ftx send') && run === 0) command.sample = lastJson(result.stdout);
      if (run > 0) samples.get(command.id).push(result.seconds);
    }
  }
  const rows = commands.map((command) => ({ id: command.id, seconds: summarize(samples.get(command.id)), samples: samples.get(command.id) }));
  const node = samples.get('node -e 0');
  // Ratio within a round, then the median of ratios, as for throughput.
  const ratioFor = (id) => median(samples.get(id).map((seconds, index) => seconds / node[index]));
  return {
    runs: options.startupRuns,
    commands: rows,
    helpVsNode: ratioFor('ftx --help'),
    sendRefusedVsNode: ratioFor('ftx send (refused)'),
    refusedSummary: commands[2].sample ?? null,
    problems: [...new Set(problems)],
  };
}

async function runServe(context) {
  const { options, outDir } = context;
  const senders = options.senders;
  const fileSize = Math.floor(options.serveBytes / senders);
  const totalBytes = fileSize * senders;
  const describe = { senders, fileSize, totalBytes, rounds: options.rounds };
  const lacking = lackingSpace(context, totalBytes, missingServeBytes(context.dataDir, senders, fileSize));
  if (lacking) return { ...describe, skipped: lacking };
  const files = await ensureServeFiles(context.dataDir, senders, fileSize, log);
  for (const file of files) await warmCache(file.path);

  const runs = [];
  for (let round = 1; round <= options.rounds; round++) {
    // Alternate which batch goes first, so neither always follows a pause (or the other's tmpfs churn).
    const order = round % 2 ? ['concurrent', 'sequential'] : ['sequential', 'concurrent'];
    for (const mode of order) {
      const run = await runServeBatch(mode, files, {
        ftxBin: FTX_BIN,
        cwd: ROOT,
        timeBinary: context.timeBinary,
        folder: join(outDir, `serve-${mode}`),
        timeoutMs: transferTimeoutMs(totalBytes) + senders * 5_000,
      });
      run.round = round;
      runs.push(run);
      log(`serve ${round}/${options.rounds}  ${mode.padEnd(10)} ${describeServeRun(run)}`);
    }
  }

  const modes = ['concurrent', 'sequential'].map((mode) => {
    const mine = runs.filter((run) => run.mode === mode);
    const valid = mine.filter((run) => run.valid);
    return {
      mode,
      runs: mine.length,
      valid: valid.length,
      errors: mine.filter((run) => !run.valid).map((run) => `round ${run.round}: ${run.error}`),
      mbps: summarize(valid.map((run) => run.mbps)),
      wallSeconds: summarize(valid.map((run) => run.wallSeconds)),
      receiverMbps: summarize(valid.map((run) => run.receiverMbps)),
      receiverSpanMbps: summarize(valid.map((run) => run.receiverSpanMbps)),
      peakInFlight: summarize(valid.map((run) => run.peakInFlight)),
      firstConnectSeconds: summarize(valid.map((run) => run.firstConnectSeconds)),
      lastConnectSeconds: summarize(valid.map((run) => run.lastConnectSeconds)),
      sendersCpuSeconds: summarize(valid.map((run) => run.sendersSummary.cpuSeconds)),
      senderPeakRssBytes: maxOf(valid.map((run) => run.sendersSummary.maxPeakRssBytes)),
      receiverCpuSeconds: summarize(valid.map((run) => run.receiver.cpuSeconds)),
      // Every run that got as far as stopping the receiver counts for memory, valid or not.
      receiverPeakRssBytes: maxOf(mine.map((run) => run.receiver?.peakRssBytes)),
      busyRefusals: mine.reduce((total, run) => total + (run.busyRefusals ?? 0), 0),
    };
  });
  const ratioOf = (key) => {
    const ratios = [];
    for (let round = 1; round <= options.rounds; round++) {
      const [concurrent, sequential] = ['concurrent', 'sequential'].map((mode) => runs.find((run) => run.valid && run.round === round && run.mode === mode));
      if (concurrent?.[key] && sequential?.[key]) ratios.push(concurrent[key] / sequential[key]);
    }
    return ratios.length ? { ...summarize(ratios), perRound: ratios } : null;
  };
  return { ...describe, files: files.map(({ name, size, sha256 }) => ({ name, size, sha256 })), modes, concurrentVsSequential: ratioOf('mbps'), recvBusyRatio: ratioOf('receiverMbps'), runs };
}

async function runProfile(context) {
  const { options, outDir } = context;
  const source = await ensureDataFile(context.dataDir, options.size, log);
  const profileDir = options.profileDir ?? join(tmpdir(), `ftx-bench-profile-${timestamp()}`);
  const sides = { recv: join(profileDir, 'recv'), send: join(profileDir, 'send') };
  for (const dir of Object.values(sides)) mkdirSync(dir, { recursive: true });
  // The same ftx peer, with node --cpu-prof in front of each side.
  const profiled = {
    id: 'ftx',
    async startReceiver(out) {
      const proc = startMeasured(process.execPath, ['--cpu-prof', '--cpu-prof-dir', sides.recv, FTX_BIN, 'recv', out, '--port', '0', '--json', '--force', '--log-format', 'json', '--log-level', 'info'], { cwd: ROOT, timeBinary: context.timeBinary });
      const match = await waitForLine(proc, /"event":"listening".*?"port":(\d+)/, 15_000, 'ftx recv');
      return { proc, port: Number(match[1]) };
    },
    startSender(src, port) {
      return startMeasured(process.execPath, ['--cpu-prof', '--cpu-prof-dir', sides.send, FTX_BIN, 'send', src, `127.0.0.1:${port}`, '--json', '--quiet'], { cwd: ROOT, timeBinary: context.timeBinary });
    },
    check: context.peers.find((peer) => peer.id === 'ftx').check,
  };
  log(`profile: one ftx transfer of ${sizeLabel(source.size)} under --cpu-prof, profiles in ${profileDir}`);
  const run = await runTransfer(profiled, 'file', source, { out: join(outDir, 'profile-ftx.bin'), timeoutMs: transferTimeoutMs(source.size) });
  log(`profile  ${describeRun(run)}`);
  const summaries = {};
  for (const [side, dir] of Object.entries(sides)) {
    const file = readdirSync(dir).find((name) => name.endsWith('.cpuprofile'));
    summaries[side] = file ? summarizeProfile(join(dir, file)) : { error: `no .cpuprofile in ${dir}` };
  }
  return { dir: profileDir, run, sides: summaries };
}

// ---------------------------------------------------------------- helpers

/**
 * Why `size` bytes cannot be received here (and `dataBytesNeeded` generated first; by default
 * the random-<size>.bin file unless it exists), or undefined if they can.
 */
function lackingSpace({ dataDir, outDir }, size, dataBytesNeeded = existsSync(join(dataDir, `random-${sizeLabel(size)}.bin`)) ? 0 : size) {
  const margin = 256 * 1024 ** 2;
  if (dataBytesNeeded > 0 && freeBytes(dataDir) < dataBytesNeeded + margin) return `not enough free space in ${dataDir} for ${sizeLabel(dataBytesNeeded)} of data`;
  if (freeBytes(outDir) < size + margin) return `not enough free space in ${outDir} for ${sizeLabel(size)}`;
  const memory = availableMemoryBytes();
  // tmpfs pages are RAM: without this check a 4G run could push the machine into swap or OOM.
  if (outDir.startsWith('/dev/shm') && memory !== undefined && memory < size + 2 * margin) {
    return `only ${(memory / GIB).toFixed(1)} GiB of memory available for a ${sizeLabel(size)} file on tmpfs`;
  }
  return undefined;
}

function sideSummary(sides) {
  return {
    wallSeconds: summarize(sides.map((side) => side.wallSeconds)),
    cpuSeconds: summarize(sides.map((side) => side.cpuSeconds)),
    peakRssBytes: summarize(sides.map((side) => side.peakRssBytes)),
  };
}

function maxOf(values) {
  const finite = values.filter((value) => Number.isFinite(value));
  return finite.length ? Math.max(...finite) : null;
}

function describeRun(run) {
  if (!run.valid) return `INVALID: ${run.error}`;
  return `${run.wallSeconds.toFixed(2)} s  ${run.mbps.toFixed(0)} MB/s  rss send ${mb(run.sender.peakRssBytes)} / recv ${mb(run.receiver.peakRssBytes)} MB  ok`;
}

function describeServeRun(run) {
  if (!run.valid) return `INVALID: ${run.error}`;
  return (
    `${run.wallSeconds.toFixed(2)} s  ${run.mbps.toFixed(0)} MB/s  recv busy ${fixed(run.receiverMbps, 0) ?? '-'} MB/s  ` +
    `in flight <= ${run.peakInFlight}  recv rss ${mb(run.receiver.peakRssBytes)} MB  ${run.stored.verified}/${run.stored.of} sha256 ok`
  );
}

function timeCommand(command, args) {
  return new Promise((resolveRun) => {
    const startedAt = performance.now();
    const child = spawn(command, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.once('error', (error) => resolveRun({ code: null, seconds: NaN, stdout, stderr: error.message }));
    child.once('close', (code) => resolveRun({ code, seconds: (performance.now() - startedAt) / 1000, stdout, stderr }));
  });
}

function timestamp() {
  return new Date().toISOString().replace(/:/g, '-').replace(/\.\d+Z$/, 'Z');
}

function gitDescription() {
  try {
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src', 'bin'], { cwd: ROOT, encoding: 'utf8' }).trim() !== '';
    return `${commit}${dirty ? ' + uncommitted changes in src/ or bin/' : ''}`;
  } catch {
    return 'unknown (not a git checkout)';
  }
}

// ---------------------------------------------------------------- targets and report

function evaluateTargets(results) {
  const { large, memory, slow, startup, serve } = results.scenarios;
  const targets = [];
  const add = (name, value, display, goal, met, note) => targets.push({ name, value, display, goal, status: met === null ? 'n/a' : met ? 'met' : 'NOT MET', note });
  const ftxFile = large?.groups.find((group) => group.peer === 'ftx' && group.mode === 'file');

  if (large) {
    const vsNc = ftxFile?.vsNc?.median ?? null;
    add('ftx / nc, file to file (same round)', vsNc, ratio(vsNc), `>= ${TARGET.ftxVsNcFile.toFixed(1)}x`, vsNc === null ? null : vsNc >= TARGET.ftxVsNcFile, vsNc === null ? 'no valid pair of runs' : undefined);
    add('ftx / nc, sink', null, null, `>= ${TARGET.ftxVsNcSink.toFixed(1)}x`, null, 'not measurable: ftx stages into a temp file and renames, so /dev/null cannot be its target');
    const vsClassic = ftxFile?.vsClassic?.median ?? null;
    add('ftx / classic python, file to file', vsClassic, ratio(vsClassic), `>= ${TARGET.ftxVsClassic.toFixed(1)}x`, vsClassic === null ? null : vsClassic >= TARGET.ftxVsClassic, vsClassic === null ? 'no valid pair of runs' : undefined);
    const fast = large.groups.find((group) => group.peer === 'ftx-xxh128' && group.mode === 'file');
    if (fast) {
      const fastVsNc = fast.vsNc?.median ?? null;
      add('ftx --hash xxh128 / nc, file to file', fastVsNc, ratio(fastVsNc), `>= ${TARGET.ftxVsNcFile.toFixed(1)}x`, fastVsNc === null ? null : fastVsNc >= TARGET.ftxVsNcFile, fastVsNc === null ? 'no valid pair of runs' : undefined);
      const fastVsClassic = fast.vsClassic?.median ?? null;
      add('ftx --hash xxh128 / classic python', fastVsClassic, ratio(fastVsClassic), `>= ${TARGET.ftxVsClassic.toFixed(1)}x`, fastVsClassic === null ? null : fastVsClassic >= TARGET.ftxVsClassic, fastVsClassic === null ? 'no valid pair of runs' : undefined);
    }
  }

  const rssSources = [];
  if (ftxFile) rssSources.push(ftxFile.sender.peakRssBytes.max, ftxFile.receiver.peakRssBytes.max);
  for (const entry of memory?.sizes ?? []) rssSources.push(entry.senderPeakRssBytes, entry.receiverPeakRssBytes);
  if (slow?.run?.valid) rssSources.push(slow.run.sender.peakRssBytes, slow.run.receiver.peakRssBytes);
  const peak = maxOf(rssSources);
  if (peak !== null) add('ftx peak RSS, either side, every run', peak, `${mb(peak)} MB`, `<= ${mb(TARGET.peakRssBytes)} MB`, peak <= TARGET.peakRssBytes);

  if (memory) {
    for (const [side, flat] of [['sender', memory.senderFlat], ['receiver', memory.receiverFlat]]) {
      const labels = memory.sizes.filter((entry) => !entry.skipped && entry.valid > 0).map((entry) => entry.label);
      add(
        `ftx ${side} RSS flat across ${labels.join('/') || 'sizes'}`,
        flat?.growthBytes ?? null,
        flat ? `${mb(flat.smallest)} -> ${mb(flat.largest)} MB` : null,
        `growth <= ${mb(FLAT_TOLERANCE_BYTES)} MB`,
        flat ? flat.flat : null,
        flat ? undefined : 'needs two measured sizes',
      );
    }
  }
  if (slow) {
    const rss = slow.run?.valid ? slow.run.sender.peakRssBytes : null;
    add(`ftx sender RSS, ${slow.rateMbps ?? '?'} MB/s receiver`, rss, rss === null ? null : `${mb(rss)} MB`, `<= ${mb(TARGET.peakRssBytes)} MB`, rss === null ? null : rss <= TARGET.peakRssBytes, slow.skipped ?? (slow.run?.valid ? undefined : slow.run?.error));
  }
  if (startup) {
    add('ftx --help / node -e 0', startup.helpVsNode, ratio(startup.helpVsNode), `<= ${TARGET.helpVsNode.toFixed(1)}x`, startup.helpVsNode === null ? null : startup.helpVsNode <= TARGET.helpVsNode);
  }
  if (serve) {
    const n = serve.senders;
    const vsGoal = `>= ${TARGET.serveVsSequential.toFixed(1)}x`;
    const rssGoal = `<= ${mb(TARGET.serveRssBytes)} MB`;
    if (serve.skipped) {
      add(`serve: ${n} senders at once / one after another`, null, null, vsGoal, null, `skipped: ${serve.skipped}`);
    } else {
      const fewer = n === TARGET.serveSenders ? undefined : `${n} senders measured; the target is for ${TARGET.serveSenders}`;
      const vs = serve.concurrentVsSequential?.median ?? null;
      add(`serve: ${n} senders at once / one after another`, vs, ratio(vs), vsGoal, vs === null ? null : vs >= TARGET.serveVsSequential, vs === null ? 'no round with both batches valid' : fewer);
      const rss = serve.modes.find((entry) => entry.mode === 'concurrent')?.receiverPeakRssBytes ?? null;
      add(`serve: receiver peak RSS, ${n} senders at once`, rss, rss === null ? null : `${mb(rss)} MB`, rssGoal, rss === null ? null : rss <= TARGET.serveRssBytes, rss === null ? 'not measured' : fewer);
    }
  }
  return targets;
}

function printReport(results) {
  const out = [];
  const { large, memory, slow, startup } = results.scenarios;
  const m = results.machine;
  out.push('', `ftx benchmark  ${results.startedAt}  ${results.git}`, `node ${m.node}, ${m.cpus} CPUs (${m.cpuModel}), Linux ${m.kernel}, ${m.memoryGiB} GiB RAM; received files in ${results.outDir}; CPU/RSS meter: ${results.meter}`);

  if (large) {
    out.push('', `1. One large file: ${sizeLabel(large.source.bytes)} random, ${large.rounds} rounds, peers alternating (order rotated each round)`);
    out.push(
      table(
        ['peer', 'mode', 'ok', 'MB/s median [min-max]', 'wall s', 'send CPU s', 'recv CPU s', 'send RSS MB', 'recv RSS MB', 'vs nc (same round)'],
        large.groups.map((group) => [
          group.peer,
          group.mode,
          `${group.valid}/${group.runs}`,
          spread(group.mbps),
          fixed(group.wallSeconds.median, 2),
          fixed(group.sender.cpuSeconds.median, 2),
          fixed(group.receiver.cpuSeconds.median, 2),
          mb(group.sender.peakRssBytes.max),
          mb(group.receiver.peakRssBytes.max),
          group.peer === 'nc' ? '1.00x' : group.vsNc ? `${ratio(group.vsNc.median)} [${ratio(group.vsNc.min)}-${ratio(group.vsNc.max)}]` : null,
        ]),
        'll',
      ),
    );
    out.push(
      '   MB/s = 10^6 bytes per second of wall time, from the sender\'s spawn until both sides exited: process start-up',
      '   included (see 4). CPU = user+sys seconds (median); RSS = peak resident set (max over rounds).',
      '   file: output on tmpfs, byte-compared with cmp. sink: output to /dev/null, nothing to compare (exit codes only).',
      '   ftx has no sink mode: it writes a temporary file beside the target and renames it, which /dev/null cannot be.',
    );
    const ftx = large.groups.find((group) => group.peer === 'ftx');
    if (ftx?.valid) {
      out.push(`   ftx's own report (accept to receipt, no start-up): ${spread(ftx.selfReportedMbps)} MB/s; ftx / node pipe file: ${ratio(ftx.vsNode?.median) ?? '-'}; ftx / classic: ${ratio(ftx.vsClassic?.median) ?? '-'}`);
    }
    for (const skipped of large.skipped) out.push(`   skipped ${skipped.peer}: ${skipped.reason}`);
    for (const group of large.groups) for (const error of group.errors) out.push(`   INVALID ${group.peer} ${group.mode} ${error}`);
  }

  if (memory) {
    out.push('', '2. Memory stays flat: ftx file to file, peak RSS per side');
    out.push(
      table(
        ['file', 'ok', 'MB/s', 'send RSS MB', 'recv RSS MB', 'note'],
        memory.sizes.map((entry) =>
          entry.skipped
            ? [entry.label, '-', null, null, null, `skipped: ${entry.skipped}`]
            : [entry.label, `${entry.valid}/${entry.runs.length}`, fixed(entry.mbps.median, 0), mb(entry.senderPeakRssBytes), mb(entry.receiverPeakRssBytes), entry.errors.join('; ') || ''],
        ),
      ),
    );
  }
  if (slow) {
    if (slow.skipped) {
      out.push('', `   slow receiver: skipped: ${slow.skipped}`);
    } else {
      const run = slow.run;
      out.push(
        '',
        `   slow receiver (${sizeLabel(slow.bytes)} through a ${slow.rateMbps} MB/s proxy): ` +
          (run.valid ? `${run.mbps.toFixed(1)} MB/s, send RSS ${mb(run.sender.peakRssBytes)} MB, recv RSS ${mb(run.receiver.peakRssBytes)} MB` : `INVALID: ${run.error}`),
      );
    }
  }

  const serve = results.scenarios.serve;
  if (serve?.skipped) out.push('', `3. Many senders: skipped: ${serve.skipped}`);
  else if (serve) {
    out.push(
      '',
      `3. Many senders: ${serve.senders} x ${sizeLabel(serve.fileSize)} = ${sizeLabel(serve.totalBytes)} (a distinct random file each) into one ftx recv --serve on tmpfs;`,
      `   all at once vs the same files one after another, a fresh receiver per batch, ${serve.rounds} rounds (order alternated)`,
    );
    out.push(
      table(
        ['batch', 'ok', 'MB/s median [min-max]', 'wall s', 'recv busy MB/s', 'in flight', 'connects s after spawn', 'senders CPU s', 'recv CPU s', 'recv RSS MB', 'send RSS MB'],
        serve.modes.map((entry) => [
          entry.mode,
          `${entry.valid}/${entry.runs}`,
          spread(entry.mbps),
          fixed(entry.wallSeconds.median, 2),
          spread(entry.receiverMbps),
          entry.peakInFlight.min === null ? null : entry.peakInFlight.min === entry.peakInFlight.max ? entry.peakInFlight.min : `${entry.peakInFlight.min}-${entry.peakInFlight.max}`,
          entry.firstConnectSeconds.median === null ? null : `${fixed(entry.firstConnectSeconds.median, 2)}..${fixed(entry.lastConnectSeconds.median, 2)}`,
          fixed(entry.sendersCpuSeconds.median, 1),
          fixed(entry.receiverCpuSeconds.median, 2),
          mb(entry.receiverPeakRssBytes),
          mb(entry.senderPeakRssBytes),
        ]),
        'll',
      ),
    );
    const vs = serve.concurrentVsSequential;
    const view = serve.recvBusyRatio;
    out.push(
      `   at once / one after another (same round): ${vs ? `${ratio(vs.median)} [${ratio(vs.min)}-${ratio(vs.max)}]` : '-'}; ` +
        `recv busy: ${view ? `${ratio(view.median)} [${ratio(view.min)}-${ratio(view.max)}]` : '-'}`,
      "   MB/s = 10^6 bytes over the wall time from the first sender's spawn to the last sender's exit: every `ftx send`",
      '   is a node process, so its start-up is included (all at once: N start-ups compete for the CPUs with the transfers;',
      '   one after another: they add up). recv busy = bytes over the time the receiver had at least one transfer in flight',
      '   (its log: transfer-start to transfer-done), so waiting for senders to start is left out in both batches.',
      '   in flight = most transfers open at once (receiver log; min-max over rounds); connects = first..last transfer-start, seconds after the first spawn.',
      '   senders CPU = user+sys of all senders together; RSS = peak resident set, max over rounds (recv: the serving process).',
      '   Every stored file is hashed by the bench and compared with its source; the receiver is stopped with SIGTERM and must exit 0.',
    );
    const refusals = serve.modes.reduce((total, entry) => total + entry.busyRefusals, 0);
    if (refusals) out.push(`   busy refusals: ${refusals}`);
    for (const entry of serve.modes) for (const error of entry.errors) out.push(`   INVALID ${entry.mode} ${error}`);
  }

  if (startup) {
    out.push('', `4. Start-up: wall ms, ${startup.runs} interleaved runs each (after one warm-up)`);
    out.push(
      table(
        ['command', 'median', 'min', 'max', 'vs node -e 0'],
        startup.commands.map((row) => [
          row.id,
          ms(row.seconds.median),
          ms(row.seconds.min),
          ms(row.seconds.max),
          row.id === 'ftx --help' ? ratio(startup.helpVsNode) : row.id.startsWith('ftx send') ? ratio(startup.sendRefusedVsNode) : '1.00x',
        ]),
      ),
    );
    if (startup.refusedSummary) out.push(`   ftx send to a closed port said: ${JSON.stringify(startup.refusedSummary).slice(0, 200)}`);
    for (const problem of startup.problems) out.push(`   unexpected: ${problem}`);
  }

  if (results.profile) {
    out.push('', `CPU profile of one ftx transfer (main thread self time; profiles in ${results.profile.dir})`);
    for (const [side, summary] of Object.entries(results.profile.sides)) {
      if (summary.error) {
        out.push(`   ${side}: ${summary.error}`);
        continue;
      }
      out.push(`   ${side}: ${summary.totalMs.toFixed(0)} ms sampled`);
      out.push(
        table(
          ['function', 'where', 'self ms', 'share'],
          summary.top.map((entry) => [entry.function, entry.where, entry.selfMs.toFixed(0), `${(entry.share * 100).toFixed(1)}%`]),
          'll',
        )
          .split('\n')
          .map((line) => `   ${line}`)
          .join('\n'),
      );
    }
  }

  out.push('', 'Targets (issue #5)');
  out.push(table(['target', 'measured', 'goal', 'status', 'note'], results.targets.map((target) => [target.name, target.display, target.goal, target.status, target.note ?? '']), 'lrlll'));
  out.push('');
  process.stdout.write(out.join('\n') + '\n');
}

// ---------------------------------------------------------------- main

async function main() {
  let options;
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`bench: ${error.message}\n\n${HELP}`);
    return 2;
  }
  if (options.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (!existsSync(join(ROOT, 'dist', 'cli.js'))) {
    log('dist/cli.js is missing: run `npm run bench` (it builds first) or `npm run build`');
    return 1;
  }

  const dataDir = join(ROOT, 'bench', 'data');
  const resultsDir = join(ROOT, 'bench', 'results');
  const outDir = options.outDir ?? (existsSync('/dev/shm') ? join('/dev/shm', `ftx-bench-${process.pid}`) : join(tmpdir(), `ftx-bench-${process.pid}`));
  mkdirSync(dataDir, { recursive: true });
  mkdirSync(resultsDir, { recursive: true });
  mkdirSync(outDir, { recursive: true });
  const cleanup = () => {
    killAll();
    if (!options.outDir) rmSync(outDir, { recursive: true, force: true });
  };
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.once(signal, () => {
      log(`${signal}: stopping`);
      cleanup();
      process.exit(130);
    });
  }

  const time = await ensureTool('time', 'time', log, isGnuTime);
  if (time.skip) log(`GNU time unavailable (${time.skip}); sampling /proc instead (CPU seconds may miss the last 20 ms)`);
  const needsPeers = options.scenarios.has('large');
  const nc = needsPeers ? await ensureTool('nc', 'netcat-openbsd', log, isOpenbsdNetcat) : { skip: 'not needed' };
  const python = needsPeers ? await ensureTool('python3', 'python3', log) : { skip: 'not needed' };
  const context = {
    options,
    dataDir,
    outDir,
    timeBinary: time.path,
    peers: definePeers({ root: ROOT, nc, python, timeBinary: time.path }),
  };

  const results = {
    startedAt: new Date().toISOString(),
    git: gitDescription(),
    machine: {
      hostname: hostname(),
      node: process.version,
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
      kernel: release(),
      memoryGiB: (totalmem() / GIB).toFixed(1),
    },
    meter: time.path ? `GNU time (${time.path})` : '/proc sampling',
    outDir,
    options: { ...options, scenarios: [...options.scenarios] },
    scenarios: {},
  };

  try {
    if (options.scenarios.has('large')) results.scenarios.large = await runLarge(context);
    if (options.scenarios.has('memory')) results.scenarios.memory = await runMemory(context);
    if (options.scenarios.has('slow')) results.scenarios.slow = await runSlow(context);
    if (options.scenarios.has('startup')) results.scenarios.startup = await runStartup(context);
    if (options.scenarios.has('serve')) results.scenarios.serve = await runServe(context);
    if (options.profile) results.profile = await runProfile(context);
  } finally {
    cleanup();
  }
  results.finishedAt = new Date().toISOString();
  results.targets = evaluateTargets(results);
  printReport(results);
  const resultPath = join(resultsDir, `${timestamp()}.json`);
  writeFileSync(resultPath, `${JSON.stringify(results, null, 2)}\n`);
  log(`results saved to ${resultPath}`);
  return 0;
}

process.exitCode = await main();
