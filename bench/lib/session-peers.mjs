/**
 * Peers for the one-large-file session scenarios, in runTransfer()'s shape (transfer.mjs):
 *
 * - session: the same file sent inside a folder session (`ftx send DIR`, DIR holding only a
 *   hard link to the file) and alone (`ftx send FILE`), both into `ftx recv FOLDER`;
 * - stream: `cat FILE | ftx send - --name NAME` into `ftx recv -` (stdout redirected to the
 *   output file), against `cat FILE | nc -N` into `nc -l` and, for reference, ftx file to file.
 *
 * Every side listens on or connects to 127.0.0.1 only and runs under `timeout -k`.
 * runTransfer byte-compares the stored file with the source (cmp); the checks here add what
 * ftx itself must say (ok, bytes, and the source's digest as the bench computed it, b3sum).
 */
import { existsSync, linkSync, mkdirSync, copyFileSync, rmSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { freePort, lastJson, waitForListener } from './peers.mjs';
import { startMeasured, waitForLine } from './proc.mjs';

const READY_TIMEOUT_MS = 15_000;
const FTX_RECV = ['--port', '0', '--bind', '127.0.0.1', '--log-format', 'json', '--log-level', 'info'];
const LISTENING = /"event":"listening".*?"port":(\d+)/;

/**
 * bench/data/session-<size>/ holding a hard link to the source file (no second copy of the
 * bytes); relinked when the source was regenerated (another inode).
 */
export function ensureSessionFolder(dataDir, source) {
  const folder = join(dataDir, `session-${basename(source.path).replace(/^random-|\.bin$/g, '')}`);
  const linked = join(folder, basename(source.path));
  const sourceStats = statSync(source.path);
  if (existsSync(linked) && statSync(linked).ino === sourceStats.ino) return { folder, file: linked };
  rmSync(folder, { recursive: true, force: true });
  mkdirSync(folder, { recursive: true });
  try {
    linkSync(source.path, linked);
  } catch {
    copyFileSync(source.path, linked); // No hard links here: a copy is the same bytes.
  }
  return { folder, file: linked };
}

/** `options`: { ftxBin, cwd, timeBinary, limitSeconds, defaultDigest, sessionFolder (from ensureSessionFolder) } */
export function sessionPeers({ ftxBin, cwd, timeBinary, limitSeconds, defaultDigest, sessionFolder }) {
  const measured = (command, args, extra = {}) => startMeasured(command, args, { timeBinary, cwd, limitSeconds, ...extra });
  const receiveIntoFolder = async (out) => {
    const proc = measured(process.execPath, [ftxBin, 'recv', out, '--json', ...FTX_RECV]);
    const match = await waitForLine(proc, LISTENING, READY_TIMEOUT_MS, 'ftx recv');
    return { proc, port: Number(match[1]) };
  };
  return [
    {
      id: 'ftx-session',
      label: 'ftx send DIR (the file inside a folder session) -> ftx recv FOLDER',
      targetIsFolder: true,
      storedPath: (out, source) => join(out, basename(sessionFolder), basename(source.path)),
      startReceiver: receiveIntoFolder,
      startSender: (_src, port) => measured(process.execPath, [ftxBin, 'send', sessionFolder, `127.0.0.1:${port}`, '--json', '--quiet']),
      check: (source, sent, received) => checkSummaries(source, sent, received, { files: 1, folders: 1, digest: null, defaultDigest }),
    },
    {
      id: 'ftx-alone',
      label: 'ftx send FILE -> ftx recv FOLDER',
      targetIsFolder: true,
      storedPath: (out, source) => join(out, basename(source.path)),
      startReceiver: receiveIntoFolder,
      startSender: (src, port) => measured(process.execPath, [ftxBin, 'send', src, `127.0.0.1:${port}`, '--json', '--quiet']),
      check: (source, sent, received) => checkSummaries(source, sent, received, { files: 1, folders: 0, digest: 'sender', defaultDigest }),
    },
  ];
}

/** `options`: { ftxBin, ncPath, cwd, timeBinary, limitSeconds, defaultDigest } */
export function streamPeers({ ftxBin, ncPath, cwd, timeBinary, limitSeconds, defaultDigest }) {
  const measured = (command, args, extra = {}) => startMeasured(command, args, { timeBinary, cwd, limitSeconds, ...extra });
  const bash = (script, name, ...args) => measured('bash', ['-o', 'pipefail', '-c', script, name, ...args.map(String)]);
  return [
    {
      id: 'ftx-stream',
      label: 'cat FILE | ftx send - --name NAME -> ftx recv - > out',
      async startReceiver(out) {
        // recv - fills stdout with the data, so its result is read from its JSON log (stderr).
        const proc = measured(process.execPath, [ftxBin, 'recv', '-', ...FTX_RECV], { stdout: out });
        const match = await waitForLine(proc, LISTENING, READY_TIMEOUT_MS, 'ftx recv -');
        return { proc, port: Number(match[1]) };
      },
      startSender: (src, port) => bash('cat "$1" | "$2" "$3" send - "127.0.0.1:$4" --name "$5" --json --quiet', 'ftx-stream-send', src, process.execPath, ftxBin, port, basename(src)),
      check: (source, sent, received) => checkSummaries(source, sent, received, { files: 1, folders: 0, digest: 'both', defaultDigest, receiverLog: true }),
    },
    {
      id: 'nc-stream',
      label: 'cat FILE | nc -N -> nc -l > out',
      skip: ncPath ? undefined : 'nc (openbsd) not available',
      async startReceiver(out) {
        const port = await freePort();
        const proc = measured(ncPath, ['-l', '127.0.0.1', String(port)], { stdout: out });
        await waitForListener(port, proc, 'nc -l');
        return { proc, port };
      },
      startSender: (src, port) => bash('cat "$1" | "$2" -N 127.0.0.1 "$3"', 'nc-stream-send', src, ncPath, port),
      check: exitCodes,
    },
    {
      id: 'ftx-file',
      label: 'ftx send FILE -> ftx recv FILE (reference)',
      async startReceiver(out) {
        const proc = measured(process.execPath, [ftxBin, 'recv', out, '--json', '--force', ...FTX_RECV]);
        const match = await waitForLine(proc, LISTENING, READY_TIMEOUT_MS, 'ftx recv');
        return { proc, port: Number(match[1]) };
      },
      startSender: (src, port) => measured(process.execPath, [ftxBin, 'send', src, `127.0.0.1:${port}`, '--json', '--quiet']),
      check: (source, sent, received) => checkSummaries(source, sent, received, { files: 1, folders: 0, digest: 'both', defaultDigest }),
    },
  ];
}

function exitCodes(_source, sent, received) {
  if (sent.code !== 0) return `sender exited with ${sent.code ?? sent.signal}: ${sent.stderr.trim().slice(-300)}`;
  if (received.code !== 0) return `receiver exited with ${received.code ?? received.signal}: ${received.stderr.trim().slice(-300)}`;
  return undefined;
}

/**
 * ok on both sides, the byte count, the file and folder counts, and the digest where ftx
 * reports one: `digest` 'sender' (the sender's summary), 'both' (and the receiver's), or null
 * (a folder session reports no digest of its own; cmp is the check). `receiverLog`: the
 * receiver's result is its "received" log line (recv - has no --json).
 */
function checkSummaries(source, sent, received, { files, folders, digest, defaultDigest, receiverLog = false }) {
  const failure = exitCodes(source, sent, received);
  if (failure) return failure;
  const sentSummary = lastJson(sent.stdout);
  const receivedSummary = receiverLog ? findEvent(received.stderr, 'received') : lastJson(received.stdout);
  if (!sentSummary?.ok) return `ftx send summary not ok: ${sent.stdout.trim().slice(-300) || sent.stderr.trim().slice(-300)}`;
  if (!receivedSummary || (!receiverLog && !receivedSummary.ok)) return `ftx recv result not ok: ${(receiverLog ? received.stderr : received.stdout).trim().slice(-300)}`;
  if (sentSummary.bytes !== source.size || receivedSummary.bytes !== source.size) return `ftx reported ${sentSummary.bytes} (send) / ${receivedSummary.bytes} (recv) bytes; the source has ${source.size}`;
  if (sentSummary.files !== files || sentSummary.folders !== folders || sentSummary.failed !== 0) return `ftx send reported ${sentSummary.files} files, ${sentSummary.folders} folders, ${sentSummary.failed} failed; expected ${files}, ${folders}, 0`;
  const want = source.digests?.[defaultDigest];
  if (digest && sentSummary.hash !== defaultDigest) return `ftx send used ${sentSummary.hash}, not ${defaultDigest}`;
  if (digest && sentSummary.digest !== want) return `ftx send reported ${defaultDigest} ${sentSummary.digest}; the source's is ${want}`;
  if (digest === 'both' && receivedSummary.digest !== want) return `ftx recv reported ${defaultDigest} ${receivedSummary.digest}; the source's is ${want}`;
  return undefined;
}

function findEvent(text, event) {
  for (const line of text.trim().split('\n').reverse()) {
    try {
      const entry = JSON.parse(line);
      if (entry.event === event) return entry;
    } catch {
      // Not JSON.
    }
  }
  return undefined;
}
