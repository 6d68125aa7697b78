/**
 * Folder trees for the session scenarios: generating them (once, reused), the two ways of
 * moving one (`ftx send DIR` into `ftx recv FOLDER`, and `tar c | nc` into `nc -l | tar x`),
 * and one measured transfer of a tree with its result checked.
 *
 * A tree is bench/data/tree-<files>x<size>-<folders>d/dNNN/fNNNNNN.bin, files dealt round-robin
 * into the folders, each of random bytes (a fixed size, or a random size in a range). It is
 * written under a temporary name and renamed, with a manifest beside it (`<tree>.tree.json`:
 * what was asked for and what was written), so an interrupted generation is never trusted.
 *
 * A transfer counts only if both sides exit 0, ftx's summaries (for ftx) account for every
 * file, and the received tree is identical to the source: `diff -r` (contents, and no file
 * missing or extra) and nothing else left in the receiving folder (no temporary file).
 * The clock starts at the sender's spawn (the receiver already listens) and stops when the
 * later side exits; the output is checked and removed after that, off the clock.
 */
import { randomFillSync, randomInt } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { freePort, lastJson, waitForListener } from './peers.mjs';
import { runQuiet, startMeasured, waitForLine } from './proc.mjs';
import { MB } from './stats.mjs';

const READY_TIMEOUT_MS = 15_000;

/** tree-10000x4K-20d, tree-100000x0-100B-100d */
function treeName({ files, folders, minBytes, maxBytes }) {
  const size = minBytes === maxBytes ? bytesLabel(minBytes) : `${minBytes}-${maxBytes}B`;
  return `tree-${files}x${size}-${folders}d`;
}

function bytesLabel(bytes) {
  if (bytes >= 1024 && bytes % 1024 === 0) return bytes % (1024 * 1024) === 0 ? `${bytes / 1024 / 1024}M` : `${bytes / 1024}K`;
  return `${bytes}B`;
}

/**
 * The tree for `spec` ({ files, folders, minBytes, maxBytes }), generated if missing.
 * Returns { name, path, files, folders, bytes, spec }; `folders` counts the top folder too
 * (ftx's summaries do).
 */
export function ensureTree(dataDir, spec, log) {
  const name = treeName(spec);
  const path = join(dataDir, name);
  const manifestPath = `${path}.tree.json`;
  try {
    const manifest = JSON.parse(readFileSync(manifestPath, 'utf8'));
    const same = ['files', 'folders', 'minBytes', 'maxBytes'].every((key) => manifest.spec?.[key] === spec[key]);
    if (same && existsSync(path)) return { name, path, files: manifest.files, folders: manifest.folders, bytes: manifest.bytes, spec };
  } catch {
    // No manifest (or unreadable): generate.
  }
  log(`generating ${path} (${spec.files} files of ${spec.minBytes === spec.maxBytes ? bytesLabel(spec.minBytes) : `${spec.minBytes}-${spec.maxBytes} bytes`} in ${spec.folders} folders, once)...`);
  const partial = `${path}.partial`;
  rmSync(partial, { recursive: true, force: true });
  rmSync(path, { recursive: true, force: true });
  rmSync(manifestPath, { force: true });
  const folderNames = Array.from({ length: spec.folders }, (_, index) => `d${String(index).padStart(3, '0')}`);
  for (const folder of folderNames) mkdirSync(join(partial, folder), { recursive: true });
  const block = Buffer.allocUnsafe(spec.maxBytes);
  let bytes = 0;
  for (let index = 0; index < spec.files; index++) {
    const size = spec.minBytes === spec.maxBytes ? spec.minBytes : randomInt(spec.minBytes, spec.maxBytes + 1);
    randomFillSync(block, 0, size);
    writeFileSync(join(partial, folderNames[index % spec.folders], `f${String(index).padStart(6, '0')}.bin`), block.subarray(0, size));
    bytes += size;
  }
  renameSync(partial, path);
  const tree = { name, path, files: spec.files, folders: spec.folders + 1, bytes, spec };
  writeFileSync(manifestPath, `${JSON.stringify({ spec, files: tree.files, folders: tree.folders, bytes })}\n`);
  return tree;
}

/** Reads every file once, so every peer reads the tree from the page cache (and the dentry cache). */
export function warmTree(path) {
  for (const entry of readdirSync(path, { withFileTypes: true })) {
    const child = join(path, entry.name);
    if (entry.isDirectory()) warmTree(child);
    else readFileSync(child);
  }
}

/**
 * The peers that move a tree. Each: startReceiver(folder) -> { proc, port } once it listens,
 * startSender(tree, port) -> measured process, check(tree, sent, received) -> problem or undefined.
 * Only 127.0.0.1: ftx recv gets --bind, nc -l gets the address.
 *
 * `options`: { ftxBin, ncPath, cwd, timeBinary, limitSeconds, nodeArgs?: { send, recv } (e.g. --cpu-prof) }
 */
export function treePeers({ ftxBin, ncPath, cwd, timeBinary, limitSeconds, nodeArgs = {} }) {
  const measured = (command, args, extra = {}) => startMeasured(command, args, { timeBinary, cwd, limitSeconds, ...extra });
  // pipefail: a failing tar (or nc) must fail the side, not hide behind the pipeline's last command.
  const bash = (script, name, ...args) => measured('bash', ['-o', 'pipefail', '-c', script, name, ...args.map(String)]);
  return {
    ftx: {
      id: 'ftx',
      label: 'ftx send DIR -> ftx recv FOLDER',
      async startReceiver(folder) {
        const proc = measured(process.execPath, [...(nodeArgs.recv ?? []), ftxBin, 'recv', folder, '--port', '0', '--bind', '127.0.0.1', '--json', '--log-format', 'json', '--log-level', 'info']);
        const match = await waitForLine(proc, /"event":"listening".*?"port":(\d+)/, READY_TIMEOUT_MS, 'ftx recv');
        return { proc, port: Number(match[1]) };
      },
      startSender(tree, port) {
        return measured(process.execPath, [...(nodeArgs.send ?? []), ftxBin, 'send', tree.path, `127.0.0.1:${port}`, '--json', '--quiet']);
      },
      check: checkFtxTree,
    },
    tar: {
      id: 'tar|nc',
      label: 'tar c DIR | nc -> nc -l | tar x',
      async startReceiver(folder) {
        const port = await freePort();
        const proc = bash('"$1" -l 127.0.0.1 "$2" | tar x -C "$3"', 'tar-recv', ncPath, port, folder);
        await waitForListener(port, proc, 'nc -l | tar x');
        return { proc, port };
      },
      startSender(tree, port) {
        return bash('tar c -C "$1" "$2" | "$3" -N 127.0.0.1 "$4"', 'tar-send', dirname(tree.path), basename(tree.path), ncPath, port);
      },
      check: exitCodes,
    },
    // tar x never fsyncs; ftx fsyncs every file and folder. On a disk that is a different
    // promise, so this variant pays for durability once at the end (syncfs of the target's
    // file system) and is the closer like-for-like there.
    tarSync: {
      id: 'tar|nc+sync',
      label: 'tar c DIR | nc -> nc -l | tar x && sync -f',
      async startReceiver(folder) {
        const port = await freePort();
        const proc = bash('"$1" -l 127.0.0.1 "$2" | tar x -C "$3" && sync -f "$3"', 'tar-recv-sync', ncPath, port, folder);
        await waitForListener(port, proc, 'nc -l | tar x && sync -f');
        return { proc, port };
      },
      startSender(tree, port) {
        return bash('tar c -C "$1" "$2" | "$3" -N 127.0.0.1 "$4"', 'tar-send', dirname(tree.path), basename(tree.path), ncPath, port);
      },
      check: exitCodes,
    },
  };
}

function exitCodes(_tree, sent, received) {
  if (sent.code !== 0) return `sender exited with ${sent.code ?? sent.signal}: ${sent.stderr.trim().slice(-300)}`;
  if (received.code !== 0) return `receiver exited with ${received.code ?? received.signal}: ${received.stderr.trim().slice(-300)}`;
  return undefined;
}

/** Both --json summaries: ok, every file and folder, no failure or skip, every byte. */
function checkFtxTree(tree, sent, received) {
  const failure = exitCodes(tree, sent, received);
  if (failure) return failure;
  const sentSummary = lastJson(sent.stdout);
  const receivedSummary = lastJson(received.stdout);
  if (!sentSummary?.ok) return `ftx send summary not ok: ${sent.stdout.trim().slice(-300) || sent.stderr.trim().slice(-300)}`;
  if (!receivedSummary?.ok) return `ftx recv summary not ok: ${received.stdout.trim().slice(-300) || received.stderr.trim().slice(-300)}`;
  for (const [side, summary] of [['send', sentSummary], ['recv', receivedSummary]]) {
    if (summary.files !== tree.files || summary.folders !== tree.folders || summary.failed !== 0 || summary.bytes !== tree.bytes || (summary.skipped ?? 0) !== 0) {
      return `ftx ${side} reported ${summary.files} files, ${summary.folders} folders, ${summary.failed} failed, ${summary.skipped ?? 0} skipped, ${summary.bytes} bytes; the tree has ${tree.files}, ${tree.folders}, 0, 0, ${tree.bytes}`;
    }
  }
  if (sentSummary.verified !== true) return `ftx send did not report the session verified: ${JSON.stringify(sentSummary).slice(0, 300)}`;
  return undefined;
}

/**
 * One measured transfer of `tree` by `peer` into `folder` (emptied first, removed after).
 * Returns { peer, files, bytes, valid, error, wallSeconds, filesPerSecond, mbps, sender, receiver,
 * bothCpuSeconds, compared }.
 */
export async function runTreeTransfer(peer, tree, { folder, timeoutMs }) {
  const record = { peer: peer.id, files: tree.files, bytes: tree.bytes, valid: false, error: null };
  rmSync(folder, { recursive: true, force: true });
  mkdirSync(folder, { recursive: true });
  const started = [];
  let timer;
  try {
    const receiver = await peer.startReceiver(folder);
    started.push(receiver.proc);
    const sender = peer.startSender(tree, receiver.port);
    started.push(sender);
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no result after ${timeoutMs / 1000} s; killed`)), timeoutMs);
    });
    const [sent, received] = await Promise.race([Promise.all([sender.done, receiver.proc.done]), timeout]);
    const t0 = sender.startedAt;
    record.wallSeconds = (Math.max(sent.endedAt, received.endedAt) - t0) / 1000;
    record.filesPerSecond = tree.files / record.wallSeconds;
    record.mbps = tree.bytes / MB / record.wallSeconds;
    record.sender = sideOf(sent, t0);
    record.receiver = sideOf(received, t0);
    record.bothCpuSeconds = sent.cpuSeconds === null || received.cpuSeconds === null ? null : sent.cpuSeconds + received.cpuSeconds;
    if (peer.selfReport) record.selfReport = peer.selfReport(sent, received);
    const failure = peer.check(tree, sent, received);
    if (failure) throw new Error(failure);
    record.compared = await compareTree(tree, folder);
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

/** `diff -r` of the source and the received copy, and nothing else in the receiving folder. */
async function compareTree(tree, folder) {
  const extra = readdirSync(folder).filter((name) => name !== tree.name);
  if (extra.length) throw new Error(`unexpected entries beside the received tree: ${extra.slice(0, 5).join(', ')}${extra.length > 5 ? ', ...' : ''}`);
  const diff = await runQuiet('diff', ['-r', '-q', tree.path, join(folder, tree.name)]);
  if (diff.code !== 0) {
    const lines = (diff.stdout + diff.stderr).trim().split('\n');
    throw new Error(`received tree differs (diff -r): ${lines.slice(0, 3).join('; ')}${lines.length > 3 ? `; and ${lines.length - 3} more lines` : ''}`);
  }
  return `diff -r: identical (${tree.files} files)`;
}

function sideOf(result, t0) {
  return {
    exitCode: result.code,
    /** From the sender's spawn to this side's exit. */
    wallSeconds: (result.endedAt - t0) / 1000,
    userSeconds: result.userSeconds,
    sysSeconds: result.sysSeconds,
    cpuSeconds: result.cpuSeconds,
    peakRssBytes: result.peakRssBytes,
    meter: result.meter,
  };
}
