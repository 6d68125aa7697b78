/**
 * What each command does once its arguments are parsed: wires the library to the
 * output (log lines, bars) and returns the summary that --json prints. cli.ts owns
 * parsing, signals and exit codes; this file is loaded only when a command runs.
 */
import { constants } from 'node:fs';
import { access, lstat, stat } from 'node:fs/promises';
import type { Server } from 'node:net';
import { basename, dirname, resolve as resolvePath, sep } from 'node:path';
import { escapeForTerminal, type LogFormat, type LogLevel, type Output, type Progress, type TransferBoard } from './output.js';
import { InterruptedError, localIoError, LocalIoError, RefusedError, UsageError } from '../errors.js';
import type { HashAlgorithm } from '../protocol/messages.js';
import { addressesToAnnounce, connect, formatHostPort, listen, type HostPort } from '../transport/tcp.js';
import { removeStaleLeftovers, type ConflictPolicy, type Leftover } from '../fs/staged-file.js';
import { bytesPerSecond, formatBytes, formatRate, plural } from '../util/units.js';

export interface CommonArgs {
  timeout: number;
  quiet: boolean;
  json: boolean;
  'log-level': LogLevel | undefined;
  'log-format': LogFormat | 'auto';
}

export interface RecvArgs extends CommonArgs {
  target: string;
  port: number;
  bind: string | undefined;
  force: boolean;
  'max-size': number | undefined;
  serve: boolean;
  'max-conns': number;
  'on-conflict': ConflictPolicy | undefined;
  grace: number;
  'per-host-conns': number;
  'per-host-transfers': number;
  'handshake-timeout': number;
  'min-rate': number;
  'allow-dotfiles': boolean;
  'partial-max-age': number;
}

export interface SendArgs extends CommonArgs {
  file: string;
  destination: HostPort;
  name: string | undefined;
  'verified-only': boolean;
  hash: HashAlgorithm;
}

export interface PingArgs extends CommonArgs {
  destination: HostPort;
  message: string;
}

/** What a finished command reports: written as one JSON line on stdout with --json. */
export type Summary = Record<string, unknown>;

export interface Interruption {
  signal: AbortSignal;
  signalName(): NodeJS.Signals | undefined;
  /** Called on the second signal instead of exiting at once; the third always exits. */
  onRepeat: (() => void) | undefined;
  dispose(): void;
}

export async function runRecv(args: RecvArgs, output: Output, signal: AbortSignal): Promise<Summary> {
  const { receiveOne } = await import('../api/receive.js');
  const port = args.port;
  const maxSize = args['max-size'];
  const target = resolvePath(args.target);
  await checkTarget(args.target, target, conflictPolicy(args) !== 'refuse');

  const server: Server = await listen(port, args.bind);
  const boundPort = (server.address() as { port: number }).port;
  let progress: Progress | undefined;
  try {
    // Take connections first, then announce: a sender may connect the moment the port is open.
    const receiving = receiveOne(server, {
      target,
      ...receiverLimits(args),
      ...(maxSize === undefined ? {} : { maxSize }),
      signal,
      log: output.log,
      onStart: ({ name, path, size, peer }) => {
        output.log.info({ event: 'receiving', peer, name, path, size }, `receiving ${name} (${formatBytes(size)}) from ${peer}`);
        progress = output.startProgress(size, 'recv');
      },
      onProgress: (bytes) => progress?.update(bytes),
    });
    receiving.catch(() => {}); // Awaited below, after the announcement.
    await announceListening(args, output, server, target);
    const result = await receiving;
    progress?.stop();
    output.log.info(
      { event: 'received', ...result },
      `saved ${result.path} (${formatBytes(result.bytes)} in ${result.seconds.toFixed(2)} s, ${formatRate(result.bytes, result.seconds)}), ${result.hash} ${result.digest}`,
    );
    return {
      protocol: result.protocol,
      path: result.path,
      bytes: result.bytes,
      ...digestFields(result),
      seconds: round(result.seconds),
      bytesPerSecond: bytesPerSecond(result.bytes, result.seconds),
      peer: result.peer,
      port: boundPort,
    };
  } finally {
    progress?.stop();
    server.close();
  }
}

/** Summary fields for a digest: always hash + digest, and `sha256` when it is one (for scripts). */
function digestFields(result: { hash: HashAlgorithm; digest: string }): Summary {
  return { hash: result.hash, digest: result.digest, ...(result.hash === 'sha256' ? { sha256: result.digest } : {}) };
}

/** The options one-shot and serve receivers share. */
function receiverLimits(args: RecvArgs) {
  return {
    onConflict: conflictPolicy(args),
    idleTimeoutMs: args.timeout * 1000,
    handshakeTimeoutMs: args['handshake-timeout'] * 1000,
    minBytesPerSecond: args['min-rate'],
    allowDotFiles: args['allow-dotfiles'],
    perHostConnections: args['per-host-conns'],
  };
}

function conflictPolicy(args: RecvArgs): ConflictPolicy {
  return args['on-conflict'] ?? (args.force ? 'overwrite' : 'refuse');
}

/** Serve mode: runs until Ctrl-C/SIGTERM/SIGHUP, then drains (see ServeReceiver.shutdown). */
export async function runServe(args: RecvArgs, output: Output, interruption: Interruption): Promise<Summary> {
  const { ServeReceiver } = await import('../api/serve.js');
  const folder = resolvePath(args.target);
  const folderStats = await stat(folder).catch((error: unknown) => {
    throw localIoError(error, 'serve into', folder);
  });
  if (!folderStats.isDirectory()) throw new UsageError(`--serve needs a folder to store files in; ${folder} is not one`);
  await requireWritable(folder);
  const server = await listen(args.port, args.bind);
  const boundPort = (server.address() as { port: number }).port;
  // The receiver takes connections from the moment it exists; the announcement and the
  // board come after (a transfer that starts before the board just has no line).
  let board: TransferBoard | undefined;
  const stats = { stored: 0, failed: 0, pings: 0, bytes: 0, dropped: 0 };
  const quieted = rateLimitedLog(output);
  const receiver = new ServeReceiver(server, {
    folder,
    maxConns: args['max-conns'],
    ...receiverLimits(args),
    perHostTransfers: args['per-host-transfers'],
    partialMaxAgeMs: args['partial-max-age'],
    ...(args['max-size'] === undefined ? {} : { maxSize: args['max-size'] }),
    log: output.log,
    onTransferStart: ({ id, peer, name, size, protocol }) => {
      output.log.info({ event: 'transfer-start', id, peer, name, size, protocol }, `#${id} receiving ${name} (${formatBytes(size)}) from ${peer}`);
      board?.add(id, `#${id} ${name}`, size);
    },
    onTransferProgress: (id, bytes) => board?.update(id, bytes),
    onConnectionEnd: (id, peer, outcome) => {
      if (outcome.kind === 'file') {
        const { result } = outcome;
        stats.stored += 1;
        stats.bytes += result.bytes;
        board?.remove(id, true);
        output.log.info(
          { event: 'transfer-done', id, peer, name: basename(result.path), path: result.path, bytes: result.bytes, ...digestFields(result), seconds: round(result.seconds), protocol: result.protocol },
          `#${id} stored ${result.path} (${formatBytes(result.bytes)} in ${result.seconds.toFixed(2)} s) from ${peer}`,
        );
      } else if (outcome.kind === 'error' && !outcome.transferring && !(outcome.error instanceof RefusedError)) {
        // Garbage, a handshake that timed out, a connection dropped for a newer one: not a
        // transfer, and an attacker can make many, so the lines are rate-limited.
        stats.dropped += 1;
        const level = outcome.error.code === 'FTX_ERR_INTERNAL' ? 'error' : 'info';
        quieted(level, { event: 'connection-failed', id, peer, code: outcome.error.code }, `#${id} connection from ${peer} dropped: ${outcome.error.message}`);
      } else if (outcome.kind === 'error') {
        stats.failed += 1;
        board?.remove(id, false);
        output.log.warn({ event: 'transfer-failed', id, peer, code: outcome.error.code, reason: (outcome.error as RefusedError).reason }, `#${id} from ${peer}: ${outcome.error.message}`);
      } else if (outcome.kind === 'ping') {
        stats.pings += 1;
        output.log.info({ event: 'ping', id, peer }, `#${id} answered a ping from ${peer}`);
      } else {
        output.log.debug({ event: 'silent', id, peer }, `#${id} ${peer} closed without a word`);
      }
    },
    onConnectionRefused: (peer, message) => {
      stats.dropped += 1;
      quieted('info', { event: 'connection-refused', peer }, `refused a connection from ${peer}: ${message}`);
    },
    onStaleRemoved: (removed) => reportRemovedLeftovers(output, removed),
  });

  // Announce before the board starts: a line printed while bars are drawn must share
  // the screen with them, and this one is the line the user has to read in full.
  await announceListening(args, output, server, folder);
  board = output.startBoard();

  // Ctrl-C, SIGTERM or SIGHUP: stop accepting and let transfers finish; a second one cuts them now.
  // The signal may have come already (while the announcement looked for leftovers).
  if (!interruption.signal.aborted) {
    await new Promise<void>((resolve) => interruption.signal.addEventListener('abort', () => resolve(), { once: true }));
  }
  const graceMs = args.grace * 1000;
  if (receiver.activeTransfers > 0) {
    output.log.info({ event: 'draining', active: receiver.activeTransfers }, `stopping: letting ${plural(receiver.activeTransfers, 'transfer')} finish (up to ${args.grace} s; press Ctrl-C again to cut them now)`);
  }
  const cutNow = new Promise<number>((resolve) => {
    interruption.onRepeat = () => resolve(receiver.shutdown(0));
  });
  const cut = await Promise.race([receiver.shutdown(graceMs), cutNow]);
  board?.stop();
  const summary = { folder, port: boundPort, stored: stats.stored, failed: stats.failed, pings: stats.pings, bytes: stats.bytes, dropped: stats.dropped, cut };
  output.log.info({ event: 'stopped', ...summary }, `stopped: ${plural(stats.stored, 'file')} stored, ${stats.failed} failed, ${cut} cut short`);
  if (cut > 0) {
    throw new InterruptedError(
      `${plural(cut, 'transfer')} in flight ${cut === 1 ? 'was' : 'were'} cut short; ${cut === 1 ? 'its partial file was' : 'their partial files were'} removed`,
      interruption.signalName(),
    );
  }
  return summary;
}

export async function runSend(args: SendArgs, output: Output, signal: AbortSignal): Promise<Summary> {
  const { openSource, sendFile } = await import('../sender.js');
  const destination = args.destination;
  const source = await openSource(args.file, args.name);
  let progress: Progress | undefined;
  try {
    const socket = await connect(destination, { timeoutMs: args.timeout * 1000, signal });
    output.log.debug({ destination: formatHostPort(destination) }, 'connected');
    const result = await sendFile(socket, source, {
      idleTimeoutMs: args.timeout * 1000,
      hash: args.hash,
      verifiedOnly: args['verified-only'],
      signal,
      log: output.log,
      onStart: ({ size }) => {
        progress = output.startProgress(size, 'send');
      },
      onProgress: (bytes) => progress?.update(bytes),
    });
    progress?.stop();
    const confirmation = result.verified
      ? `the receiver confirmed ${result.hash} ${result.digest}`
      : `not verified: the classic receiver confirms nothing (${result.hash} of what was sent: ${result.digest})`;
    output.log.info(
      { event: 'sent', ...result },
      `sent ${source.path} to ${formatHostPort(destination)} as ${result.name} (${formatBytes(result.bytes)} in ${result.seconds.toFixed(2)} s, ${formatRate(result.bytes, result.seconds)}); ${confirmation}`,
    );
    return {
      protocol: result.protocol,
      path: source.path,
      name: result.name,
      bytes: result.bytes,
      ...digestFields(result),
      seconds: round(result.seconds),
      bytesPerSecond: bytesPerSecond(result.bytes, result.seconds),
      peer: formatHostPort(destination),
      verified: result.verified,
    };
  } finally {
    progress?.stop();
    await source.handle.close();
  }
}

export async function runPing(args: PingArgs, output: Output, signal: AbortSignal): Promise<Summary> {
  const { ping } = await import('../api/ping.js');
  const peer = formatHostPort(args.destination);
  const socket = await connect(args.destination, { timeoutMs: args.timeout * 1000, signal });
  const result = await ping(socket, args.message, { idleTimeoutMs: args.timeout * 1000 });
  if (result.protocol === 'classic') {
    output.log.warn({ peer }, `${peer} is a classic tutorial receiver: it is up, but cannot answer pings (this check may have used up its one transfer)`);
  }
  // The reply is the command's result, so it goes to stdout (unless --json says otherwise).
  if (!args.json) {
    const detail = result.protocol === 'ftx' ? `rtt ${result.roundTripMs.toFixed(1)} ms, ftx protocol ${result.version}${result.software ? `, ${result.software}` : ''}` : 'classic protocol';
    // Reply and software name come from the peer: escaped, so they cannot drive the terminal.
    process.stdout.write(`${escapeForTerminal(`${result.reply}  (${peer}: ${detail})`)}\n`);
  }
  return { peer, protocol: result.protocol, reply: result.reply, version: result.version, rttMs: round(result.roundTripMs), time: result.time ?? null };
}

/**
 * Logs where the receiver listens, with the command to type on the sending machine.
 * With --port 0 the user cannot know the port any other way, so that line is printed
 * even with --quiet (output.essential).
 */
async function announceListening(args: RecvArgs, output: Output, server: Server, target: string): Promise<void> {
  const { address: bound, port } = server.address() as { address: string; port: number };
  const addresses = addressesToAnnounce(bound);
  const commands = (addresses.length > 0 ? addresses : ['THIS-HOST']).slice(0, 3).map((host) => `ftx send FILE ${formatHostPort({ host, port })}`);
  const log = args.port === 0 ? output.essential : output.log;
  log.info(
    { event: 'listening', port, bind: args.bind ?? null, addresses, target, serve: args.serve },
    `${args.serve ? 'serving' : 'listening'} on port ${port}${args.bind ? ` of ${args.bind}` : ''}; on the sending machine run: ${commands.join('   or   ')}`,
  );
  const folder = (await stat(target).catch(() => undefined))?.isDirectory() ? target : dirname(target);
  const maxAgeMs = args['partial-max-age'];
  const { removed, kept } = await removeStaleLeftovers(folder, maxAgeMs > 0 ? maxAgeMs : Number.POSITIVE_INFINITY);
  reportRemovedLeftovers(output, removed);
  for (const leftover of kept) {
    output.log.warn(
      { event: 'leftover', path: leftover.path, bytes: leftover.bytes, modified: leftover.modified.toISOString() },
      `${leftover.path} (${formatBytes(leftover.bytes)}, ${leftover.modified.toISOString()}) is a partial file from a transfer that was cut short (a killed receiver?), or one another receiver is writing; ${maxAgeMs > 0 ? `it is removed once untouched for ${formatDuration(maxAgeMs)}` : 'delete it once no other ftx writes to this folder'}`,
    );
  }
}

function reportRemovedLeftovers(output: Output, removed: Leftover[]): void {
  for (const leftover of removed) {
    output.log.info(
      { event: 'leftover-removed', path: leftover.path, bytes: leftover.bytes, modified: leftover.modified.toISOString() },
      `removed ${leftover.path} (${formatBytes(leftover.bytes)}, untouched since ${leftover.modified.toISOString()}), a partial file of a transfer cut short`,
    );
  }
}

/** "24 h", "90 min", "45 s": for messages about --partial-max-age. */
function formatDuration(ms: number): string {
  const seconds = ms / 1000;
  if (seconds >= 3600 && seconds % 3600 === 0) return `${seconds / 3600} h`;
  if (seconds >= 60 && seconds % 60 === 0) return `${seconds / 60} min`;
  return `${seconds} s`;
}

/**
 * Lines about connections that are no transfer (dropped, refused for their address):
 * an attacker can cause any number, so at most LINES_PER_MINUTE a minute are logged, and
 * the first line after a quiet spell says how many were left out.
 */
function rateLimitedLog(output: Output): (level: 'info' | 'error', fields: Record<string, unknown>, message: string) => void {
  let windowStart = 0;
  let logged = 0;
  let suppressed = 0;
  return (level, fields, message) => {
    const now = performance.now();
    if (now - windowStart >= 60_000) {
      if (suppressed > 0) output.log.info({ event: 'suppressed', count: suppressed }, `${plural(suppressed, 'more line')} about dropped connections left out in the last minute`);
      windowStart = now;
      logged = 0;
      suppressed = 0;
    }
    if (logged >= LINES_PER_MINUTE) {
      suppressed += 1;
      return;
    }
    logged += 1;
    output.log[level](fields, message);
  };
}

const LINES_PER_MINUTE = 30;

/**
 * Fails early, before listening, when the target cannot possibly work. `typed` is the
 * target as the user wrote it: a trailing slash says it is a folder (as it does to cp),
 * which resolving the path would forget.
 */
async function checkTarget(typed: string, target: string, mayReplace: boolean): Promise<void> {
  const existing = await stat(target).catch(() => undefined);
  if (existing?.isDirectory()) return requireWritable(target);
  if (typed.endsWith('/') || typed.endsWith(sep)) {
    if (existing) throw new LocalIoError(`cannot save into ${typed}: it is not a folder; drop the trailing slash to replace the file, or name a folder`);
    throw new LocalIoError(`cannot save into ${typed}: no such folder; create it first (mkdir -p ${typed}), or drop the trailing slash to save a file of that name`);
  }
  const folder = dirname(target);
  const parent = await stat(folder).catch((error: unknown) => {
    throw localIoError(error, 'save into', folder);
  });
  if (!parent.isDirectory()) throw new LocalIoError(`cannot save into ${folder}: it is not a folder`);
  await requireWritable(folder);
  const link = await lstat(target).catch(() => undefined);
  if (link && !mayReplace) throw new RefusedError('exists', `${target} already exists; remove it, choose another name, or add --force to replace it`);
}

async function requireWritable(folder: string): Promise<void> {
  await access(folder, constants.W_OK).catch((error: unknown) => {
    throw localIoError(error, 'write into', folder);
  });
}

function round(value: number): number {
  return Math.round(value * 1000) / 1000;
}
