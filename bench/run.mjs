#!/usr/bin/env node
/**
 * `npm run bench`: ftx against netcat, socat, the classic tutorial and a bare Node pipe, on
 * loopback, with the targets of issue #12 printed as met / NOT MET.
 *
 * Scenarios (each can be chosen with --only / left out with --skip):
 *   large    one large random file, every peer (ftx with its default digest, --hash sha256 and
 *            --hash xxh128, and with a key on both sides: TLS 1.3 with a pre-shared key; nc;
 *            socat -b 1048576; classic python; node pipe), several rounds;
 *            peers alternate within a round (order rotated each round) and ratios are taken
 *            within a round, because this machine is shared and noisy. File mode writes to
 *            /dev/shm (tmpfs: the disk is not what we measure); sink mode writes to /dev/null.
 *            MB/s, CPU seconds per GiB per side and both sides, peak RSS per side.
 *   memory   ftx sender and receiver peak RSS for 64 MiB, 1 GiB and 4 GiB files.
 *   slow     ftx through a proxy that forwards ~20 MB/s: the sender's RSS proves backpressure.
 *   startup  `ftx --help` and `ftx send` to a closed port, against `node -e 0`.
 *   serve    N senders (default 32, each its own file) into one `ftx recv --serve`, all at
 *            once against the same files one after another, each batch into a fresh
 *            receiver; aggregate MB/s and the receiver's peak RSS; every stored file compared.
 *   digests  each digest's rate on one core, in memory (1 MiB updates): BLAKE3 native and
 *            wasm, SHA-256, XXH3-128, through ftx's own registry (dist/index.js).
 * Sessions (protocol v2: many entries in one connection):
 *   tree     10,000 files of 4 KiB in 20 folders: `ftx send DIR` into `ftx recv FOLDER` against
 *            `tar c | nc` into `nc -l | tar x`, on tmpfs and on a disk-backed folder (ftx fsyncs
 *            every file; tar does not, so on disk also `tar x && sync -f`). Files/s, MB/s, CPU
 *            seconds and peak RSS per side; every received tree checked with diff -r. When ftx
 *            is below 0.5x tar|nc on tmpfs (or with --profile), one more ftx run under --cpu-prof.
 *   session  one large file inside a folder session (`ftx send DIR`) against the same file alone.
 *   stream   `cat FILE | ftx send - --name NAME` into `ftx recv - > out` against `cat | nc`.
 *   bigtree  100,000 files of 0-100 bytes in 100 folders in one session: peak RSS per side, files/s.
 * Resume (issue #15):
 *   resume   the --size file into ftx recv FILE on tmpfs, per round (order rotated): whole; cut at ~50%
 *            (sender SIGKILLed once the receiver's partial holds half) then the same send again,
 *            resuming; cut again then sent again with --no-resume. Bytes moved on the second
 *            attempt / file, wall(resume) / wall(whole) and wall(no-resume) / wall(whole) in the
 *            same round; the receiver's log splits the resume's time (prefix check, new bytes).
 *
 * Results: a table on stdout (also in bench/results/last-report.txt), everything (every run)
 * in bench/results/<timestamp>.json.
 * Generated data lives in bench/data/ and is reused. Run `node bench/run.mjs --help`.
 */
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, readdirSync, rmSync, statfsSync, statSync, writeFileSync } from 'node:fs';
import { cpus, hostname, release, tmpdir, totalmem } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { summarizeProfile } from './lib/cpuprofile.mjs';
import { definePeers, freePort, lastJson } from './lib/peers.mjs';
import { measureDigestRates } from './lib/digests.mjs';
import { killAll, runQuiet, startMeasured, waitForLine } from './lib/proc.mjs';
import { fixed, mb, ms, oneLine, ratio, spread, table } from './lib/report.mjs';
import { runServeBatch } from './lib/serve.mjs';
import { ensureSessionFolder, sessionPeers, streamPeers } from './lib/session-peers.mjs';
import { availableMemoryBytes, ensureDataFile, ensureServeFiles, ensureTool, freeBytes, isGnuTime, isOpenbsdNetcat, missingServeBytes, parseSize, sizeLabel, warmCache } from './lib/setup.mjs';
import { MB, median, summarize } from './lib/stats.mjs';
import { runTransfer } from './lib/transfer.mjs';
import { ensureTree, runTreeTransfer, treePeers, warmTree } from './lib/trees.mjs';
import { CUT_AT, cutTransfer, leftovers, RESUME_KINDS, resumePeer } from './lib/resume.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const GIB = 1024 ** 3;
const SCENARIOS = ['large', 'memory', 'slow', 'startup', 'serve', 'digests', 'tree', 'session', 'stream', 'bigtree', 'resume'];
const MEDIA = ['tmpfs', 'disk'];
/** statfs(2) f_type of tmpfs and ramfs: memory, not a disk. */
const MEMORY_FS_TYPES = new Set([0x01021994, 0x858458f6]);

/** Issue #12's targets (serve: issue #10's), all as same-round medians. */
const TARGET = {
  /** ftx (default digest) / nc MB/s, file to file on tmpfs, 1 GiB. */
  ftxVsNcFile: 0.85,
  /** CPU seconds per GiB, both sides together, ftx / nc. */
  cpuVsNc: 1.5,
  ftxVsClassic: 3.5,
  /** Peak RSS per side, every size of the memory scenario (64 MiB ... 4 GiB). */
  peakRssBytes: 64 * MB,
  helpVsNode: 1.6,
  /** The size the throughput and CPU targets are stated for. */
  largeBytes: GIB,
  /** 32 senders at once against the same bytes sent one after another (same round). */
  serveVsSequential: 0.9,
  serveRssBytes: 200 * MB,
  serveSenders: 32,
  /** Sessions: peak RSS per side for the bigtree session (100,000 entries). */
  bigTreeRssBytes: 100 * MB,
  bigTreeFiles: 100_000,
  /** A file inside a folder session against the same file alone: "about the same" read as >= 0.9x. */
  sessionVsAlone: 0.9,
  /** Below this tree files/s ratio to tar|nc on tmpfs, the tree scenario profiles one ftx run. */
  treeProfileBelow: 0.5,
  /** Issue #15, a 1 GiB transfer cut at ~50% then resumed: bytes moved on the second attempt / the file. */
  resumeBytesShare: 0.55,
  /** ... and its wall time / a whole send's, same round (prefix verification included). */
  resumeVsFull: 0.6,
};
/**
 * "Flat" RSS across file sizes: the largest file's peak may exceed the smallest's by at
 * most this much (besides each staying under TARGET.peakRssBytes). Some growth is V8 settling its heap, not buffering the file: a file
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
  --digest-size SIZE   digests scenario: bytes hashed per digest, per round and working set (default 512M)
  --digest-rounds N    digests scenario: rounds (default 3)
  --tree-files N       tree scenario: files (default 10000)
  --tree-folders N     tree scenario: folders they are dealt into (default 20)
  --tree-file-size S   tree scenario: bytes per file (default 4K)
  --media LIST         tree scenario: where to receive: tmpfs (/dev/shm), disk (default tmpfs,disk)
  --disk-dir DIR       tree scenario, disk medium: a folder on a disk-backed file system (default ${tmpdir()},
                       or bench/data if that is tmpfs); the bench works in a new folder inside it
  --bigtree-files N    bigtree scenario: files (default 100000)
  --bigtree-folders N  bigtree scenario: folders (default 100)
  --bigtree-max-size S bigtree scenario: each file 0..S bytes, random (default 100)
  --bigtree-rounds N   bigtree scenario: rounds (default 1)
  (tree, session, stream and resume run --rounds rounds; session, stream and resume send a --size file)
  --only LIST          scenarios to run: ${SCENARIOS.join(',')}
  --skip LIST          scenarios to leave out
  --profile            also run one ftx transfer (default digest) under node --cpu-prof and list top self time
                       (and one tree transfer on tmpfs, which the tree scenario does anyway below 0.5x tar|nc)
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
      'digest-size': { type: 'string', default: '512M' },
      'digest-rounds': { type: 'string', default: '3' },
      'tree-files': { type: 'string', default: '10000' },
      'tree-folders': { type: 'string', default: '20' },
      'tree-file-size': { type: 'string', default: '4K' },
      media: { type: 'string', default: MEDIA.join(',') },
      'disk-dir': { type: 'string' },
      'bigtree-files': { type: 'string', default: '100000' },
      'bigtree-folders': { type: 'string', default: '100' },
      'bigtree-max-size': { type: 'string', default: '100' },
      'bigtree-rounds': { type: 'string', default: '1' },
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
  const media = list(values.media);
  for (const medium of media) if (!MEDIA.includes(medium)) throw new Error(`unknown medium "${medium}"; choose from ${MEDIA.join(', ')}`);
  const treeFolders = positive(values['tree-folders'], 'tree-folders');
  const bigTreeFolders = positive(values['bigtree-folders'], 'bigtree-folders');
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
    digestBytes: parseSize(values['digest-size']),
    digestRounds: positive(values['digest-rounds'], 'digest-rounds'),
    tree: { files: Math.max(positive(values['tree-files'], 'tree-files'), treeFolders), folders: treeFolders, minBytes: parseSize(values['tree-file-size']), maxBytes: parseSize(values['tree-file-size']) },
    media,
    diskDir: values['disk-dir'],
    bigTree: { files: Math.max(positive(values['bigtree-files'], 'bigtree-files'), bigTreeFolders), folders: bigTreeFolders, minBytes: 0, maxBytes: parseSize(values['bigtree-max-size']) },
    bigTreeRounds: positive(values['bigtree-rounds'], 'bigtree-rounds'),
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
      log(`large ${round}/${options.rounds}  ${`${peer.id} ${mode}`.padEnd(16)} ${describeRun(run)}`);
    }
  }

  const groups = plan.map(({ peer, mode }) => {
    const mine = runs.filter((run) => run.peer === peer.id && run.mode === mode);
    const valid = mine.filter((run) => run.valid);
    /** Median over rounds of value(this run) / value(otherPeer's run in the same round). */
    const ratioTo = (otherPeer, otherMode = mode, value = (run) => run.mbps) => {
      const ratios = [];
      for (const run of valid) {
        const other = runs.find((candidate) => candidate.valid && candidate.round === run.round && candidate.peer === otherPeer && candidate.mode === otherMode);
        const mineValue = value(run);
        const otherValue = other ? value(other) : null;
        if (Number.isFinite(mineValue) && Number.isFinite(otherValue) && otherValue > 0) ratios.push(mineValue / otherValue);
      }
      return ratios.length ? { ...summarize(ratios), perRound: ratios } : null;
    };
    const bothCpu = (run) => run.bothCpuPerGiB;
    return {
      peer: peer.id,
      label: peer.label,
      digest: peer.digest ?? null,
      mode,
      runs: mine.length,
      valid: valid.length,
      errors: mine.filter((run) => !run.valid).map((run) => `round ${run.round}: ${run.error}`),
      mbps: summarize(valid.map((run) => run.mbps)),
      wallSeconds: summarize(valid.map((run) => run.wallSeconds)),
      sender: sideSummary(valid.map((run) => run.sender)),
      receiver: sideSummary(valid.map((run) => run.receiver)),
      /** Median over rounds of the per-run sum (not the sum of the medians). */
      bothCpuPerGiB: summarize(valid.map(bothCpu)),
      vsNc: peer.id === 'nc' ? null : ratioTo('nc'),
      cpuVsNc: peer.id === 'nc' ? null : ratioTo('nc', mode, bothCpu),
      // The price of TLS: the same ftx and digest without a key, same round.
      vsFtx: peer.tls ? ratioTo('ftx') : null,
      cpuVsFtx: peer.tls
        ? { send: ratioTo('ftx', mode, (run) => run.sender.cpuPerGiB), recv: ratioTo('ftx', mode, (run) => run.receiver.cpuPerGiB), both: ratioTo('ftx', mode, bothCpu) }
        : null,
      vsClassic: peer.ftx ? ratioTo('classic', 'file') : null,
      vsNode: peer.ftx ? ratioTo('node', 'file') : null,
      selfReportedMbps: peer.ftx ? summarize(valid.map((run) => run.selfReport?.recvMbps)) : null,
      digestEngines: peer.ftx ? [...new Set(valid.flatMap((run) => [run.selfReport?.sendDigestEngine, run.selfReport?.recvDigestEngine]).filter(Boolean))] : null,
    };
  });
  return {
    source: { path: source.path, bytes: source.size, digests: source.digests, digestTools: source.digestTools },
    rounds: options.rounds,
    tlsKey: context.tlsKey.skip ? { skipped: context.tlsKey.skip } : { identity: context.tlsKey.identity, path: relative(ROOT, context.tlsKey.path), madeBy: context.tlsKey.madeBy },
    skipped,
    groups,
    runs,
  };
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
  const { options, ftxBin } = context;
  const closedPort = await freePort();
  const sendFile = join(ROOT, 'package.json');
  const commands = [
    { id: 'node -e 0', argv: ['-e', '0'], expectCode: 0 },
    { id: 'ftx --help', argv: [ftxBin, '--help'], expectCode: 0 },
    { id: 'ftx send (refused)', argv: [ftxBin, 'send', sendFile, `127.0.0.1:${closedPort}`, '--json', '--quiet'], expectCode: 'nonzero' },
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
        ftxBin: context.ftxBin,
        cwd: ROOT,
        timeBinary: context.timeBinary,
        folder: join(outDir, `serve-${mode}`),
        timeoutMs: transferTimeoutMs(totalBytes) + senders * 5_000,
        digest: context.defaultDigest,
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
  return { ...describe, digest: context.defaultDigest, files: files.map(({ name, size, digests }) => ({ name, size, digests })), modes, concurrentVsSequential: ratioOf('mbps'), recvBusyRatio: ratioOf('receiverMbps'), runs };
}

async function runDigests(context) {
  const { options } = context;
  log(`digests: ${sizeLabel(options.digestBytes)} per digest and working set, 1 MiB updates, ${options.digestRounds} rounds, in this process...`);
  return measureDigestRates({ root: context.ftxRoot, totalBytes: options.digestBytes, rounds: options.digestRounds, log });
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
      const proc = startMeasured(process.execPath, ['--cpu-prof', '--cpu-prof-dir', sides.recv, context.ftxBin, 'recv', out, '--port', '0', '--json', '--force', '--log-format', 'json', '--log-level', 'info'], { cwd: ROOT, timeBinary: context.timeBinary });
      const match = await waitForLine(proc, /"event":"listening".*?"port":(\d+)/, 15_000, 'ftx recv');
      return { proc, port: Number(match[1]) };
    },
    startSender(src, port) {
      return startMeasured(process.execPath, ['--cpu-prof', '--cpu-prof-dir', sides.send, context.ftxBin, 'send', src, `127.0.0.1:${port}`, '--json', '--quiet'], { cwd: ROOT, timeBinary: context.timeBinary });
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

// ---------------------------------------------------------------- sessions (protocol v2)

/** The bench's own timer fires first; `timeout -k` around every child is the backstop. */
const hardLimitSeconds = (timeoutMs) => timeoutMs / 1000 + 30;
/** Generous, as transferTimeoutMs: 10 ms per file (an fsync each on a slow disk) on top. */
const treeTimeoutMs = (tree) => 60_000 + tree.files * 10 + (tree.bytes / (5 * MB)) * 1000;

/** `items` rotated by round - 1, so no peer always runs first (after a pause) or last. */
function rotated(items, round) {
  const shift = (round - 1) % items.length;
  return [...items.slice(shift), ...items.slice(0, shift)];
}

/**
 * Median (and range) over rounds of value(run) / value(the reference's run of the same round),
 * for the valid runs in `mine`; `isReference(candidate, run)` picks the reference. Null without a pair.
 */
function sameRoundRatios(mine, runs, isReference, value) {
  const ratios = [];
  for (const run of mine.filter((candidate) => candidate.valid)) {
    const other = runs.find((candidate) => candidate.valid && candidate.round === run.round && isReference(candidate, run));
    const mineValue = value(run);
    const otherValue = other ? value(other) : null;
    if (Number.isFinite(mineValue) && Number.isFinite(otherValue) && otherValue > 0) ratios.push(mineValue / otherValue);
  }
  return ratios.length ? { ...summarize(ratios), perRound: ratios } : null;
}

/**
 * Where trees are received: tmpfs (the --out-dir, /dev/shm by default) and a disk-backed
 * folder (--disk-dir, else the temp folder, else bench/data: the first that is not tmpfs).
 * Returns [{ id, root, fsType, dir } or { id, skipped }]; roots are emptied at the end.
 */
async function treeMedia(context, wanted = context.options.media) {
  const media = [];
  for (const id of wanted) {
    if (id === 'tmpfs') {
      if (!isMemoryFs(context.outDir)) {
        media.push({ id, skipped: `${context.outDir} is not tmpfs (see --out-dir)` });
        continue;
      }
      media.push({ id, root: join(context.outDir, 'trees'), dir: context.outDir, fsType: await fsTypeOf(context.outDir) });
      continue;
    }
    const candidates = context.options.diskDir ? [context.options.diskDir] : [tmpdir(), context.dataDir];
    const dir = candidates.find((candidate) => existsSync(candidate) && !isMemoryFs(candidate));
    if (!dir) {
      media.push({ id, skipped: `no disk-backed folder: ${candidates.join(', ')} ${candidates.length > 1 ? 'are' : 'is'} tmpfs or missing (see --disk-dir)` });
      continue;
    }
    const root = join(dir, `ftx-bench-disk-${process.pid}`);
    context.scratchDirs.push(root);
    media.push({ id, root, dir, fsType: await fsTypeOf(dir) });
  }
  return media;
}

function isMemoryFs(folder) {
  try {
    return MEMORY_FS_TYPES.has(Number(statfsSync(folder).type));
  } catch {
    return false;
  }
}

/** "ext4", from `df --output=fstype` (statfs(2) gives only a number). */
async function fsTypeOf(folder) {
  const result = await runQuiet('df', ['--output=fstype', folder]);
  const type = result.stdout.trim().split('\n').at(-1)?.trim();
  return result.code === 0 && type ? type : `0x${Number(statfsSync(folder).type).toString(16)}`;
}

/** On a disk, write back what the last run (and its removal) left dirty, off the clock, so the next run does not pay for it. */
async function settle(medium) {
  if (medium.id === 'disk') await runQuiet('sync', ['-f', medium.dir]);
}

const folderSlug = (id) => id.replace(/[^a-z0-9]+/gi, '-');

async function runTree(context) {
  const { options } = context;
  if (context.nc.skip) return { skipped: `tar|nc needs OpenBSD nc: ${context.nc.skip}` };
  const tree = ensureTree(context.dataDir, options.tree, log);
  warmTree(tree.path);
  const media = await treeMedia(context);
  for (const medium of media) if (medium.skipped) log(`tree: skipping ${medium.id}: ${medium.skipped}`);
  const timeoutMs = treeTimeoutMs(tree);
  const peers = treePeers({ ftxBin: context.ftxBin, ncPath: context.nc.path, cwd: ROOT, timeBinary: context.timeBinary, limitSeconds: hardLimitSeconds(timeoutMs) });
  // tar x never fsyncs: on a disk, `tar x && sync -f` is the reference that promises what ftx does.
  const plans = media.filter((medium) => !medium.skipped).map((medium) => ({ medium, peers: medium.id === 'disk' ? [peers.ftx, peers.tar, peers.tarSync] : [peers.ftx, peers.tar] }));
  const runs = [];
  for (let round = 1; round <= options.rounds; round++) {
    for (const { medium, peers: order } of plans) {
      for (const peer of rotated(order, round)) {
        await settle(medium);
        const run = await runTreeTransfer(peer, tree, { folder: join(medium.root, `tree-${folderSlug(peer.id)}`), timeoutMs });
        Object.assign(run, { round, medium: medium.id });
        runs.push(run);
        log(`tree ${round}/${options.rounds}  ${medium.id.padEnd(5)} ${peer.id.padEnd(11)} ${describeTreeRun(run)}`);
      }
    }
  }
  const groups = plans.flatMap(({ medium, peers: order }) => order.map((peer) => treeGroup(runs, medium, peer.id)));
  const tmpfsFtx = groups.find((group) => group.medium === 'tmpfs' && group.peer === 'ftx');
  const slow = tmpfsFtx?.vsTar ? tmpfsFtx.vsTar.median < TARGET.treeProfileBelow : false;
  const tmpfs = plans.find((plan) => plan.medium.id === 'tmpfs')?.medium;
  let profile;
  if (tmpfs && (slow || options.profile)) {
    const reason = slow ? `ftx at ${ratio(tmpfsFtx.vsTar.median)} of tar|nc on tmpfs (< ${TARGET.treeProfileBelow}x)` : '--profile';
    profile = await profileTree(context, tree, tmpfs, timeoutMs, reason);
  }
  return { tree: describeTree(tree), rounds: options.rounds, media, groups, runs, profile };
}

function describeTree(tree) {
  return { name: tree.name, path: tree.path, files: tree.files, folders: tree.folders, bytes: tree.bytes, spec: tree.spec };
}

function treeGroup(runs, medium, peerId) {
  const mine = runs.filter((run) => run.medium === medium.id && run.peer === peerId);
  const valid = mine.filter((run) => run.valid);
  const peerOf = (id) => (candidate, run) => candidate.medium === run.medium && candidate.peer === id;
  const filesPerSecond = (run) => run.filesPerSecond;
  const isTar = peerId.startsWith('tar');
  return {
    medium: medium.id,
    fsType: medium.fsType,
    root: medium.root,
    peer: peerId,
    runs: mine.length,
    valid: valid.length,
    errors: mine.filter((run) => !run.valid).map((run) => `round ${run.round}: ${run.error}`),
    filesPerSecond: summarize(valid.map(filesPerSecond)),
    mbps: summarize(valid.map((run) => run.mbps)),
    wallSeconds: summarize(valid.map((run) => run.wallSeconds)),
    senderCpuSeconds: summarize(valid.map((run) => run.sender.cpuSeconds)),
    receiverCpuSeconds: summarize(valid.map((run) => run.receiver.cpuSeconds)),
    receiverUserSeconds: summarize(valid.map((run) => run.receiver.userSeconds)),
    receiverSysSeconds: summarize(valid.map((run) => run.receiver.sysSeconds)),
    bothCpuSeconds: summarize(valid.map((run) => run.bothCpuSeconds)),
    senderPeakRssBytes: maxOf(valid.map((run) => run.sender.peakRssBytes)),
    receiverPeakRssBytes: maxOf(valid.map((run) => run.receiver.peakRssBytes)),
    vsTar: peerId === 'tar|nc' ? null : sameRoundRatios(mine, runs, peerOf('tar|nc'), filesPerSecond),
    vsTarSync: medium.id === 'disk' && peerId !== 'tar|nc+sync' ? sameRoundRatios(mine, runs, peerOf('tar|nc+sync'), filesPerSecond) : null,
    cpuVsTar: isTar ? null : sameRoundRatios(mine, runs, peerOf('tar|nc'), (run) => run.bothCpuSeconds),
  };
}

/** One more ftx tree transfer on tmpfs with node --cpu-prof on both sides; top self time per side. */
async function profileTree(context, tree, medium, timeoutMs, reason) {
  const dir = context.options.profileDir ? join(context.options.profileDir, 'tree') : join(tmpdir(), `ftx-bench-tree-profile-${timestamp()}`);
  const sides = { recv: join(dir, 'recv'), send: join(dir, 'send') };
  for (const side of Object.values(sides)) {
    rmSync(side, { recursive: true, force: true });
    mkdirSync(side, { recursive: true });
  }
  const nodeArgs = Object.fromEntries(Object.entries(sides).map(([side, sideDir]) => [side, ['--cpu-prof', '--cpu-prof-dir', sideDir]]));
  const { ftx } = treePeers({ ftxBin: context.ftxBin, ncPath: context.nc.path, cwd: ROOT, timeBinary: context.timeBinary, limitSeconds: hardLimitSeconds(timeoutMs), nodeArgs });
  log(`tree profile (${reason}): one ftx run on ${medium.id} under --cpu-prof, profiles in ${dir}`);
  const run = await runTreeTransfer(ftx, tree, { folder: join(medium.root, 'tree-profile'), timeoutMs });
  log(`tree profile  ${describeTreeRun(run)}`);
  const summaries = {};
  for (const [side, sideDir] of Object.entries(sides)) {
    const file = readdirSync(sideDir).find((name) => name.endsWith('.cpuprofile'));
    summaries[side] = file ? summarizeProfile(join(sideDir, file)) : { error: `no .cpuprofile in ${sideDir}` };
  }
  return { dir, reason, medium: medium.id, run, sides: summaries };
}

async function runSessionFile(context) {
  const { options, outDir } = context;
  const lacking = lackingSpace(context, options.size);
  if (lacking) return { skipped: lacking };
  const source = await ensureDataFile(context.dataDir, options.size, log);
  const { folder } = ensureSessionFolder(context.dataDir, source);
  await warmCache(source.path);
  const timeoutMs = transferTimeoutMs(source.size);
  const peers = sessionPeers({ ftxBin: context.ftxBin, cwd: ROOT, timeBinary: context.timeBinary, limitSeconds: hardLimitSeconds(timeoutMs), defaultDigest: context.defaultDigest, sessionFolder: folder });
  const runs = await fileRounds('session', peers, source, options.rounds, timeoutMs, (peer) => join(outDir, `session-${peer.id}`));
  return {
    source: { path: source.path, bytes: source.size },
    sessionFolder: folder,
    rounds: options.rounds,
    groups: peers.map((peer) => fileGroup(runs, peer, ['ftx-alone'])),
    runs,
  };
}

async function runStream(context) {
  const { options, outDir } = context;
  const lacking = lackingSpace(context, options.size);
  if (lacking) return { skipped: lacking };
  const source = await ensureDataFile(context.dataDir, options.size, log);
  await warmCache(source.path);
  const timeoutMs = transferTimeoutMs(source.size);
  const all = streamPeers({ ftxBin: context.ftxBin, ncPath: context.nc.path, cwd: ROOT, timeBinary: context.timeBinary, limitSeconds: hardLimitSeconds(timeoutMs), defaultDigest: context.defaultDigest });
  const skippedPeers = all.filter((peer) => peer.skip).map((peer) => ({ peer: peer.id, reason: peer.skip }));
  for (const { peer, reason } of skippedPeers) log(`stream: skipping ${peer}: ${reason}`);
  const peers = all.filter((peer) => !peer.skip);
  const runs = await fileRounds('stream', peers, source, options.rounds, timeoutMs, (peer) => join(outDir, `stream-${peer.id}.bin`));
  return {
    source: { path: source.path, bytes: source.size },
    rounds: options.rounds,
    skippedPeers,
    groups: peers.map((peer) => fileGroup(runs, peer, ['nc-stream', 'ftx-file'])),
    runs,
  };
}

/** Every peer once per round (order rotated), one file each, through runTransfer. */
async function fileRounds(name, peers, source, rounds, timeoutMs, outFor) {
  const runs = [];
  for (let round = 1; round <= rounds; round++) {
    for (const peer of rotated(peers, round)) {
      const run = await runTransfer(peer, 'file', source, { out: outFor(peer), timeoutMs });
      run.round = round;
      runs.push(run);
      log(`${name} ${round}/${rounds}  ${peer.id.padEnd(11)} ${describeRun(run)}`);
    }
  }
  return runs;
}

/** One peer's runs of a one-file scenario, with same-round ratios to each of `references`. */
function fileGroup(runs, peer, references) {
  const mine = runs.filter((run) => run.peer === peer.id);
  const valid = mine.filter((run) => run.valid);
  const peerIs = (id) => (candidate) => candidate.peer === id;
  const vs = {};
  const cpuVs = {};
  for (const reference of references.filter((id) => id !== peer.id)) {
    vs[reference] = sameRoundRatios(mine, runs, peerIs(reference), (run) => run.mbps);
    cpuVs[reference] = sameRoundRatios(mine, runs, peerIs(reference), (run) => run.bothCpuPerGiB);
  }
  return {
    peer: peer.id,
    label: peer.label,
    runs: mine.length,
    valid: valid.length,
    errors: mine.filter((run) => !run.valid).map((run) => `round ${run.round}: ${run.error}`),
    mbps: summarize(valid.map((run) => run.mbps)),
    wallSeconds: summarize(valid.map((run) => run.wallSeconds)),
    sender: sideSummary(valid.map((run) => run.sender)),
    receiver: sideSummary(valid.map((run) => run.receiver)),
    bothCpuPerGiB: summarize(valid.map((run) => run.bothCpuPerGiB)),
    vs,
    cpuVs,
  };
}

async function runBigTree(context) {
  const { options } = context;
  if (context.nc.skip) return { skipped: `tar|nc needs OpenBSD nc: ${context.nc.skip}` };
  const [medium] = await treeMedia(context, ['tmpfs']);
  if (medium.skipped) return { skipped: medium.skipped };
  // Every file takes at least a page of tmpfs (RAM), and the source tree is in the page cache too.
  const memoryNeeded = options.bigTree.files * 2 * 4096 + 512 * MB;
  const memory = availableMemoryBytes();
  if (memory !== undefined && memory < memoryNeeded) return { skipped: `only ${(memory / GIB).toFixed(1)} GiB of memory available; ${options.bigTree.files} files on tmpfs want about ${(memoryNeeded / GIB).toFixed(1)}` };
  const tree = ensureTree(context.dataDir, options.bigTree, log);
  warmTree(tree.path);
  const timeoutMs = treeTimeoutMs(tree);
  const peers = treePeers({ ftxBin: context.ftxBin, ncPath: context.nc.path, cwd: ROOT, timeBinary: context.timeBinary, limitSeconds: hardLimitSeconds(timeoutMs) });
  const order = [peers.ftx, peers.tar];
  const runs = [];
  for (let round = 1; round <= options.bigTreeRounds; round++) {
    for (const peer of rotated(order, round)) {
      const run = await runTreeTransfer(peer, tree, { folder: join(medium.root, `bigtree-${folderSlug(peer.id)}`), timeoutMs });
      Object.assign(run, { round, medium: medium.id });
      runs.push(run);
      log(`bigtree ${round}/${options.bigTreeRounds}  ${peer.id.padEnd(7)} ${describeTreeRun(run)}`);
    }
  }
  return { tree: describeTree(tree), rounds: options.bigTreeRounds, medium, groups: order.map((peer) => treeGroup(runs, medium, peer.id)), runs };
}

// ---------------------------------------------------------------- resume (issue #15)

/**
 * The --size file into `ftx recv FILE` on tmpfs, three attempts per round (order rotated), each
 * into a fresh folder: `full` (whole), `resume` (after a cut at CUT_AT: the same send again)
 * and `no-resume` (after another cut: sent again with --no-resume). Ratios within a round.
 */
async function runResume(context) {
  const { options, outDir } = context;
  const lacking = lackingSpace(context, options.size);
  if (lacking) return { skipped: lacking };
  const source = await ensureDataFile(context.dataDir, options.size, log);
  await warmCache(source.path);
  const timeoutMs = transferTimeoutMs(source.size);
  const common = { ftxBin: context.ftxBin, cwd: ROOT, timeBinary: context.timeBinary, limitSeconds: hardLimitSeconds(timeoutMs), defaultDigest: context.defaultDigest };
  const runs = [];
  for (let round = 1; round <= options.rounds; round++) {
    for (const kind of rotated(RESUME_KINDS, round)) {
      const folder = join(outDir, `resume-${kind}`);
      rmSync(folder, { recursive: true, force: true });
      mkdirSync(folder, { recursive: true });
      const out = join(folder, 'out.bin');
      let cut;
      if (kind !== 'full') {
        cut = await cutTransfer(source, { ...common, out, timeoutMs });
        log(`resume ${round}/${options.rounds}  ${'cut'.padEnd(9)} ${describeCut(cut, source.size)}`);
      }
      const run =
        cut && !cut.valid
          ? { peer: kind, mode: 'file', bytes: source.size, valid: false, error: `the cut before it failed: ${cut.error}` }
          : await runTransfer(resumePeer(kind, { ...common, cut }), 'file', source, { out, timeoutMs });
      Object.assign(run, { round, kind, cut: cut ?? null, leftovers: run.valid ? leftovers(folder) : [] });
      if (run.valid) {
        const moved = run.selfReport?.bytesMoved;
        run.bytesMovedShare = Number.isFinite(moved) ? moved / source.size : null;
        run.movedMbps = Number.isFinite(moved) ? moved / MB / run.wallSeconds : null;
        run.bothCpuSeconds = run.sender.cpuSeconds === null || run.receiver.cpuSeconds === null ? null : run.sender.cpuSeconds + run.receiver.cpuSeconds;
      }
      runs.push(run);
      rmSync(folder, { recursive: true, force: true });
      log(`resume ${round}/${options.rounds}  ${kind.padEnd(9)} ${describeResumeRun(run)}`);
    }
  }
  const isFull = (candidate) => candidate.kind === 'full';
  const wall = (run) => run.wallSeconds;
  const groups = RESUME_KINDS.map((kind) => {
    const mine = runs.filter((run) => run.kind === kind);
    const valid = mine.filter((run) => run.valid);
    const phase = (name) => summarize(valid.map((run) => run.selfReport?.phases?.[name]));
    return {
      kind,
      runs: mine.length,
      valid: valid.length,
      errors: mine.filter((run) => !run.valid).map((run) => `round ${run.round}: ${run.error}`),
      leftovers: valid.filter((run) => run.leftovers.length).map((run) => `round ${run.round}: ${run.leftovers.join(', ')}`),
      cutShare: kind === 'full' ? null : summarize(valid.map((run) => run.cut.durableBytes / source.size)),
      bytesMovedShare: summarize(valid.map((run) => run.bytesMovedShare)),
      wallSeconds: summarize(valid.map(wall)),
      mbps: summarize(valid.map((run) => run.mbps)),
      movedMbps: summarize(valid.map((run) => run.movedMbps)),
      vsFull: kind === 'full' ? null : sameRoundRatios(mine, runs, isFull, wall),
      bothCpuSeconds: summarize(valid.map((run) => run.bothCpuSeconds)),
      cpuVsFull: kind === 'full' ? null : sameRoundRatios(mine, runs, isFull, (run) => run.bothCpuSeconds),
      senderPeakRssBytes: maxOf(valid.map((run) => run.sender.peakRssBytes)),
      receiverPeakRssBytes: maxOf(valid.map((run) => run.receiver.peakRssBytes)),
      phases: Object.fromEntries(['toReceiving', 'prefixCheck', 'data', 'exit'].map((name) => [name, phase(name)])),
    };
  });
  const cuts = runs.filter((run) => run.cut?.valid).map((run) => run.cut);
  return {
    source: { path: source.path, bytes: source.size },
    rounds: options.rounds,
    cutAt: CUT_AT,
    cuts: {
      made: runs.filter((run) => run.cut).length,
      valid: cuts.length,
      /** Where the cuts fell: the record's durable bytes / the file. */
      durableShare: summarize(cuts.map((cut) => cut.durableBytes / source.size)),
      /** How far past the threshold the partial grew before the kill landed and the receiver closed it. */
      overshootBytes: summarize(cuts.map((cut) => cut.partialBytes - cut.thresholdBytes)),
      /** Bytes in the partial that its record does not vouch for (not durable when the receiver exited). */
      notDurableBytes: summarize(cuts.map((cut) => cut.partialBytes - cut.durableBytes)),
      secondsToCut: summarize(cuts.map((cut) => cut.seconds)),
    },
    groups,
    runs,
  };
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
    cpuPerGiB: summarize(sides.map((side) => side.cpuPerGiB)),
    userPerGiB: summarize(sides.map((side) => side.userPerGiB)),
    sysPerGiB: summarize(sides.map((side) => side.sysPerGiB)),
    peakRssBytes: summarize(sides.map((side) => side.peakRssBytes)),
  };
}

function maxOf(values) {
  const finite = values.filter((value) => Number.isFinite(value));
  return finite.length ? Math.max(...finite) : null;
}

function describeRun(run) {
  if (!run.valid) return `INVALID: ${run.error}`;
  return (
    `${run.wallSeconds.toFixed(2)} s  ${run.mbps.toFixed(0)} MB/s  cpu/GiB send ${fixed(run.sender.cpuPerGiB, 2) ?? '-'} / recv ${fixed(run.receiver.cpuPerGiB, 2) ?? '-'}  ` +
    `rss send ${mb(run.sender.peakRssBytes)} / recv ${mb(run.receiver.peakRssBytes)} MB  ok`
  );
}

function describeCut(cut, size) {
  if (!cut.valid) return `INVALID: ${cut.error}`;
  const share = (bytes) => (Number.isFinite(bytes) ? `${((bytes / size) * 100).toFixed(1)}%` : '-');
  return `killed at ${share(cut.cutAtBytes)} after ${cut.seconds.toFixed(2)} s; kept ${share(cut.partialBytes)}, durable ${share(cut.durableBytes)} (receiver exit ${cut.receiverExit})`;
}

function describeResumeRun(run) {
  if (!run.valid) return `INVALID: ${run.error}`;
  const view = run.selfReport ?? {};
  const prefix = view.phases?.prefixCheck;
  return (
    `${run.wallSeconds.toFixed(2)} s  ${run.mbps.toFixed(0)} MB/s  moved ${fixed((run.bytesMovedShare ?? NaN) * 100, 1) ?? '-'}% (${fixed(run.movedMbps, 0) ?? '-'} MB/s), skipped ${view.bytesSkipped ?? '-'}` +
    `${typeof prefix === 'number' ? `  prefix check ${ms(prefix)} ms` : ''}  cpu both ${fixed(run.bothCpuSeconds, 2) ?? '-'} s  ${run.compared}` +
    (run.leftovers.length ? `  LEFT: ${run.leftovers.join(', ')}` : '')
  );
}

function describeTreeRun(run) {
  if (!run.valid) return `INVALID: ${run.error}`;
  return (
    `${run.wallSeconds.toFixed(2)} s  ${run.filesPerSecond.toFixed(0)} files/s  ${run.mbps.toFixed(1)} MB/s  cpu send ${fixed(run.sender.cpuSeconds, 2) ?? '-'} / recv ${fixed(run.receiver.cpuSeconds, 2) ?? '-'} s  ` +
    `rss send ${mb(run.sender.peakRssBytes)} / recv ${mb(run.receiver.peakRssBytes)} MB  ${run.compared}`
  );
}

function describeServeRun(run) {
  if (!run.valid) return `INVALID: ${run.error}`;
  return (
    `${run.wallSeconds.toFixed(2)} s  ${run.mbps.toFixed(0)} MB/s  recv busy ${fixed(run.receiverMbps, 0) ?? '-'} MB/s  ` +
    `in flight <= ${run.peakInFlight}  recv rss ${mb(run.receiver.peakRssBytes)} MB  ${run.stored.verified}/${run.stored.of} identical (cmp)`
  );
}

/**
 * Copies bin/ and dist/ (not dist/types) to `root` and checks the copy loads its CLI. Tries
 * again while dist/ changes under it or is incomplete (a build in progress).
 */
async function snapshotFtx(root) {
  const cli = join(ROOT, 'dist', 'cli.js');
  for (let attempt = 1; ; attempt++) {
    rmSync(root, { recursive: true, force: true });
    let builtAt;
    let problem;
    try {
      builtAt = statSync(cli).mtimeMs;
      cpSync(join(ROOT, 'bin'), join(root, 'bin'), { recursive: true });
      cpSync(join(ROOT, 'dist'), join(root, 'dist'), { recursive: true, filter: (path) => !path.startsWith(join(ROOT, 'dist', 'types')) });
      // `send --help` (two words) loads dist/cli.js; `--help` alone is answered by bin/ftx.js.
      const check = await runQuiet(process.execPath, [join(root, 'bin', 'ftx.js'), 'send', '--help'], { cwd: ROOT });
      if (check.code !== 0) problem = `the copy of ftx does not start: ${check.stderr.trim().split('\n').slice(-3).join(' ')}`;
      else if (statSync(cli).mtimeMs !== builtAt) problem = 'dist/ changed while it was copied';
    } catch (error) {
      problem = error.message;
    }
    if (!problem) return { root, builtAt: new Date(builtAt).toISOString() };
    rmSync(root, { recursive: true, force: true });
    if (attempt === 6) throw new Error(`cannot take a working copy of bin/ and dist/: ${problem}; run \`npm run build\` and try again`);
    log(`${problem} (a build running?); trying again in 5 s`);
    await delay(5_000);
  }
}

/** The identity of the bench's key: the receiver's summary names it after the handshake. */
const BENCH_KEY_IDENTITY = 'bench';

/**
 * A fresh key for the ftx-tls peer, made by the ftx under test (`ftx keygen --id bench`), in
 * `dir` (mode 700) as bench.key (mode 600: ftx refuses a key file others can read). The same
 * file serves both sides: the sender proves the line, the receiver lists it. A new key each
 * run, so none outlives the run. Resolves { path, identity, madeBy } or { skip: reason };
 * the reason never quotes keygen's output (it would hold the key).
 */
async function makeBenchKey(dir, ftxBin) {
  try {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (error) {
    return { skip: `cannot make ${relative(ROOT, dir)}: ${error.message}` };
  }
  const made = await runQuiet(process.execPath, [ftxBin, 'keygen', '--id', BENCH_KEY_IDENTITY], { cwd: ROOT });
  if (made.code !== 0) return { skip: `ftx keygen exited with ${made.code}: ${made.stderr.trim().split('\n').at(-1) ?? ''}` };
  const lines = made.stdout.split('\n').filter(Boolean);
  if (lines.length !== 1 || !lines[0].startsWith(`${BENCH_KEY_IDENTITY}:`)) return { skip: `ftx keygen did not print one ${BENCH_KEY_IDENTITY}:KEY line` };
  const path = join(dir, `${BENCH_KEY_IDENTITY}.key`);
  try {
    writeFileSync(path, `${lines[0]}\n`, { mode: 0o600, flag: 'wx' });
    // The mode given at creation passes through the umask, which can only clear bits; say it anyway.
    chmodSync(path, 0o600);
  } catch (error) {
    return { skip: `cannot write ${relative(ROOT, path)}: ${error.message}` };
  }
  return { path, identity: BENCH_KEY_IDENTITY, madeBy: `ftx keygen --id ${BENCH_KEY_IDENTITY}` };
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
  const others = [];
  const add = (list, name, value, display, goal, met, note) => list.push({ name, value, display, goal, status: met === null ? 'n/a' : met ? 'met' : 'NOT MET', note });
  const ftxFile = large?.groups.find((group) => group.peer === 'ftx' && group.mode === 'file');
  const digest = results.defaultDigest;
  const sizeNote = large && large.source.bytes !== TARGET.largeBytes ? `measured at ${sizeLabel(large.source.bytes)}; the target is for ${sizeLabel(TARGET.largeBytes)}` : undefined;

  if (large) {
    const vsNc = ftxFile?.vsNc?.median ?? null;
    add(targets, `ftx (${digest}) / nc MB/s, file to file`, vsNc, ratio(vsNc), `>= ${TARGET.ftxVsNcFile.toFixed(2)}x`, vsNc === null ? null : vsNc >= TARGET.ftxVsNcFile, vsNc === null ? 'no valid pair of runs' : sizeNote);
    const cpu = ftxFile?.cpuVsNc?.median ?? null;
    add(
      targets,
      `CPU s/GiB both sides, ftx (${digest}) / nc`,
      cpu,
      cpu === null ? null : `${ratio(cpu)} (${fixed(ftxFile.bothCpuPerGiB.median, 2)} vs ${fixed(large.groups.find((group) => group.peer === 'nc' && group.mode === 'file')?.bothCpuPerGiB.median, 2)})`,
      `<= ${TARGET.cpuVsNc.toFixed(1)}x`,
      cpu === null ? null : cpu <= TARGET.cpuVsNc,
      cpu === null ? 'no valid pair of runs (or no CPU meter)' : sizeNote,
    );
  }
  if (memory) {
    const measured = memory.sizes.filter((entry) => !entry.skipped && entry.valid > 0);
    const skipped = memory.sizes.filter((entry) => entry.skipped || entry.valid === 0).map((entry) => `${entry.label}: ${entry.skipped ?? 'no valid run'}`);
    for (const [side, key, flat] of [
      ['sender', 'senderPeakRssBytes', memory.senderFlat],
      ['receiver', 'receiverPeakRssBytes', memory.receiverFlat],
    ]) {
      const values = measured.map((entry) => entry[key]);
      const peak = maxOf(values);
      add(
        targets,
        `ftx ${side} peak RSS, ${measured.map((entry) => entry.label).join(' / ') || 'no size measured'}`,
        peak,
        peak === null ? null : `${values.map(mb).join(' / ')} MB`,
        `<= ${mb(TARGET.peakRssBytes)} MB each`,
        peak === null ? null : peak <= TARGET.peakRssBytes,
        skipped.length ? `not measured: ${skipped.join('; ')}` : undefined,
      );
      add(
        targets,
        `ftx ${side} RSS flat across sizes`,
        flat?.growthBytes ?? null,
        flat ? `${mb(flat.smallest)} -> ${mb(flat.largest)} MB` : null,
        `growth <= ${mb(FLAT_TOLERANCE_BYTES)} MB`,
        flat ? flat.flat : null,
        flat ? undefined : 'needs two measured sizes',
      );
    }
  }
  if (startup) {
    add(targets, 'ftx --help / node -e 0, wall', startup.helpVsNode, ratio(startup.helpVsNode), `<= ${TARGET.helpVsNode.toFixed(1)}x`, startup.helpVsNode === null ? null : startup.helpVsNode <= TARGET.helpVsNode);
  }
  if (large) {
    const vsClassic = ftxFile?.vsClassic?.median ?? null;
    add(targets, `ftx (${digest}) / classic python MB/s, file to file`, vsClassic, ratio(vsClassic), `>= ${TARGET.ftxVsClassic.toFixed(1)}x`, vsClassic === null ? null : vsClassic >= TARGET.ftxVsClassic, vsClassic === null ? 'no valid pair of runs' : sizeNote);
  }

  // Checks from earlier issues that still hold.
  if (large) {
    const ftxGroups = large.groups.filter((group) => group.peer.startsWith('ftx'));
    const peak = maxOf(ftxGroups.flatMap((group) => [group.sender.peakRssBytes.max, group.receiver.peakRssBytes.max]));
    add(others, `ftx peak RSS, either side, every run of 1. (all digests, TLS)`, peak, peak === null ? null : `${mb(peak)} MB`, `<= ${mb(TARGET.peakRssBytes)} MB`, peak === null ? null : peak <= TARGET.peakRssBytes);
  }
  if (slow) {
    const rss = slow.run?.valid ? slow.run.sender.peakRssBytes : null;
    add(others, `ftx sender RSS, ${slow.rateMbps ?? '?'} MB/s receiver (backpressure)`, rss, rss === null ? null : `${mb(rss)} MB`, `<= ${mb(TARGET.peakRssBytes)} MB`, rss === null ? null : rss <= TARGET.peakRssBytes, slow.skipped ?? (slow.run?.valid ? undefined : slow.run?.error));
  }
  if (serve) {
    const n = serve.senders;
    const vsGoal = `>= ${TARGET.serveVsSequential.toFixed(1)}x`;
    const rssGoal = `<= ${mb(TARGET.serveRssBytes)} MB`;
    if (serve.skipped) {
      add(others, `serve: ${n} senders at once / one after another`, null, null, vsGoal, null, `skipped: ${serve.skipped}`);
    } else {
      const fewer = n === TARGET.serveSenders ? undefined : `${n} senders measured; the target is for ${TARGET.serveSenders}`;
      const vs = serve.concurrentVsSequential?.median ?? null;
      add(others, `serve: ${n} senders at once / one after another`, vs, ratio(vs), vsGoal, vs === null ? null : vs >= TARGET.serveVsSequential, vs === null ? 'no round with both batches valid' : fewer);
      const rss = serve.modes.find((entry) => entry.mode === 'concurrent')?.receiverPeakRssBytes ?? null;
      add(others, `serve: receiver peak RSS, ${n} senders at once`, rss, rss === null ? null : `${mb(rss)} MB`, rssGoal, rss === null ? null : rss <= TARGET.serveRssBytes, rss === null ? 'not measured' : fewer);
    }
  }
  // Sessions (protocol v2).
  const sessions = [];
  const { session, bigTree } = results.scenarios;
  if (bigTree) {
    const ftx = bigTree.groups?.find((group) => group.peer === 'ftx');
    const note = bigTree.skipped ? `skipped: ${bigTree.skipped}` : !ftx?.valid ? 'no valid run' : bigTree.tree.files === TARGET.bigTreeFiles ? undefined : `${bigTree.tree.files} files measured; the target is for ${TARGET.bigTreeFiles}`;
    for (const [side, key] of [
      ['sender', 'senderPeakRssBytes'],
      ['receiver', 'receiverPeakRssBytes'],
    ]) {
      const peak = ftx?.valid ? ftx[key] : null;
      add(sessions, `ftx ${side} peak RSS, one session of ${bigTree.tree?.files ?? TARGET.bigTreeFiles} files`, peak, peak === null ? null : `${mb(peak)} MB`, `<= ${mb(TARGET.bigTreeRssBytes)} MB`, peak === null ? null : peak <= TARGET.bigTreeRssBytes, note);
    }
  }
  if (session) {
    const vs = session.groups?.find((group) => group.peer === 'ftx-session')?.vs['ftx-alone']?.median ?? null;
    add(sessions, 'a file in a folder session / the same file alone, MB/s', vs, ratio(vs), `>= ${TARGET.sessionVsAlone.toFixed(2)}x`, vs === null ? null : vs >= TARGET.sessionVsAlone, session.skipped ? `skipped: ${session.skipped}` : vs === null ? 'no valid pair of runs' : '"about the same", as the bench reads it');
  }
  // Resume (issue #15).
  const resumeChecks = [];
  const { resume } = results.scenarios;
  if (resume) {
    const group = (kind) => resume.groups?.find((entry) => entry.kind === kind);
    const skipped = resume.skipped ? `skipped: ${resume.skipped}` : undefined;
    const sizeNote = resume.source && resume.source.bytes !== TARGET.largeBytes ? `measured at ${sizeLabel(resume.source.bytes)}; the target is for ${sizeLabel(TARGET.largeBytes)}` : undefined;
    const cutNote = resume.cuts?.valid ? `cuts at ${percent(resume.cuts.durableShare.median)} of the file (median; ${percent(resume.cuts.durableShare.min)}-${percent(resume.cuts.durableShare.max)})` : undefined;
    const notes = (...parts) => parts.filter(Boolean).join('; ') || undefined;
    const share = group('resume')?.bytesMovedShare;
    const shareValue = share?.median ?? null;
    add(
      resumeChecks,
      'resume after a cut at ~50%: bytes sent on the 2nd attempt / the file',
      shareValue,
      shareValue === null ? null : `${percent(shareValue)} [${percent(share.min)}-${percent(share.max)}]`,
      `<= ${percent(TARGET.resumeBytesShare, 0)}`,
      shareValue === null ? null : shareValue <= TARGET.resumeBytesShare,
      skipped ?? (shareValue === null ? 'no valid resume' : notes(cutNote, sizeNote)),
    );
    const vs = group('resume')?.vsFull;
    const vsValue = vs?.median ?? null;
    add(
      resumeChecks,
      'resume wall / a whole send, same round (prefix check included)',
      vsValue,
      vsValue === null ? null : `${ratio(vsValue)} [${ratio(vs.min)}-${ratio(vs.max)}]`,
      `<= ${TARGET.resumeVsFull.toFixed(1)}x`,
      vsValue === null ? null : vsValue <= TARGET.resumeVsFull,
      skipped ?? (vsValue === null ? 'no round with both valid' : sizeNote),
    );
    const whole = group('no-resume')?.vsFull;
    add(
      resumeChecks,
      'sent again with --no-resume after a cut / a whole send, wall',
      whole?.median ?? null,
      whole ? `${ratio(whole.median)} [${ratio(whole.min)}-${ratio(whole.max)}]` : null,
      '~1.00x (no goal)',
      null,
      skipped ?? (whole ? 'what the kept partial costs when it is not used' : 'no round with both valid'),
    );
  }
  return { targets, others, sessions, resume: resumeChecks };
}

function printReport(results) {
  const out = [];
  const { large, memory, slow, startup, digests } = results.scenarios;
  const m = results.machine;
  out.push(
    '',
    `ftx benchmark  ${results.startedAt}  ${results.git}; dist built ${results.distBuiltAt ?? '?'}`,
    `node ${m.node}, ${m.cpus} CPUs (${m.cpuModel}), Linux ${m.kernel}, ${m.memoryGiB} GiB RAM; received files in ${results.outDir}; CPU/RSS meter: ${results.meter}`,
    `ftx's default digest: ${results.defaultDigest}; its BLAKE3 engine here: ${results.blake3Engine?.kind ?? '?'}${results.blake3Engine?.reason ? ` (${results.blake3Engine.reason})` : ''}`,
  );

  if (large) {
    const nc = (mode) => large.groups.find((group) => group.peer === 'nc' && group.mode === mode);
    out.push('', `1. One large file: ${sizeLabel(large.source.bytes)} random, ${large.rounds} rounds, peers alternating (order rotated each round)`);
    out.push(
      table(
        ['peer', 'mode', 'ok', 'MB/s median [min-max]', 'x nc [min-max]', 'CPU/GiB send', 'CPU/GiB recv', 'CPU/GiB both', 'both x nc', 'send usr/sys', 'recv usr/sys', 'RSS send MB', 'RSS recv MB'],
        large.groups.map((group) => [
          group.peer,
          group.mode,
          `${group.valid}/${group.runs}`,
          spread(group.mbps),
          group.peer === 'nc' ? (nc(group.mode)?.valid ? '1.00x' : null) : group.vsNc ? `${ratio(group.vsNc.median)} [${ratio(group.vsNc.min)}-${ratio(group.vsNc.max)}]` : null,
          fixed(group.sender.cpuPerGiB.median, 2),
          fixed(group.receiver.cpuPerGiB.median, 2),
          fixed(group.bothCpuPerGiB.median, 2),
          group.peer === 'nc' ? (nc(group.mode)?.valid ? '1.00x' : null) : ratio(group.cpuVsNc?.median),
          usrSys(group.sender),
          usrSys(group.receiver),
          mb(group.sender.peakRssBytes.max),
          mb(group.receiver.peakRssBytes.max),
        ]),
        'll',
      ),
    );
    out.push(
      "   MB/s = 10^6 bytes per second of wall time, from the sender's spawn until both sides exited (process start-up included).",
      '   x nc = median of the same-round ratios to nc in the same mode (not the ratio of the medians).',
      '   CPU/GiB = user+sys seconds of the whole process (GNU time: start-up and exit included) per GiB moved, median over rounds;',
      "   both = the two sides of one run added, median over rounds; both x nc = median of same-round ratios of that sum to nc's.",
      '   usr/sys = the median user and system parts of CPU/GiB. RSS = peak resident set, max over rounds.',
      '   file: output on tmpfs, byte-compared with cmp (a run that differs is INVALID); sink: output to /dev/null, exit codes only.',
      '   ftx has no sink mode: it stages into a temporary file beside the target and renames it, which /dev/null cannot be.',
    );
    for (const group of large.groups.filter((entry) => entry.vsFtx || entry.cpuVsFtx)) {
      const key = large.tlsKey;
      const withRange = (summary) => (summary ? `${ratio(summary.median)} [${ratio(summary.min)}-${ratio(summary.max)}]` : '-');
      const cpu = (side) => ratio(group.cpuVsFtx[side]?.median) ?? '-';
      out.push(
        `   ${group.peer}: ftx (${group.digest}) with --key-file on both sides: TLS 1.3 with a pre-shared key, made each run by the ftx under test`,
        `   (${key.madeBy}; mode 600, in ${key.path}, removed at the end); both summaries must name identity ${key.identity}.`,
        `   ${group.peer} x ftx (plain, same digest; same-round medians): MB/s ${withRange(group.vsFtx)}; CPU/GiB send ${cpu('send')}, recv ${cpu('recv')}, both ${cpu('both')}.`,
      );
    }
    const ftxGroups = large.groups.filter((group) => group.peer.startsWith('ftx') && group.valid);
    if (ftxGroups.length) {
      out.push(
        table(
          ['ftx', 'digest', 'engine', 'own rate MB/s (accept to receipt)', 'x classic', 'x node pipe'],
          ftxGroups.map((group) => [group.peer, group.digest, group.digestEngines?.join('/') || '-', spread(group.selfReportedMbps), ratio(group.vsClassic?.median), ratio(group.vsNode?.median)]),
          'll',
        )
          .split('\n')
          .map((line) => `   ${line}`)
          .join('\n'),
      );
      out.push(`   ftx's digests checked against the bench's own (blake3: ${large.source.digestTools?.blake3 ?? '?'}; sha256: ${large.source.digestTools?.sha256 ?? '?'}; xxh128: ${large.source.digestTools?.xxh128 ?? '?'}).`);
    }
    for (const skipped of large.skipped) out.push(`   skipped ${skipped.peer}: ${skipped.reason}`);
    for (const group of large.groups) for (const error of group.errors) out.push(`   INVALID ${group.peer} ${group.mode} ${oneLine(error)}`);
  }

  if (memory) {
    out.push('', `2. Memory stays flat: ftx (${results.defaultDigest}) file to file, peak RSS per side`);
    out.push(
      table(
        ['file', 'ok', 'MB/s', 'CPU/GiB send', 'CPU/GiB recv', 'send RSS MB', 'recv RSS MB', 'note'],
        memory.sizes.map((entry) =>
          entry.skipped
            ? [entry.label, '-', null, null, null, null, null, `skipped: ${entry.skipped}`]
            : [
                entry.label,
                `${entry.valid}/${entry.runs.length}`,
                fixed(entry.mbps.median, 0),
                fixed(median(entry.runs.filter((run) => run.valid).map((run) => run.sender.cpuPerGiB)), 2),
                fixed(median(entry.runs.filter((run) => run.valid).map((run) => run.receiver.cpuPerGiB)), 2),
                mb(entry.senderPeakRssBytes),
                mb(entry.receiverPeakRssBytes),
                oneLine(entry.errors.join('; '), 120),
              ],
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
          (run.valid ? `${run.mbps.toFixed(1)} MB/s, send RSS ${mb(run.sender.peakRssBytes)} MB, recv RSS ${mb(run.receiver.peakRssBytes)} MB` : `INVALID: ${oneLine(run.error)}`),
      );
    }
  }

  const serve = results.scenarios.serve;
  if (serve?.skipped) out.push('', `3. Many senders: skipped: ${serve.skipped}`);
  else if (serve) {
    out.push(
      '',
      `3. Many senders: ${serve.senders} x ${sizeLabel(serve.fileSize)} = ${sizeLabel(serve.totalBytes)} (a distinct random file each) into one ftx recv --serve on tmpfs;`,
      `   all at once vs the same files one after another, a fresh receiver per batch, ${serve.rounds} rounds (order alternated); digest ${serve.digest}`,
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
      "   Every stored file is byte-compared with its source (cmp) and both ends' digests checked against the bench's own; the receiver is stopped with SIGTERM and must exit 0.",
    );
    const refusals = serve.modes.reduce((total, entry) => total + entry.busyRefusals, 0);
    if (refusals) out.push(`   busy refusals: ${refusals}`);
    for (const entry of serve.modes) for (const error of entry.errors) out.push(`   INVALID ${entry.mode} ${oneLine(error)}`);
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
    out.push('   vs node -e 0 = median of the same-round ratios.');
    if (startup.refusedSummary) out.push(`   ftx send to a closed port said: ${JSON.stringify(startup.refusedSummary).slice(0, 200)}`);
    for (const problem of startup.problems) out.push(`   unexpected: ${problem}`);
  }

  if (digests) {
    const mib = digests.chunkBytes / 1024 / 1024;
    out.push('', `5. Digests on one core, in memory: ${sizeLabel(digests.bytes)} in ${mib} MiB updates per run, ${digests.rounds} rounds (median [min-max]), GB/s = 10^9 bytes/s`);
    out.push(
      table(
        ['digest', 'implementation', 'GB/s hot', 'GB/s cold', 'CPU s/GiB hot', 'CPU s/GiB cold', 'CPU/wall'],
        digests.rows.map((row) =>
          row.skipped
            ? [row.id, row.implementation, null, null, null, null, `skipped: ${row.skipped}`]
            : [row.id, row.implementation, spread(row.hot.gbps, (value) => fixed(value, 2)), spread(row.cold.gbps, (value) => fixed(value, 2)), fixed(row.hot.cpuPerGiB.median, 3), fixed(row.cold.cpuPerGiB.median, 3), fixed(row.hot.cpuOverWall.median, 2)],
        ),
        'll',
      ),
    );
    out.push(
      `   hot = ${digests.workingSets.hot} hashed over and over (in cache, like a chunk hashed as it arrives); cold = ${digests.workingSets.cold} in turn (beyond the caches).`,
      '   CPU/wall near 1.00: one core. Native and wasm BLAKE3 are the code ftx runs (native unless the binary cannot load).' +
        (digests.blake3Agree === null ? '' : ` Native and wasm BLAKE3 digests ${digests.blake3Agree ? 'agree' : 'DIFFER'}.`),
    );
  }

  const tree = results.scenarios.tree;
  if (tree?.skipped) out.push('', `6. Many small files: skipped: ${tree.skipped}`);
  else if (tree) {
    const t = tree.tree;
    out.push(
      '',
      `6. Many small files: ${t.files} files of ${sizeText(t.spec.minBytes, t.spec.maxBytes)} in ${t.spec.folders} folders (${(t.bytes / MB).toFixed(1)} MB, random), one session each; ${tree.rounds} rounds, order rotated`,
      '   ftx send DIR -> ftx recv FOLDER   vs   tar c DIR | nc -N  ->  nc -l | tar x   (on disk also: ... | tar x && sync -f FOLDER)',
    );
    out.push(indent(treeTable(tree.groups, tree.media)));
    out.push(
      '   files/s, MB/s: the tree over the wall time from the sender\'s spawn until both sides exited (start-up included).',
      '   x tar|nc (x tar+sync) = median of same-round files/s ratios on the same medium; CPU s = user+sys of the whole side (GNU time;',
      '   for tar|nc: bash, tar and nc together), both = the sum per run; recv usr/sys = the receiver\'s parts. RSS = peak, max over rounds.',
      '   Every received tree compared with its source by diff -r (and nothing else left beside it); ftx\'s summaries must count every',
      '   file, folder and byte, none failed. ftx fsyncs every file and folder; tar x fsyncs nothing (hence the +sync row on disk).',
    );
    for (const medium of tree.media) if (medium.skipped) out.push(`   skipped ${medium.id}: ${medium.skipped}`);
    for (const group of tree.groups) for (const error of group.errors) out.push(`   INVALID ${group.medium} ${group.peer} ${oneLine(error)}`);
    if (tree.profile) pushProfile(out, `   CPU profile of one ftx tree transfer on ${tree.profile.medium} (${tree.profile.reason}; main thread self time, top 5; profiles in ${tree.profile.dir})`, tree.profile, 5);
  }

  const session = results.scenarios.session;
  if (session?.skipped) out.push('', `7. A file in a session: skipped: ${session.skipped}`);
  else if (session) {
    out.push('', `7. A file in a session: ${sizeLabel(session.source.bytes)} random, inside a folder session (ftx send DIR) vs alone (ftx send FILE), both into ftx recv FOLDER on tmpfs; ${session.rounds} rounds, order rotated`);
    out.push(indent(fileTable(session.groups, 'ftx-alone', 'x alone')));
    out.push(
      `   DIR (${relative(ROOT, session.sessionFolder)}) holds only a hard link to the file. x alone = median of same-round MB/s ratios; CPU/GiB as in 1.`,
      "   Each stored file byte-compared with the source (cmp); both summaries must be ok with the byte count (alone: and the source's digest).",
    );
    for (const group of session.groups) for (const error of group.errors) out.push(`   INVALID ${group.peer} ${oneLine(error)}`);
  }

  const stream = results.scenarios.stream;
  if (stream?.skipped) out.push('', `8. A stream: skipped: ${stream.skipped}`);
  else if (stream) {
    out.push('', `8. A stream: cat ${sizeLabel(stream.source.bytes)} | ftx send - --name NAME  ->  ftx recv - > file on tmpfs, vs cat | nc -N -> nc -l > file; ${stream.rounds} rounds, order rotated`);
    out.push(indent(fileTable(stream.groups, 'nc-stream', 'x nc', 'ftx-file', 'x ftx file')));
    out.push(
      '   ftx-file: ftx send FILE -> ftx recv FILE, for reference. CPU includes cat on the sending side of both streams.',
      "   Every output byte-compared with the source (cmp); ftx's sender summary and the receiver's \"received\" log line must give the source's digest (b3sum).",
    );
    for (const skipped of stream.skippedPeers) out.push(`   skipped ${skipped.peer}: ${skipped.reason}`);
    for (const group of stream.groups) for (const error of group.errors) out.push(`   INVALID ${group.peer} ${oneLine(error)}`);
  }

  const bigTree = results.scenarios.bigTree;
  if (bigTree?.skipped) out.push('', `9. A large session: skipped: ${bigTree.skipped}`);
  else if (bigTree) {
    const t = bigTree.tree;
    out.push('', `9. A large session: ${t.files} files of ${sizeText(t.spec.minBytes, t.spec.maxBytes)} in ${t.spec.folders} folders (${(t.bytes / MB).toFixed(1)} MB) in one session, into tmpfs; ${bigTree.rounds} round(s); columns as in 6.`);
    out.push(indent(treeTable(bigTree.groups, [bigTree.medium])));
    for (const group of bigTree.groups) for (const error of group.errors) out.push(`   INVALID ${group.peer} ${oneLine(error)}`);
  }

  const resume = results.scenarios.resume;
  if (resume?.skipped) out.push('', `10. Resume: skipped: ${resume.skipped}`);
  else if (resume) pushResume(out, resume);

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

  const { targets, others, sessions, resume: resumeChecks } = results.targets;
  if (targets.length) {
    out.push('', 'Targets (issue #12; same-round medians)');
    out.push(table(['target', 'measured', 'goal', 'status', 'note'], targets.map((target) => [target.name, target.display, target.goal, target.status, oneLine(target.note, 120)]), 'lrlll'));
  }
  if (others.length) {
    out.push('', 'Other checks (earlier issues)');
    out.push(table(['check', 'measured', 'goal', 'status', 'note'], others.map((target) => [target.name, target.display, target.goal, target.status, oneLine(target.note, 120)]), 'lrlll'));
  }
  if (sessions.length) {
    out.push('', 'Sessions (protocol v2; same-round medians)');
    out.push(table(['check', 'measured', 'goal', 'status', 'note'], sessions.map((target) => [target.name, target.display, target.goal, target.status, oneLine(target.note, 120)]), 'lrlll'));
  }
  if (resumeChecks.length) {
    out.push('', 'Resume (issue #15; same-round medians)');
    out.push(table(['check', 'measured', 'goal', 'status', 'note'], resumeChecks.map((target) => [target.name, target.display, target.goal, target.status, oneLine(target.note, 120)]), 'lrlll'));
  }
  out.push('');
  return out.join('\n') + '\n';
}

/** 48.3%, from a share (0.483). */
function percent(share, digits = 1) {
  return typeof share === 'number' && Number.isFinite(share) ? `${(share * 100).toFixed(digits)}%` : null;
}

/** Section 10: medians per attempt, where the resume's time goes, then every round. */
function pushResume(out, resume) {
  const withRange = (summary) => (summary ? `${ratio(summary.median)} [${ratio(summary.min)}-${ratio(summary.max)}]` : null);
  const percentSpread = (summary) => (summary && summary.median !== null ? `${percent(summary.median)} [${percent(summary.min)}-${percent(summary.max)}]` : null);
  out.push(
    '',
    `10. Resume: ${sizeLabel(resume.source.bytes)} random into ftx recv FILE on tmpfs, ${resume.rounds} rounds, order rotated: sent whole; cut at ${percent(resume.cutAt, 0)} (sender SIGKILLed)`,
    '    then the same send again (resumes); cut again then sent again with --no-resume',
  );
  out.push(
    indent(
      table(
        ['attempt', 'ok', 'cut at [min-max]', 'sent [min-max]', 'wall s [min-max]', 'x whole wall [min-max]', 'MB/s file', 'MB/s sent', 'CPU s both', 'both x whole', 'RSS send MB', 'RSS recv MB'],
        resume.groups.map((group) => [
          group.kind,
          `${group.valid}/${group.runs}`,
          percentSpread(group.cutShare),
          percentSpread(group.bytesMovedShare),
          spread(group.wallSeconds, (value) => fixed(value, 2)),
          group.kind === 'full' ? (group.valid ? '1.00x' : null) : withRange(group.vsFull),
          fixed(group.mbps.median, 0),
          fixed(group.movedMbps.median, 0),
          fixed(group.bothCpuSeconds.median, 2),
          group.kind === 'full' ? (group.valid ? '1.00x' : null) : ratio(group.cpuVsFull?.median),
          mb(group.senderPeakRssBytes),
          mb(group.receiverPeakRssBytes),
        ]),
        'll',
      ),
    ),
  );
  out.push(
    "    cut at = the prefix the receiver kept (its .ftx-resume record's durable bytes) / the file; sent = the receiver's --json bytes",
    "    (bytes that moved) / the file; wall from the sender's spawn until both exited; x whole = median of same-round ratios to the",
    '    whole send. MB/s file = the file over the wall time; MB/s sent = the bytes that moved over it. CPU = user+sys of both sides.',
    "    Every result byte-compared with the source (cmp); both summaries ok with the source's digest; moved + skipped = the file;",
    "    resume must skip exactly the record's durable bytes (sender's bytesSkipped = receiver's), --no-resume none.",
  );
  out.push(
    '    Where the time goes (median [min-max], the receiver\'s log, ms clock): spawn->receiving = start-up, connect, header;',
    '    prefix check = receiving->resumed (both ends hash the kept prefix; before the first new byte); data = ->received (new bytes,',
    '    final digest, fsync, rename); exit = received->both exited.',
    indent(
      table(
        ['attempt', 'spawn->receiving ms', 'prefix check ms', 'data s', 'exit ms'],
        resume.groups.map((group) => [
          group.kind,
          spread(group.phases.toReceiving, ms),
          group.kind === 'resume' ? spread(group.phases.prefixCheck, ms) : null,
          spread(group.phases.data, (value) => fixed(value, 2)),
          spread(group.phases.exit, ms),
        ]),
        'l',
      ),
    ),
  );
  const cuts = resume.cuts;
  out.push(
    `    Cuts: ${cuts.valid}/${cuts.made} as expected (receiver exit 9, partial and record kept); the sender was killed ${spread(cuts.secondsToCut, (value) => fixed(value, 2)) ?? '-'} s after its spawn;`,
    `    the partial grew ${spread(cuts.overshootBytes, mb) ?? '-'} MB past the ${percent(resume.cutAt, 0)} mark before the receiver closed it; bytes in it its record does not count: ${spread(cuts.notDurableBytes, mb) ?? '-'} MB.`,
  );
  const rounds = [...new Set(resume.runs.map((run) => run.round))];
  const find = (round, kind) => resume.runs.find((run) => run.round === round && run.kind === kind);
  const wallOf = (run) => (run?.valid ? fixed(run.wallSeconds, 2) : run ? 'INVALID' : null);
  const vsWhole = (run, full) => (run?.valid && full?.valid ? ratio(run.wallSeconds / full.wallSeconds) : null);
  out.push(
    '    Per round:',
    indent(
      table(
        ['round', 'order', 'whole s', 'cut at', 'sent', 'resume s', 'x whole', 'prefix check ms', 'cut at (2)', 'no-resume s', 'x whole'],
        rounds.map((round) => {
          const [full, resumed, whole] = ['full', 'resume', 'no-resume'].map((kind) => find(round, kind));
          const order = resume.runs.filter((run) => run.round === round).map((run) => run.kind).join(',');
          return [
            round,
            order,
            wallOf(full),
            percent(resumed?.cut?.durableBytes / resume.source.bytes),
            resumed?.valid ? percent(resumed.bytesMovedShare) : null,
            wallOf(resumed),
            vsWhole(resumed, full),
            resumed?.valid ? ms(resumed.selfReport?.phases?.prefixCheck) : null,
            percent(whole?.cut?.durableBytes / resume.source.bytes),
            wallOf(whole),
            vsWhole(whole, full),
          ];
        }),
        'rl',
      ),
    ),
  );
  for (const group of resume.groups) for (const error of group.errors) out.push(`    INVALID ${group.kind} ${oneLine(error)}`);
  for (const group of resume.groups) for (const left of group.leftovers) out.push(`    left beside the stored file after ${group.kind}: ${left}`);
}

/** "4 KiB", "0-100 bytes" */
function sizeText(minBytes, maxBytes) {
  if (minBytes !== maxBytes) return `${minBytes}-${maxBytes} bytes`;
  return minBytes % 1024 === 0 ? `${minBytes / 1024} KiB` : `${minBytes} bytes`;
}

const indent = (text) => text.split('\n').map((line) => `   ${line}`).join('\n');

function treeTable(groups, media) {
  const fsType = (id) => media.find((medium) => medium.id === id)?.fsType;
  const withRange = (summary) => (summary ? `${ratio(summary.median)} [${ratio(summary.min)}-${ratio(summary.max)}]` : null);
  return table(
    ['medium', 'peer', 'ok', 'files/s median [min-max]', 'MB/s', 'x tar|nc [min-max]', 'x tar+sync', 'CPU s send', 'CPU s recv', 'recv usr/sys', 'CPU s both', 'both x tar|nc', 'RSS send MB', 'RSS recv MB'],
    groups.map((group) => [
      `${group.medium} (${fsType(group.medium) ?? '?'})`,
      group.peer,
      `${group.valid}/${group.runs}`,
      spread(group.filesPerSecond),
      fixed(group.mbps.median, 1),
      group.peer === 'tar|nc' ? (group.valid ? '1.00x' : null) : withRange(group.vsTar),
      group.vsTarSync ? ratio(group.vsTarSync.median) : null,
      fixed(group.senderCpuSeconds.median, 2),
      fixed(group.receiverCpuSeconds.median, 2),
      fixed(group.receiverUserSeconds.median, 2) === null ? null : `${fixed(group.receiverUserSeconds.median, 2)}/${fixed(group.receiverSysSeconds.median, 2)}`,
      fixed(group.bothCpuSeconds.median, 2),
      group.peer === 'tar|nc' ? (group.valid ? '1.00x' : null) : ratio(group.cpuVsTar?.median),
      mb(group.senderPeakRssBytes),
      mb(group.receiverPeakRssBytes),
    ]),
    'lll',
  );
}

/** One-file session scenarios: `reference` is 1.00x; `second` (optional) gets a column of its own. */
function fileTable(groups, reference, referenceLabel, second, secondLabel) {
  const withRange = (summary) => (summary ? `${ratio(summary.median)} [${ratio(summary.min)}-${ratio(summary.max)}]` : null);
  const headers = ['peer', 'ok', 'MB/s median [min-max]', `${referenceLabel} [min-max]`, ...(second ? [secondLabel] : []), 'CPU/GiB send', 'CPU/GiB recv', 'CPU/GiB both', `both ${referenceLabel}`, 'RSS send MB', 'RSS recv MB'];
  return table(
    headers,
    groups.map((group) => [
      group.peer,
      `${group.valid}/${group.runs}`,
      spread(group.mbps),
      group.peer === reference ? (group.valid ? '1.00x' : null) : withRange(group.vs[reference]),
      ...(second ? [group.peer === second ? (group.valid ? '1.00x' : null) : ratio(group.vs[second]?.median)] : []),
      fixed(group.sender.cpuPerGiB.median, 2),
      fixed(group.receiver.cpuPerGiB.median, 2),
      fixed(group.bothCpuPerGiB.median, 2),
      group.peer === reference ? (group.valid ? '1.00x' : null) : ratio(group.cpuVs[reference]?.median),
      mb(group.sender.peakRssBytes.max),
      mb(group.receiver.peakRssBytes.max),
    ]),
    'll',
  );
}

function pushProfile(out, title, profile, top) {
  out.push(title);
  for (const [side, summary] of Object.entries(profile.sides)) {
    if (summary.error) {
      out.push(`   ${side}: ${summary.error}`);
      continue;
    }
    out.push(`   ${side}: ${summary.totalMs.toFixed(0)} ms sampled`);
    out.push(
      indent(
        table(
          ['function', 'where', 'self ms', 'share'],
          summary.top.slice(0, top).map((entry) => [entry.function, entry.where, entry.selfMs.toFixed(0), `${(entry.share * 100).toFixed(1)}%`]),
          'll',
        ),
      ),
    );
  }
}

/** "0.33/0.60": the median user and system seconds per GiB of one side. */
function usrSys(side) {
  const user = fixed(side.userPerGiB.median, 2);
  const sys = fixed(side.sysPerGiB.median, 2);
  return user === null || sys === null ? null : `${user}/${sys}`;
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
  let ftxRoot;
  /** The ftx-tls peer's key file lives here (mode 700), removed at the end. */
  const keyDir = join(dataDir, `ftx-keys-${process.pid}`);
  /** Folders the scenarios make outside outDir (the disk medium's), removed at the end. */
  const scratchDirs = [];
  const cleanup = () => {
    killAll();
    if (!options.outDir) rmSync(outDir, { recursive: true, force: true });
    else rmSync(join(outDir, 'trees'), { recursive: true, force: true });
    for (const dir of scratchDirs) rmSync(dir, { recursive: true, force: true });
    if (ftxRoot) rmSync(ftxRoot, { recursive: true, force: true });
    rmSync(keyDir, { recursive: true, force: true });
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
  const needsNc = needsPeers || ['tree', 'stream', 'bigtree'].some((name) => options.scenarios.has(name));
  const nc = needsNc ? await ensureTool('nc', 'netcat-openbsd', log, isOpenbsdNetcat) : { skip: 'not needed' };
  const socat = needsPeers ? await ensureTool('socat', 'socat', log) : { skip: 'not needed' };
  const python = needsPeers ? await ensureTool('python3', 'python3', log) : { skip: 'not needed' };
  // The ftx under test: a copy of bin/ and dist/, so a rebuild while the bench runs (npm run build
  // removes dist/ first) neither breaks runs nor mixes two builds in one report.
  let snapshot;
  try {
    snapshot = await snapshotFtx(join(dataDir, `ftx-under-test-${process.pid}`));
  } catch (error) {
    log(error.message);
    cleanup();
    return 1;
  }
  ftxRoot = snapshot.root;
  // ftx's own registry: which digest it uses when none is asked for, and which BLAKE3 code loads here.
  const registry = await import(pathToFileURL(join(ftxRoot, 'dist', 'index.js')).href);
  const defaultDigest = registry.DEFAULT_DIGEST;
  const ftxBin = join(ftxRoot, 'bin', 'ftx.js');
  const tlsKey = needsPeers ? await makeBenchKey(keyDir, ftxBin) : { skip: 'not needed' };
  if (tlsKey.skip && needsPeers) log(`no key for ftx-tls: ${tlsKey.skip}`);
  const context = {
    options,
    dataDir,
    outDir,
    timeBinary: time.path,
    defaultDigest,
    ftxRoot,
    ftxBin,
    nc,
    scratchDirs,
    tlsKey,
    peers: definePeers({ root: ROOT, ftxBin, nc, socat, python, timeBinary: time.path, defaultDigest, tlsKey }),
  };

  const results = {
    startedAt: new Date().toISOString(),
    git: gitDescription(),
    distBuiltAt: snapshot.builtAt,
    ftxUnderTest: `a copy of bin/ and dist/ taken at the start, in ${relative(ROOT, ftxRoot)} (removed at the end)`,
    defaultDigest,
    blake3Engine: registry.blake3Engine(),
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
    if (options.scenarios.has('digests')) results.scenarios.digests = await runDigests(context);
    if (options.scenarios.has('tree')) results.scenarios.tree = await runTree(context);
    if (options.scenarios.has('session')) results.scenarios.session = await runSessionFile(context);
    if (options.scenarios.has('stream')) results.scenarios.stream = await runStream(context);
    if (options.scenarios.has('bigtree')) results.scenarios.bigTree = await runBigTree(context);
    if (options.scenarios.has('resume')) results.scenarios.resume = await runResume(context);
    if (options.profile) results.profile = await runProfile(context);
  } finally {
    cleanup();
  }
  results.finishedAt = new Date().toISOString();
  results.targets = evaluateTargets(results);
  const report = printReport(results);
  results.report = report;
  process.stdout.write(report);
  const resultPath = join(resultsDir, `${timestamp()}.json`);
  writeFileSync(resultPath, `${JSON.stringify(results, null, 2)}\n`);
  writeFileSync(join(resultsDir, 'last-report.txt'), `${report.trimStart()}\nfull results: ${relative(ROOT, resultPath)}\n`);
  log(`results saved to ${resultPath} (report also in bench/results/last-report.txt)`);
  return 0;
}

process.exitCode = await main();
