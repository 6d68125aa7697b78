/**
 * One measured transfer: start the receiver, wait until it listens, start the sender,
 * wait for both to exit, check what each side says, byte-compare the output.
 *
 * The clock starts when the sender is spawned (the receiver is already listening,
 * as a user would have it) and stops when the later of the two exits, so the figure
 * is what `time` around the whole transfer would show, process start-up included.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { MB } from './stats.mjs';
import { runQuiet } from './proc.mjs';

export const SINK_PATH = '/dev/null';

/**
 * @param peer      from definePeers() (or session-peers.mjs). A peer whose receiver takes a
 *                  folder (`targetIsFolder`) gets `out` as a fresh empty folder, and says where
 *                  in it the file lands (`storedPath(out, source)`); that file is the one compared.
 * @param mode      'file' (target `out`) or 'sink' (/dev/null)
 * @param source    { path, size, sha256, digests } (digests: the bench's own, per algorithm)
 * @param options   { out, timeoutMs, via?: (port) => Promise<{ port, proc }> } `via` puts
 *                  something (the throttling proxy) between sender and receiver.
 */
export async function runTransfer(peer, mode, source, { out, timeoutMs, via }) {
  const target = mode === 'sink' ? SINK_PATH : out;
  const stored = mode === 'file' && peer.storedPath ? peer.storedPath(out, source) : out;
  if (mode === 'file') rmSync(out, { recursive: true, force: true });
  if (mode === 'file' && peer.targetIsFolder) mkdirSync(out, { recursive: true });
  const record = { peer: peer.id, mode, bytes: source.size, valid: false, error: null };
  const started = [];
  let timer;
  try {
    const receiver = await peer.startReceiver(target);
    started.push(receiver.proc);
    let port = receiver.port;
    if (via) {
      const middle = await via(port);
      started.push(middle.proc);
      port = middle.port;
    }
    const sender = peer.startSender(source.path, port);
    started.push(sender);
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no result after ${timeoutMs / 1000} s; killed`)), timeoutMs);
    });
    const [sent, received] = await Promise.race([Promise.all([sender.done, receiver.proc.done]), timeout]);
    const t0 = sender.startedAt;
    record.wallSeconds = (Math.max(sent.endedAt, received.endedAt) - t0) / 1000;
    record.mbps = source.size / MB / record.wallSeconds;
    record.sender = sideOf(sent, t0, source.size);
    record.receiver = sideOf(received, t0, source.size);
    record.bothCpuPerGiB = record.sender.cpuPerGiB === null || record.receiver.cpuPerGiB === null ? null : record.sender.cpuPerGiB + record.receiver.cpuPerGiB;
    if (peer.selfReport) record.selfReport = peer.selfReport(sent, received);

    const failure = peer.check(source, sent, received);
    if (failure) throw new Error(failure);
    if (mode === 'file') {
      // cmp stops at the first difference and says where; a digest would only say "differs".
      const compared = await runQuiet('cmp', [source.path, stored]);
      if (compared.code !== 0) throw new Error(`output differs from the source: ${(compared.stdout + compared.stderr).trim()}`);
      record.compared = 'cmp: identical';
    } else {
      record.compared = 'sink: nothing to compare (exit codes only)';
    }
    record.valid = true;
  } catch (error) {
    record.error = error.message;
  } finally {
    clearTimeout(timer);
    for (const proc of started) proc.kill();
    if (mode === 'file') rmSync(out, { recursive: true, force: true });
  }
  return record;
}

const GIB = 1024 ** 3;

function sideOf(result, t0, bytes) {
  /** CPU seconds (user+sys, whole process: start-up and exit included) per GiB moved. */
  const perGiB = (seconds) => (typeof seconds === 'number' ? seconds / (bytes / GIB) : null);
  return {
    exitCode: result.code,
    /** From the sender's spawn to this side's exit. */
    wallSeconds: (result.endedAt - t0) / 1000,
    userSeconds: result.userSeconds,
    sysSeconds: result.sysSeconds,
    cpuSeconds: result.cpuSeconds,
    cpuPerGiB: perGiB(result.cpuSeconds),
    userPerGiB: perGiB(result.userSeconds),
    sysPerGiB: perGiB(result.sysSeconds),
    peakRssBytes: result.peakRssBytes,
    meter: result.meter,
  };
}
