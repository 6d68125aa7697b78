/**
 * The resume scenario (issue #15): a transfer cut midway continues from the receiver's kept
 * partial. Three kinds of measured attempt, each a runTransfer() (transfer.mjs) of the same file
 * into `ftx recv FILE` on tmpfs, so wall time, CPU, peak RSS and the byte comparison (cmp) are
 * the same as everywhere else:
 *
 * - full:      a fresh receiver into a fresh folder, the whole file (the reference);
 * - resume:    after cutTransfer() left a partial in the folder, a new receiver on the same
 *              target and the same `ftx send` again: it resumes by default;
 * - no-resume: the same, with `ftx send --no-resume`: the file whole, the partial replaced.
 *
 * cutTransfer(): a fresh receiver, the send started, the partial file's size polled (every
 * POLL_MS) and the sender killed with SIGKILL once it holds `at` of the file; the receiver must
 * then exit 9 (connection lost) and keep the partial with its record (`.ftx-resume`), whose
 * `durable` is the prefix the next attempt may resume from.
 *
 * Each attempt's own view comes from both --json summaries (the receiver's `bytes`: bytes that
 * moved this time, its `bytesSkipped`: resumed; the sender's `bytes`: the file, its
 * `bytesSkipped`) and the receiver's JSON log on its clock (pino `time`, ms): `receiving`
 * (the sender's header is in), `resumed` (both ends agreed on the prefix: the first new byte
 * follows), `received` (stored and verified). So the wall time splits into start-up and
 * connect, the prefix check, the new bytes, and exit.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as delay } from 'node:timers/promises';
import { lastJson } from './peers.mjs';
import { startMeasured, waitForLine } from './proc.mjs';

/** Where the cut falls: the sender is killed once the partial holds this much of the file. */
export const CUT_AT = 0.5;
/** The measured attempts of one round (order rotated by the caller), `full` the reference. */
export const RESUME_KINDS = ['full', 'resume', 'no-resume'];

const READY_TIMEOUT_MS = 15_000;
/** How often the partial's size is read while waiting for the cut point: ~1 MB apart at 300 MB/s. */
const POLL_MS = 3;
/** A receiver whose sender was killed sees the connection drop at once; this bounds the wait. */
const CUT_EXIT_TIMEOUT_MS = 30_000;
/** The receiver exits 9 when its sender goes away midway (what ftx documents for a lost connection). */
const CONNECTION_LOST_EXIT = 9;
const FTX_RECV = ['--port', '0', '--bind', '127.0.0.1', '--json', '--log-format', 'json', '--log-level', 'info'];
const LISTENING = /"event":"listening".*?"port":(\d+)/;
const PART_SUFFIX = '.ftx-part';
const RECORD_SUFFIX = '.ftx-resume';

/**
 * A peer in runTransfer()'s shape for one kind of attempt. `cut` (resume, no-resume): the
 * cutTransfer() record that left the partial this attempt starts from.
 * `options`: { ftxBin, cwd, timeBinary, limitSeconds, defaultDigest }
 */
export function resumePeer(kind, { ftxBin, cwd, timeBinary, limitSeconds, defaultDigest, cut }) {
  if (!RESUME_KINDS.includes(kind)) throw new Error(`unknown resume attempt "${kind}"`);
  const measured = (args) => startMeasured(process.execPath, [ftxBin, ...args], { timeBinary, cwd, limitSeconds });
  return {
    id: kind,
    label: { full: 'ftx send FILE, whole (fresh receiver, fresh folder)', resume: 'the same send again after a cut (resumes)', 'no-resume': 'the same send again after a cut, --no-resume' }[kind],
    startReceiver: (out) => startReceiver(measured, out),
    startSender: (src, port) => measured(['send', src, `127.0.0.1:${port}`, '--json', '--quiet', ...(kind === 'no-resume' ? ['--no-resume'] : [])]),
    check: (source, sent, received) => checkAttempt(kind, source, sent, received, { defaultDigest, cut }),
    selfReport: (sent, received) => attemptView(sent, received),
  };
}

/**
 * Starts a send into a fresh receiver and kills the sender (SIGKILL) once the partial beside
 * `out` holds `at` of the file. Resolves { valid, error, cutAtBytes (the partial's size seen
 * when the kill was sent), partialBytes and durableBytes (after the receiver exited: the file's
 * size, and its record's `durable`), keptBytes (the receiver's `partial-kept` log line), seconds
 * (spawn to kill), receiverExit, record }. The partial and its record stay in `out`'s folder.
 */
export async function cutTransfer(source, { ftxBin, cwd, timeBinary, limitSeconds, out, timeoutMs, at = CUT_AT }) {
  const measured = (args) => startMeasured(process.execPath, [ftxBin, ...args], { timeBinary, cwd, limitSeconds });
  const folder = dirname(out);
  const threshold = Math.ceil(source.size * at);
  const record = { valid: false, error: null, at, thresholdBytes: threshold, bytes: source.size };
  const started = [];
  try {
    const receiver = await startReceiver(measured, out);
    started.push(receiver.proc);
    const sender = measured(['send', source.path, `127.0.0.1:${receiver.port}`, '--json', '--quiet']);
    started.push(sender);
    let senderExited = false;
    sender.done.then(() => (senderExited = true));
    const deadline = performance.now() + timeoutMs;
    let seen = 0;
    while (seen < threshold) {
      if (senderExited) throw new Error(`the sender exited (code ${(await sender.done).code}) before the partial held ${(at * 100).toFixed(0)}% (${seen} of ${source.size} bytes)`);
      if (performance.now() > deadline) throw new Error(`the partial held ${seen} of ${source.size} bytes after ${timeoutMs / 1000} s; killed`);
      await delay(POLL_MS);
      seen = partialOf(folder)?.size ?? 0;
    }
    if (!sender.signal('SIGKILL')) sender.kill();
    record.cutAtBytes = seen;
    record.seconds = (performance.now() - sender.startedAt) / 1000;
    let exitTimer;
    const received = await Promise.race([receiver.proc.done, new Promise((resolve) => (exitTimer = setTimeout(resolve, CUT_EXIT_TIMEOUT_MS, null)))]);
    clearTimeout(exitTimer);
    await sender.done;
    if (!received) throw new Error(`the receiver did not exit within ${CUT_EXIT_TIMEOUT_MS / 1000} s of its sender's SIGKILL`);
    record.receiverExit = received.code;
    record.receiverSummary = lastJson(received.stdout) ?? null;
    const events = logEvents(received.stderr);
    record.keptBytes = events.find((entry) => entry.event === 'partial-kept')?.bytes ?? null;
    const partial = partialOf(folder);
    const kept = recordOf(folder);
    record.partialBytes = partial?.size ?? null;
    record.record = kept ?? null;
    record.durableBytes = kept?.durable ?? null;
    if (received.code !== CONNECTION_LOST_EXIT) throw new Error(`the receiver exited ${received.code ?? received.signal} after its sender was killed, not ${CONNECTION_LOST_EXIT}: ${received.stderr.trim().slice(-300)}`);
    if (!partial) throw new Error(`no ${PART_SUFFIX} file kept beside ${basename(out)} (folder holds: ${readdirSync(folder).join(', ') || 'nothing'})`);
    if (!kept) throw new Error(`no readable ${RECORD_SUFFIX} record beside the partial`);
    if (kept.size !== source.size) throw new Error(`the record says size ${kept.size}; the file has ${source.size}`);
    if (kept.durable > partial.size) throw new Error(`the record says ${kept.durable} bytes are durable; the partial has ${partial.size}`);
    record.valid = true;
  } catch (error) {
    record.error = error.message;
  } finally {
    for (const proc of started) proc.kill();
  }
  return record;
}

/** Partial files and records left in `folder` (after a run they should all be gone). */
export function leftovers(folder) {
  try {
    return readdirSync(folder).filter((name) => name.endsWith(PART_SUFFIX) || name.endsWith(RECORD_SUFFIX));
  } catch {
    return [];
  }
}

async function startReceiver(measured, out) {
  const proc = measured(['recv', out, ...FTX_RECV]);
  const match = await waitForLine(proc, LISTENING, READY_TIMEOUT_MS, 'ftx recv');
  return { proc, port: Number(match[1]) };
}

/** { name, size } of the one partial file in `folder`, or undefined. */
function partialOf(folder) {
  let names;
  try {
    names = readdirSync(folder).filter((name) => name.endsWith(PART_SUFFIX));
  } catch {
    return undefined;
  }
  if (names.length !== 1) return undefined;
  try {
    return { name: names[0], size: statSync(join(folder, names[0])).size };
  } catch {
    return undefined; // Renamed or removed between the two calls.
  }
}

function recordOf(folder) {
  const name = readdirSync(folder).find((entry) => entry.endsWith(RECORD_SUFFIX));
  if (!name) return undefined;
  try {
    return JSON.parse(readFileSync(join(folder, name), 'utf8'));
  } catch {
    return undefined;
  }
}

/** ftx's JSON log lines (pino: `time` in ms since the epoch). */
function logEvents(text) {
  const events = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      events.push(JSON.parse(line));
    } catch {
      // Not a log line.
    }
  }
  return events;
}

/**
 * Exit codes; both summaries ok, the file's size and the source's digest (as the bench
 * computed it); what moved plus what was skipped is the file, on both sides; then per kind:
 * full and no-resume move every byte (no-resume must skip nothing), resume skips exactly the
 * prefix the cut's record said was durable (else it did not resume from the kept partial).
 */
function checkAttempt(kind, source, sent, received, { defaultDigest, cut }) {
  if (sent.code !== 0) return `sender exited with ${sent.code ?? sent.signal}: ${sent.stderr.trim().slice(-300)}`;
  if (received.code !== 0) return `receiver exited with ${received.code ?? received.signal}: ${received.stderr.trim().slice(-300)}`;
  const s = lastJson(sent.stdout);
  const r = lastJson(received.stdout);
  if (!s?.ok) return `ftx send summary not ok: ${sent.stdout.trim().slice(-300) || sent.stderr.trim().slice(-300)}`;
  if (!r?.ok) return `ftx recv summary not ok: ${received.stdout.trim().slice(-300)}`;
  const want = source.digests?.[defaultDigest];
  if (s.hash !== defaultDigest || r.hash !== defaultDigest) return `ftx used ${s.hash} (send) / ${r.hash} (recv), not ${defaultDigest}`;
  if (s.digest !== want || r.digest !== want) return `ftx reported ${defaultDigest} ${s.digest} (send) / ${r.digest} (recv); the source's is ${want}`;
  if (s.bytes !== source.size) return `ftx send reported ${s.bytes} bytes; the source has ${source.size}`;
  const skipped = { send: s.bytesSkipped ?? 0, recv: r.bytesSkipped ?? 0 };
  if (skipped.send !== skipped.recv) return `the sides disagree on the bytes skipped: ${skipped.send} (send) / ${skipped.recv} (recv)`;
  if (r.bytes + skipped.recv !== source.size) return `ftx recv moved ${r.bytes} and skipped ${skipped.recv} bytes; together not the source's ${source.size}`;
  if (kind === 'resume' && skipped.recv !== cut?.durableBytes) return `resumed from ${skipped.recv} bytes; the cut's record said ${cut?.durableBytes} were durable${resumeRefusal(received)}`;
  if (kind !== 'resume' && skipped.recv !== 0) return `${kind}: ${skipped.recv} bytes skipped; expected the whole file`;
  return undefined;
}

/** ", receiver: REASON" when the receiver logged why it did not resume. */
function resumeRefusal(received) {
  const refused = logEvents(received.stderr).find((entry) => entry.event === 'resume-refused');
  return refused ? `; the receiver said: ${refused.reason ?? refused.msg}` : '';
}

/**
 * One attempt as ftx saw it: bytes moved and skipped (both summaries), and the phases of
 * the receiver's log, in seconds: `toReceiving` from the sender's spawn (bench clock turned
 * into epoch ms) to the receiver's `receiving` line (start-up, connect, greeting, header),
 * `prefixCheck` from `receiving` to `resumed` (both ends hash the prefix and compare: the
 * time before the first new byte), `data` from there (or from `receiving`) to `received`
 * (new bytes, final digest, fsync and rename), `exit` from `received` to the later exit.
 */
function attemptView(sent, received) {
  const s = lastJson(sent.stdout);
  const r = lastJson(received.stdout);
  const events = logEvents(received.stderr);
  const at = (name) => events.find((entry) => entry.event === name)?.time ?? null;
  const spawnedAt = performance.timeOrigin + sent.startedAt;
  const endedAt = performance.timeOrigin + Math.max(sent.endedAt, received.endedAt);
  const receiving = at('receiving');
  const resumed = at('resumed');
  const stored = at('received');
  const span = (from, to) => (from === null || to === null ? null : (to - from) / 1000);
  return {
    bytesMoved: r?.bytes ?? null,
    bytesSkipped: r?.bytesSkipped ?? null,
    senderBytes: s?.bytes ?? null,
    senderBytesSkipped: s?.bytesSkipped ?? null,
    receiverSeconds: r?.seconds ?? null,
    resumeRefused: events.find((entry) => entry.event === 'resume-refused')?.reason ?? null,
    phases: {
      toReceiving: span(spawnedAt, receiving),
      prefixCheck: span(receiving, resumed),
      data: span(resumed ?? receiving, stored),
      exit: span(stored, endedAt),
    },
  };
}
