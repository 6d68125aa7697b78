/**
 * What each command does once its arguments are parsed: calls the public API (index.ts:
 * the CLI uses nothing else of the library), turns its events into log lines and bars,
 * and returns the summary that --json prints. main.ts owns parsing, signals and exit
 * codes; this file is loaded only when a command runs.
 */
import { stat } from 'node:fs/promises';
import { basename } from 'node:path';
import {
  blake3Engine,
  countTree,
  enableGarbageNudges,
  generateKey,
  newCode,
  readKeyFile,
  UsageError,
  InterruptedError,
  ping,
  receive,
  send,
  serve,
  type ConflictPolicy,
  type DigestName,
  type Leftover,
  type ReceivingOptions,
  type RefusedError,
  type ResumeEvent,
} from '../index.js';
import { bytesPerSecond, formatBytes, formatProgress, formatRate, plural } from '../util/units.js';
import { describeFailure, remedyHint } from './hints.js';
import { escapeForTerminal, type LogFormat, type LogLevel, type Output, type Progress, type TransferBoard } from './output.js';

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
  /** Senders' keys (or FTX_KEY_FILE): take only those. */
  'key-file': string | undefined;
  /** One-shot: make a code and take only the sender that gives it. */
  code: boolean;
  /** Serve without keys, knowingly. */
  insecure: boolean;
}

export interface SendArgs extends CommonArgs {
  /** What to send, then the destination last. */
  paths: string[];
  name: string | undefined;
  'follow-symlinks': boolean;
  'verified-only': boolean;
  hash: DigestName | undefined;
  /** This sender's key (or FTX_KEY_FILE). */
  'key-file': string | undefined;
  /** The code a one-shot receiver printed. */
  code: string | undefined;
  /** --no-resume: send every file whole. */
  resume: boolean;
}

export interface KeygenArgs extends CommonArgs {
  id: string;
}

export interface PingArgs extends CommonArgs {
  destination: string;
  message: string;
  /** A key, for a receiver that answers only senders it knows (or FTX_KEY_FILE). */
  'key-file': string | undefined;
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
  // This process is ours: let the receiver keep its memory flat (util/gc-nudge.ts).
  enableGarbageNudges();
  reportDigestEngine(output);
  let progress: Progress | undefined;
  const toStdout = args.target === '-';
  const code = args.code ? newCode() : undefined;
  const keys = code === undefined ? await keysOf(args) : undefined;
  const receiver = await receive({
    ...(toStdout ? { output: process.stdout } : { target: args.target }),
    ...receivingOptions(args, output),
    ...(keys !== undefined ? { keys } : {}),
    ...(code !== undefined ? { code } : {}),
    signal,
    onStart: ({ name, path, size, peer }) => {
      output.log.info({ event: 'receiving', peer, name, path, size }, `receiving ${name} (${formatBytes(size)}) from ${peer}`);
      progress = output.startProgress(size, 'recv');
    },
    onSession: ({ peer, entries, bytes }) => {
      const what = entries === null ? 'a session' : entries === 1 ? 'one entry' : `${entries.toLocaleString('en-US')} entries`;
      output.log.info({ event: 'receiving', peer, entries, bytes }, `receiving ${what}${bytes === null ? '' : ` (${formatBytes(bytes)})`} from ${peer}`);
      progress = output.startProgress(bytes ?? 0, 'recv', { unknownTotal: bytes === null, ...(entries !== null && entries > 1 ? { files: entries } : {}) });
    },
    onEntry: (entry) => {
      progress?.fileDone();
      if (entry.outcome === 'stored') output.log.debug({ event: 'entry-stored', path: entry.path, storedAs: entry.storedAs, bytes: entry.bytes }, `stored ${entry.storedAs ?? entry.path}`);
      else output.log.warn({ event: `entry-${entry.outcome}`, path: entry.path, code: entry.error?.code }, `${entry.outcome === 'refused' ? 'refused' : 'failed'}: ${entry.path}: ${entry.error ? describeFailure(entry.error, 'receiver') : ''}`);
    },
    onProgress: ({ bytes }) => progress?.update(bytes),
    onStray: (stray) => {
      if (stray.kind === 'silent') output.log.info({ peer: stray.peer }, `connection from ${stray.peer} closed without a word (a port scan or health check?); still waiting`);
      else if (stray.kind === 'ping') output.log.info({ peer: stray.peer, message: stray.message }, `answered a ping from ${stray.peer}; still waiting`);
      else if (stray.kind === 'turned-away') output.log.info({ peer: stray.peer }, `refused a connection from ${stray.peer}: ${stray.message}`);
      else {
        const what = stray.error.code === 'FTX_ERR_REFUSED' ? 'refused a file from' : 'connection from';
        const level = stray.error.code === 'FTX_ERR_INTERNAL' ? 'error' : 'warn';
        output.log[level]({ peer: stray.peer, code: stray.error.code }, `${what} ${stray.peer}: ${describeFailure(stray.error, 'receiver')}; still waiting`);
      }
    },
  });
  try {
    announceListening(args, output, receiver, code);
    if (code === undefined && keys === undefined) {
      output.log.info(
        { event: 'unauthenticated' },
        'this receiver takes the first sender that reaches it, unauthenticated and in plain text; to take only yours, start it with --code (or --key-file)',
      );
    }
    const result = await receiver.done;
    progress?.stop();
    const session = result.session;
    const unchangedOne = session !== undefined && session.entries === 1 && session.unchanged === 1;
    const several = session !== undefined && !unchangedOne && (session.files !== 1 || session.folders > 0);
    const what = several
      ? `${plural(session.files, 'file')} and ${plural(session.folders, 'folder')} under ${result.path}${session.unchanged > 0 ? ` (${plural(session.unchanged, 'file')} already here, not sent)` : ''}`
      : toStdout
        ? 'the data to stdout'
        : result.path;
    const digest = several ? `each verified with ${result.hash}` : `${result.hash} ${result.digest}`;
    const resumed = session && session.bytesSkipped > 0 && !unchangedOne ? `, ${formatBytes(session.bytesSkipped)} resumed or already here` : '';
    if (unchangedOne) output.log.info({ event: 'received', ...result }, `${result.path} is already here (same size and modification time as the sender's): nothing was sent`);
    else output.log.info({ event: 'received', ...result }, `saved ${what} (${formatBytes(result.bytes)} in ${result.seconds.toFixed(2)} s${resumed}, ${formatRate(result.bytes, result.seconds)}), ${digest}`);
    return {
      protocol: result.protocol,
      path: result.path,
      bytes: result.bytes,
      ...(several ? { hash: result.hash } : digestFields(result)),
      ...(session ? { files: session.files, folders: session.folders, unchanged: session.unchanged, failed: session.failed, bytesSkipped: session.bytesSkipped } : {}),
      ...(result.identity !== undefined ? { identity: result.identity } : {}),
      seconds: round(result.seconds),
      bytesPerSecond: bytesPerSecond(result.bytes, result.seconds),
      peer: result.peer,
      port: receiver.port,
    };
  } finally {
    progress?.stop();
    await receiver.close();
  }
}

/** The API options both `ftx recv` and `ftx recv --serve` take from the command line. */
function receivingOptions(args: RecvArgs, output: Output): ReceivingOptions {
  return {
    port: args.port,
    ...(args.bind === undefined ? {} : { host: args.bind }),
    onConflict: conflictPolicy(args),
    timeoutMs: args.timeout * 1000,
    handshakeTimeoutMs: args['handshake-timeout'] * 1000,
    minBytesPerSecond: args['min-rate'],
    allowDotFiles: args['allow-dotfiles'],
    perHostConnections: args['per-host-conns'],
    partialMaxAgeMs: args['partial-max-age'],
    ...(args['max-size'] === undefined ? {} : { maxSize: args['max-size'] }),
    log: output.log,
    onLeftovers: ({ removed, kept }) => reportLeftovers(output, removed, kept, args['partial-max-age']),
    onResume: (event) => reportResume(output, event, 'recv'),
    onPartialKept: ({ path, bytes, size, peer }) =>
      output.log.info(
        { event: 'partial-kept', peer, path, bytes, size },
        `kept ${formatProgress(bytes, size)} of ${path} from ${peer}: the same send, run again, resumes from there`,
      ),
  };
}

/** A file offered the part the receiver kept: resumed, or sent whole (a warning: why). */
function reportResume(output: Output, event: ResumeEvent & { peer?: string }, side: 'send' | 'recv'): void {
  const { path, size, offset, why } = event;
  if (event.resumed) {
    const whose = side === 'send' ? 'the receiver kept that much from an earlier attempt' : 'kept from an earlier attempt';
    output.log.info({ event: 'resumed', path, size, offset }, `resuming ${path} from ${formatProgress(offset, size)}: ${whose}, and both ends checked it is the same`);
  } else {
    output.log.warn({ event: 'resume-refused', path, size, reason: why }, `${side === 'send' ? 'sending' : 'receiving'} ${path} whole: ${why ?? 'not resumed'}`);
  }
}

/**
 * Summary fields for a digest: always hash + digest, `sha256` when it is one (scripts of
 * the SHA-256 days read it), and for BLAKE3 which code computed it here.
 */
function digestFields(result: { hash: DigestName; digest: string }): Summary {
  return {
    hash: result.hash,
    digest: result.digest,
    ...(result.hash === 'sha256' ? { sha256: result.digest } : {}),
    ...(result.hash === 'blake3' ? { digestEngine: blake3Engine().kind } : {}),
  };
}

/** Says at debug level which BLAKE3 code runs: the native module, or the slower WebAssembly build, and why. */
function reportDigestEngine(output: Output): void {
  const engine = blake3Engine();
  if (engine.kind === 'native') output.log.debug({ digestEngine: 'native' }, 'BLAKE3: native module (@napi-rs/blake-hash)');
  else output.log.debug({ digestEngine: 'wasm', reason: engine.reason }, `BLAKE3: the native module cannot load (${engine.reason}); using the WebAssembly build, several times slower`);
}

function conflictPolicy(args: RecvArgs): ConflictPolicy {
  return args['on-conflict'] ?? (args.force ? 'overwrite' : 'refuse');
}

/** Serve mode: runs until Ctrl-C/SIGTERM/SIGHUP, then drains (see ServeHandle.close). */
export async function runServe(args: RecvArgs, output: Output, interruption: Interruption): Promise<Summary> {
  const keys = await keysOf(args);
  if (keys === undefined && !args.insecure) {
    throw new UsageError(
      'serve mode without keys would store files from anyone who can reach the port: give it the senders\' keys with --key-file (make one per sender with ftx keygen --id NAME), or add --insecure to serve without them',
    );
  }
  if (keys !== undefined && args.insecure) throw new UsageError('--insecure and --key-file contradict each other: keys make the box secure; drop --insecure');
  // The receiver takes connections from the moment it listens; the announcement and the
  // board come after (a transfer that starts before the board just has no line).
  enableGarbageNudges();
  reportDigestEngine(output);
  let board: TransferBoard | undefined;
  const stats = { stored: 0, failed: 0, pings: 0, bytes: 0, dropped: 0 };
  const quieted = rateLimitedLog(output);
  const receiver = await serve({
    folder: args.target,
    maxTransfers: args['max-conns'],
    perHostTransfers: args['per-host-transfers'],
    ...receivingOptions(args, output),
    ...(keys !== undefined ? { keys } : {}),
    onTransferStart: ({ id, peer, name, size, protocol, entries, identity }) => {
      const what = entries === undefined ? name : entries === null ? 'a session' : entries === 1 ? 'one entry' : `${entries.toLocaleString('en-US')} entries`;
      const who = identity === undefined ? peer : `${identity} (${peer})`;
      output.log.info({ event: 'transfer-start', id, peer, identity, name, size, protocol, entries }, `#${id} receiving ${what} (${formatBytes(size)}) from ${who}`);
      board?.add(id, `#${id} ${entries === undefined ? name : 'session'}`, size);
    },
    onEntry: (entry) => {
      if (entry.outcome === 'stored') output.log.debug({ event: 'entry-stored', id: entry.id, path: entry.path, storedAs: entry.storedAs }, `#${entry.id} stored ${entry.storedAs ?? entry.path}`);
      else quieted('info', { event: `entry-${entry.outcome}`, id: entry.id, peer: entry.peer, path: entry.path, code: entry.error?.code }, `#${entry.id} ${entry.outcome}: ${entry.path}: ${entry.error ? describeFailure(entry.error, 'receiver') : ''}`);
    },
    onTransferProgress: ({ id, bytes }) => board?.update(id, bytes),
    onTransferDone: (result) => {
      stats.stored += result.session ? result.session.files : 1;
      stats.bytes += result.bytes;
      board?.remove(result.id, true);
      const session = result.session;
      if (session && (session.files !== 1 || session.folders > 0 || session.failed > 0)) {
        stats.failed += session.failed;
        const level = session.failed > 0 ? 'warn' : 'info';
        output.log[level](
          { event: 'session-done', id: result.id, peer: result.peer, identity: result.identity, files: session.files, folders: session.folders, failed: session.failed, bytes: result.bytes, seconds: round(result.seconds) },
          `#${result.id} stored ${plural(session.files, 'file')} and ${plural(session.folders, 'folder')} (${formatBytes(result.bytes)} in ${result.seconds.toFixed(2)} s) from ${whoSent(result)}${session.failed > 0 ? `; ${session.failed} failed` : ''}`,
        );
        return;
      }
      output.log.info(
        { event: 'transfer-done', id: result.id, peer: result.peer, identity: result.identity, name: basename(result.path), path: result.path, bytes: result.bytes, ...digestFields(result), seconds: round(result.seconds), protocol: result.protocol },
        `#${result.id} stored ${result.path} (${formatBytes(result.bytes)} in ${result.seconds.toFixed(2)} s) from ${whoSent(result)}`,
      );
    },
    onTransferFailed: ({ id, peer, error, identity }) => {
      stats.failed += 1;
      board?.remove(id, false);
      const who = identity === undefined ? peer : `${identity} (${peer})`;
      output.log.warn({ event: 'transfer-failed', id, peer, identity, code: error.code, reason: (error as RefusedError).reason }, `#${id} from ${who}: ${describeFailure(error, 'receiver')}`);
    },
    onConnection: (event) => {
      if (event.kind === 'ping') {
        stats.pings += 1;
        output.log.info({ event: 'ping', id: event.id, peer: event.peer }, `#${event.id} answered a ping from ${event.peer}`);
      } else if (event.kind === 'silent') {
        output.log.debug({ event: 'silent', id: event.id, peer: event.peer }, `#${event.id} ${event.peer} closed without a word`);
      } else if (event.kind === 'dropped') {
        // Garbage, a handshake that timed out, a connection dropped for a newer one: not a
        // transfer, and an attacker can make many, so the lines are rate-limited.
        stats.dropped += 1;
        const level = event.error.code === 'FTX_ERR_INTERNAL' ? 'error' : 'info';
        quieted(level, { event: 'connection-failed', id: event.id, peer: event.peer, code: event.error.code }, `#${event.id} connection from ${event.peer} dropped: ${event.error.message}`);
      } else {
        stats.dropped += 1;
        quieted('info', { event: 'connection-refused', peer: event.peer }, `refused a connection from ${event.peer}: ${event.message}`);
      }
    },
  });

  // Announce before the board starts: a line printed while bars are drawn must share
  // the screen with them, and this one is the line the user has to read in full.
  announceListening(args, output, receiver);
  board = output.startBoard();

  // Ctrl-C, SIGTERM or SIGHUP: stop accepting and let transfers finish; a second one cuts them now.
  if (!interruption.signal.aborted) {
    await new Promise<void>((resolve) => interruption.signal.addEventListener('abort', () => resolve(), { once: true }));
  }
  if (receiver.activeTransfers > 0) {
    output.log.info(
      { event: 'draining', active: receiver.activeTransfers },
      `stopping: letting ${plural(receiver.activeTransfers, 'transfer')} finish (up to ${args.grace} s; press Ctrl-C again to cut them now)`,
    );
  }
  const cutNow = new Promise<{ cut: number }>((resolve) => {
    interruption.onRepeat = () => resolve(receiver.close({ graceMs: 0 }));
  });
  const { cut } = await Promise.race([receiver.close({ graceMs: args.grace * 1000 }), cutNow]);
  board?.stop();
  const summary = { folder: args.target, port: receiver.port, stored: stats.stored, failed: stats.failed, pings: stats.pings, bytes: stats.bytes, dropped: stats.dropped, cut };
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
  if (args.hash === undefined || args.hash === 'blake3') reportDigestEngine(output);
  const sources = args.paths.slice(0, -1).map(String);
  const destination = String(args.paths[args.paths.length - 1]);
  const fromStdin = sources.length === 1 && sources[0] === '-';
  const single = !fromStdin && sources.length === 1 && (await isRegularFile(sources[0] as string));
  // A progress display wants totals: count the tree first (on a terminal only; scripts skip the walk).
  const followSymlinks = args['follow-symlinks'];
  const totals = output.showsProgress && !fromStdin && !single ? await countTree(sources, { followSymlinks }) : undefined;
  let progress: Progress | undefined;
  const entries = { skipped: 0 };
  const senderKey = args.code === undefined ? await keysOf(args) : undefined;
  try {
    const result = await send({
      ...(fromStdin ? { stream: process.stdin } : single ? { path: sources[0] as string } : { paths: sources }),
      to: destination,
      name: args.name,
      followSymlinks,
      ...(totals ? { totals } : {}),
      hash: args.hash,
      timeoutMs: args.timeout * 1000,
      verifiedOnly: args['verified-only'],
      ...(args.code !== undefined ? { code: args.code } : {}),
      ...(senderKey !== undefined ? { key: senderKey } : {}),
      resume: args.resume,
      onResume: (event) => reportResume(output, event, 'send'),
      signal,
      log: output.log,
      onStart: ({ size, protocol, peer }) => {
        if (protocol === 'classic') {
          output.log.warn({ peer }, `${peer} speaks the classic tutorial protocol: delivery will not be verified (use --verified-only to refuse such receivers)`);
        }
        progress = output.startProgress(size, 'send', { files: totals?.files, unknownTotal: fromStdin || (!single && !totals) });
      },
      onProgress: ({ bytes }) => progress?.update(bytes),
      onEntry: (entry) => {
        if (entry.type === 'file') progress?.fileDone();
        if (entry.outcome === 'stored') output.log.debug({ event: 'entry-stored', path: entry.path, storedAs: entry.storedAs, bytes: entry.bytes }, `stored ${entry.path}`);
        else if (entry.unchanged) {
          // Debug: a nightly backup of 10,000 files would print 10,000 lines; the summary counts them.
          output.log.debug({ event: 'entry-unchanged', path: entry.path }, `not sent: ${entry.path}: the receiver has it already (same size and modification time)`);
        } else if (entry.outcome === 'skipped') {
          entries.skipped += 1;
          const hint = remedyHint(entry.remedy);
          output.log.warn({ event: 'entry-skipped', path: entry.path, reason: entry.message }, `skipped ${entry.path}: ${entry.message ?? ''}${hint ? ` (${hint})` : ''}`);
        } else output.log.warn({ event: `entry-${entry.outcome}`, path: entry.path, code: entry.error?.code, reason: (entry.error as RefusedError | undefined)?.reason }, `${entry.outcome === 'refused' ? 'not stored' : 'failed'}: ${entry.path}: ${entry.message ?? ''}`);
      },
    });
    progress?.stop();
    // One file or one stream names its digest; a session of several says each was confirmed.
    const oneEntry = single || fromStdin;
    const confirmation = result.verified
      ? result.session && !oneEntry
        ? `the receiver confirmed every file (${result.hash})`
        : `the receiver confirmed ${result.hash} ${result.digest}`
      : `not verified: the classic receiver confirms nothing (${result.hash} of what was sent: ${result.digest})`;
    // A receiver writing to its stdout stores no name: say the one sent.
    const storedAs = result.name === '-' || result.name === '' ? (args.name ?? result.name) : result.name;
    const session = result.session;
    if (session && oneEntry && session.unchanged === 1) {
      output.log.info({ event: 'sent', ...result }, `not sent: ${result.path}: the receiver has it already as ${storedAs} (same size and modification time)`);
    } else {
      const what = session && !oneEntry
        ? `${plural(session.files, 'file')} and ${plural(session.folders, 'folder')}${session.unchanged > 0 ? ` (${plural(session.unchanged, 'file')} the receiver had already)` : ''}${session.skipped > 0 ? ` (${session.skipped} skipped)` : ''}`
        : `${fromStdin ? 'standard input' : result.path} as ${storedAs}`;
      // The rate is of what moved; what the receiver had already is said apart.
      const moved = session ? session.bytesSent : result.bytes;
      const notSent = session && session.bytesSkipped > 0 ? `; ${formatBytes(session.bytesSkipped)} the receiver had already was not sent again` : '';
      output.log.info(
        { event: 'sent', ...result },
        `sent ${what} to ${result.peer} (${formatBytes(moved)} in ${result.seconds.toFixed(2)} s, ${formatRate(moved, result.seconds)}${notSent}); ${confirmation}`,
      );
    }
    const several = result.session !== undefined && (result.session.files !== 1 || result.session.folders > 0);
    return {
      protocol: result.protocol,
      path: result.path,
      ...(several ? { hash: result.hash } : { name: result.name, ...digestFields(result) }),
      bytes: result.bytes,
      seconds: round(result.seconds),
      bytesPerSecond: bytesPerSecond(result.bytes, result.seconds),
      peer: result.peer,
      verified: result.verified,
      ...(result.identity !== undefined ? { identity: result.identity } : {}),
      ...(session
        ? { files: session.files, folders: session.folders, skipped: session.skipped, unchanged: session.unchanged, failed: session.failed, bytesSkipped: session.bytesSkipped }
        : {}),
    };
  } finally {
    progress?.stop();
  }
}

/** "web1 (192.0.2.7:51234)" for a sender that proved a key, else its address. */
function whoSent(result: { peer: string; identity?: string | undefined }): string {
  return result.identity === undefined ? result.peer : `${result.identity} (${result.peer})`;
}

/**
 * The key file's text: --key-file, else FTX_KEY_FILE (cron and systemd set it once).
 * Undefined when neither is given. readKeyFile refuses a file others can read.
 */
async function keysOf(args: { 'key-file': string | undefined }): Promise<string | undefined> {
  const path = args['key-file'] ?? (process.env.FTX_KEY_FILE === '' ? undefined : process.env.FTX_KEY_FILE);
  return path === undefined ? undefined : readKeyFile(path);
}

/** `ftx keygen --id NAME`: a new key line on stdout, for the sender's key file and the receiver's. */
export function runKeygen(args: KeygenArgs): Summary {
  const line = generateKey(args.id);
  if (!args.json) process.stdout.write(`${line}\n`);
  return { identity: args.id, key: line };
}

async function isRegularFile(path: string): Promise<boolean> {
  return stat(path).then(
    (stats) => stats.isFile(),
    () => false,
  );
}

export async function runPing(args: PingArgs, output: Output, signal: AbortSignal): Promise<Summary> {
  const key = await keysOf(args);
  const result = await ping({ to: args.destination, message: args.message, timeoutMs: args.timeout * 1000, signal, ...(key !== undefined ? { key } : {}) });
  const peer = result.peer;
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
function announceListening(args: RecvArgs, output: Output, receiver: { port: number; endpoints: string[] }, code?: string): void {
  const port = receiver.port;
  const endpoints = receiver.endpoints.length > 0 ? receiver.endpoints : [`THIS-HOST:${port}`];
  const commands = endpoints.slice(0, 3).map((endpoint) => `ftx send FILE ${endpoint}${code === undefined ? '' : ` --code ${code}`}`);
  // The user cannot learn a chosen port or the code any other way: printed even with --quiet.
  const log = args.port === 0 || code !== undefined ? output.essential : output.log;
  log.info(
    { event: 'listening', port, ...(code === undefined ? {} : { code }), bind: args.bind ?? null, addresses: receiver.endpoints.map((endpoint) => endpoint.replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1')), target: args.target, serve: args.serve },
    `${args.serve ? 'serving' : 'listening'} on port ${port}${args.bind ? ` of ${args.bind}` : ''}; on the sending machine run: ${commands.join('   or   ')}`,
  );
}

/** Temporary files found at start-up (and, in serve mode, by the hourly sweep). */
function reportLeftovers(output: Output, removed: Leftover[], kept: Leftover[], maxAgeMs: number): void {
  for (const leftover of removed) {
    output.log.info(
      { event: 'leftover-removed', path: leftover.path, bytes: leftover.bytes, modified: leftover.modified.toISOString() },
      `removed ${leftover.path} (${formatBytes(leftover.bytes)}, untouched since ${leftover.modified.toISOString()}), a partial file of a transfer cut short`,
    );
  }
  for (const leftover of kept) {
    output.log.info(
      { event: 'leftover', path: leftover.path, bytes: leftover.bytes, modified: leftover.modified.toISOString() },
      `${leftover.path} (${formatBytes(leftover.bytes)}, ${leftover.modified.toISOString()}) is kept from a transfer that was cut short: sending that file again resumes it${maxAgeMs > 0 ? `; it is removed once untouched for ${formatDuration(maxAgeMs)}` : ''}`,
    );
  }
}

/** "7 d", "24 h", "90 min", "45 s": for messages about --partial-max-age. */
function formatDuration(ms: number): string {
  const seconds = ms / 1000;
  if (seconds >= 86400 && seconds % 86400 === 0) return `${seconds / 86400} d`;
  if (seconds >= 3600 && seconds % 3600 === 0) return `${seconds / 3600} h`;
  if (seconds >= 60 && seconds % 60 === 0) return `${seconds / 60} min`;
  return `${seconds} s`;
}

const LINES_PER_MINUTE = 30;

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

function round(value: number): number {
  return Math.round(value * 1000) / 1000;
}

