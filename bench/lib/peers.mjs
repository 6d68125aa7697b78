/**
 * The peers under test. Each knows how to start its receiver (resolving once it
 * listens, with the port), how to start its sender, and what its own output must say
 * for a run to count (exit codes, ftx's JSON summary and digest). Byte comparison of
 * the written file is common to all and lives in the runner.
 */
import { createServer } from 'node:net';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { startMeasured, waitForLine } from './proc.mjs';

const READY_TIMEOUT_MS = 15_000;

/**
 * ftx's receiver announces its port in a JSON log line at info level; --quiet would
 * lower the level to warn and hide it, so the bench asks for info explicitly. The
 * progress bar is off anyway (stderr is a pipe, not a terminal).
 */
const FTX_RECV_FLAGS = ['--port', '0', '--json', '--force', '--log-format', 'json', '--log-level', 'info'];

/**
 * @param tlsKey  the bench's own key for the ftx-tls peer: { path, identity } of a key file
 *                (mode 600) made with the ftx under test, or { skip: reason } when there is none.
 */
export function definePeers({ root, ftxBin, nc, socat, python, timeBinary, defaultDigest, tlsKey }) {
  const nodePipe = join(root, 'bench', 'node-pipe.mjs');
  const measured = (command, args, options = {}) => startMeasured(command, args, { timeBinary, cwd: root, ...options });

  /**
   * ftx with one digest: `hash` undefined runs it without --hash (its default, which must be
   * `defaultDigest`); otherwise with --hash HASH. With `key` ({ path, identity }) both sides
   * take --key-file (the same line serves the sender and, as its list of one, the receiver),
   * so the transfer runs inside TLS 1.3 with that pre-shared key.
   */
  const ftxPeer = (id, label, hash, key) => {
    const expected = hash ?? defaultDigest;
    const keyArgs = key?.path ? ['--key-file', key.path] : [];
    return {
      id,
      label,
      ftx: true,
      tls: key !== undefined,
      skip: key?.skip,
      digest: expected,
      // ftx stages into a temporary file beside the target and renames it: /dev/null
      // cannot be a target, so there is no sink mode to measure.
      modes: ['file'],
      async startReceiver(out) {
        const proc = measured(process.execPath, [ftxBin, 'recv', out, ...FTX_RECV_FLAGS, ...keyArgs]);
        const match = await waitForLine(proc, /"event":"listening".*?"port":(\d+)/, READY_TIMEOUT_MS, 'ftx recv');
        return { proc, port: Number(match[1]) };
      },
      startSender(src, port) {
        return measured(process.execPath, [ftxBin, 'send', src, `127.0.0.1:${port}`, '--json', '--quiet', ...(hash ? ['--hash', hash] : []), ...keyArgs]);
      },
      check: (source, sender, receiver) => checkFtx(source, sender, receiver, expected, key?.identity),
      /** ftx's own view: transfer time from accept to receipt, without process start-up; and which code hashed. */
      selfReport(sender, receiver) {
        const received = lastJson(receiver.stdout);
        const sent = lastJson(sender.stdout);
        return {
          recvSeconds: received?.seconds ?? null,
          recvMbps: perSecondToMB(received?.bytesPerSecond),
          sendSeconds: sent?.seconds ?? null,
          sendMbps: perSecondToMB(sent?.bytesPerSecond),
          hash: sent?.hash ?? null,
          sendDigestEngine: sent?.digestEngine ?? null,
          recvDigestEngine: received?.digestEngine ?? null,
        };
      },
    };
  };

  return [
    ftxPeer('ftx', `ftx (default digest: ${defaultDigest})`, undefined),
    ftxPeer('ftx-sha256', 'ftx --hash sha256', 'sha256'),
    ftxPeer('ftx-xxh128', 'ftx --hash xxh128', 'xxh128'),
    ftxPeer('ftx-tls', `ftx --key-file (TLS 1.3 with a pre-shared key; ${defaultDigest})`, undefined, tlsKey ?? { skip: 'no key file' }),
    {
      id: 'nc',
      label: 'nc (openbsd, plain TCP)',
      modes: ['file', 'sink'],
      skip: nc.skip,
      async startReceiver(out) {
        // nc cannot report the port it got, so pick a free one and watch the kernel's
        // socket table for its listener (connecting to test it would use up nc's one accept).
        const port = await freePort();
        const proc = measured(nc.path, ['-l', '-p', String(port)], { stdout: out });
        await waitForListener(port, proc, 'nc -l');
        return { proc, port };
      },
      startSender(src, port) {
        return measured(nc.path, ['-N', '127.0.0.1', String(port)], { stdin: src });
      },
      check: exitCodesOnly,
    },
    {
      // The large-buffer ceiling: plain TCP with 1 MiB reads and writes (nc moves 16 KiB at a time).
      id: 'socat',
      label: 'socat -b 1048576 (plain TCP, 1 MiB buffer)',
      modes: ['file', 'sink'],
      skip: socat.skip,
      async startReceiver(out) {
        const port = await freePort();
        // CREATE: creat(2), so O_TRUNC; on /dev/null (sink) that is harmless.
        const proc = measured(socat.path, ['-b', '1048576', '-u', `TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr`, `CREATE:${out}`]);
        await waitForListener(port, proc, 'socat TCP-LISTEN');
        return { proc, port };
      },
      startSender(src, port) {
        return measured(socat.path, ['-b', '1048576', '-u', `OPEN:${src},rdonly`, `TCP:127.0.0.1:${port}`]);
      },
      check: exitCodesOnly,
    },
    {
      id: 'classic',
      label: 'classic python (1 KiB recv loop)',
      modes: ['file', 'sink'],
      skip: python.skip,
      async startReceiver(out) {
        const proc = measured(python.path, [join(root, 'test/peers/classic_server.py'), out, '--port', '0']);
        const match = await waitForLine(proc, /^listening on (\d+)/, READY_TIMEOUT_MS, 'classic_server.py');
        return { proc, port: Number(match[1]) };
      },
      startSender(src, port) {
        return measured(python.path, [join(root, 'test/peers/classic_client.py'), src, '127.0.0.1', String(port)]);
      },
      check(source, sender, receiver) {
        const failure = exitCodesOnly(source, sender, receiver);
        if (failure) return failure;
        const match = /received (\d+) bytes/.exec(receiver.stdout);
        if (!match || Number(match[1]) !== source.size) return `classic_server.py did not report ${source.size} bytes: ${receiver.stdout.trim().slice(-200)}`;
        return undefined;
      },
    },
    {
      id: 'node',
      label: 'node pipe (no protocol, no hash)',
      modes: ['file', 'sink'],
      async startReceiver(out) {
        const proc = measured(process.execPath, [nodePipe, 'recv', out, '--port', '0']);
        const match = await waitForLine(proc, /^listening on (\d+)/, READY_TIMEOUT_MS, 'node-pipe recv');
        return { proc, port: Number(match[1]) };
      },
      startSender(src, port) {
        return measured(process.execPath, [nodePipe, 'send', src, '127.0.0.1', String(port)]);
      },
      check: exitCodesOnly,
    },
  ];
}

function exitCodesOnly(_source, sender, receiver) {
  if (sender.code !== 0) return `sender exited with ${sender.code ?? sender.signal}: ${sender.stderr.trim().slice(-300)}`;
  if (receiver.code !== 0) return `receiver exited with ${receiver.code ?? receiver.signal}: ${receiver.stderr.trim().slice(-300)}`;
  return undefined;
}

/**
 * What ftx's two --json summaries must say for a run to count: ok on both sides, the digest
 * asked for, both digests equal to the source's as the bench computed it (b3sum for blake3,
 * node:crypto for sha256, hash-wasm for xxh128), the byte count; `sha256` too when that is the digest.
 * With `identity` (a keyed run), both must also name it: ftx reports an identity only after
 * a TLS handshake with a listed key, so a run that went through in plain text cannot count.
 */
function checkFtx(source, sender, receiver, expected, identity) {
  const failure = exitCodesOnly(source, sender, receiver);
  if (failure) return failure;
  const sent = lastJson(sender.stdout);
  const received = lastJson(receiver.stdout);
  if (!sent?.ok) return `ftx send summary not ok: ${sender.stdout.trim().slice(-300) || sender.stderr.trim().slice(-300)}`;
  if (!received?.ok) return `ftx recv summary not ok: ${receiver.stdout.trim().slice(-300) || receiver.stderr.trim().slice(-300)}`;
  if (sent.hash !== expected || received.hash !== expected) return `ftx used ${sent.hash}/${received.hash}, not ${expected}`;
  const want = source.digests?.[expected];
  if (!want) return `the bench has no ${expected} digest of the source`;
  if (sent.digest !== want || received.digest !== want) return `ftx reported ${expected} ${sent.digest} (send) / ${received.digest} (recv); the source's is ${want}`;
  if (expected === 'sha256' && (sent.sha256 !== source.sha256 || received.sha256 !== source.sha256)) return "ftx's sha256 field differs from the source's sha256";
  if (received.bytes !== source.size) return `ftx recv reported ${received.bytes} bytes, expected ${source.size}`;
  if (identity !== undefined && (sent.identity !== identity || received.identity !== identity)) {
    return `ftx reported identity ${sent.identity ?? '(none)'} (send) / ${received.identity ?? '(none)'} (recv), not ${identity}: not an authenticated transfer`;
  }
  return undefined;
}

export function lastJson(text) {
  const lines = text.trim().split('\n').reverse();
  for (const line of lines) {
    try {
      return JSON.parse(line);
    } catch {
      // Not JSON; keep looking.
    }
  }
  return undefined;
}

/** A port nothing listens on right now (bind to 0, read it, close). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen({ port: 0, host: '127.0.0.1' }, () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Polls /proc/net/tcp{,6} until something listens on `port` (state 0A = LISTEN). */
export async function waitForListener(port, proc, what) {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  const pattern = new RegExp(`^\\s*\\d+: [0-9A-F]+:${hexPort} [0-9A-F]+:0000 0A `, 'm');
  let exited = false;
  proc.done.then(() => {
    exited = true;
  });
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
      try {
        if (pattern.test(readFileSync(table, 'utf8'))) return;
      } catch {
        // No IPv6 table on this machine.
      }
    }
    if (exited) throw new Error(`${what} exited before listening: ${(await proc.done).stderr.trim().slice(-300)}`);
    await delay(5);
  }
  throw new Error(`${what}: nothing listening on port ${port} after ${READY_TIMEOUT_MS / 1000} s`);
}

/** ftx's --json summary gives bytesPerSecond; the bench reports MB/s (1e6 bytes). */
function perSecondToMB(bytesPerSecond) {
  return typeof bytesPerSecond === 'number' ? bytesPerSecond / 1e6 : null;
}
