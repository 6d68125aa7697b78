/**
 * The command line: parses arguments, wires the library to the terminal, and owns
 * everything the process shows (stderr lines, the bar, the --json line on stdout)
 * and its exit code. Nothing below this file prints or exits.
 */
import { constants } from 'node:fs';
import { access, lstat, stat } from 'node:fs/promises';
import type { Server } from 'node:net';
import { basename, dirname, resolve as resolvePath } from 'node:path';
import yargs, { type Argv } from 'yargs';
import { createOutput, type LogFormat, type LogLevel, type Output, type TransferBoard } from './cli-output.js';
import { FtxError, InterruptedError, isFtxError, localIoError, LocalIoError, RefusedError, UsageError } from './errors.js';
import { EXIT_CODES, EXIT_INTERNAL, EXIT_OK, EXIT_SIGTERM } from './exit-codes.js';
import { enableGarbageNudges } from './gc-nudge.js';
import { connect, DEFAULT_PORT, formatHostPort, lanAddresses, listen, parseHostPort, parsePort, type HostPort } from './net.js';
import { DEFAULT_MAX_CONNS } from './serve-defaults.js';
import { HASH_ALGORITHMS, type HashAlgorithm } from './messages.js';
import { findLeftovers, type ConflictPolicy } from './staged-file.js';
import { formatBytes, parseByteSize } from './units.js';
import { VERSION } from './version.js';

interface CommonArgs {
  timeout: number;
  quiet: boolean;
  json: boolean;
  'log-level': LogLevel | undefined;
  'log-format': LogFormat | 'auto';
}

interface RecvArgs extends CommonArgs {
  target: string;
  port: number;
  bind: string | undefined;
  force: boolean;
  'max-size': number | undefined;
  serve: boolean;
  'max-conns': number;
  'on-conflict': ConflictPolicy | undefined;
  grace: number;
}

interface SendArgs extends CommonArgs {
  file: string;
  destination: HostPort;
  name: string | undefined;
  'verified-only': boolean;
  hash: HashAlgorithm;
}

interface PingArgs extends CommonArgs {
  destination: HostPort;
  message: string;
}

/** What a finished command reports: written as one JSON line on stdout with --json. */
type Summary = Record<string, unknown>;

function commonOptions<T>(args: Argv<T>) {
  return args
    .option('timeout', {
      type: 'number',
      default: 30,
      describe: 'Give up when the peer sends nothing for this many seconds (0: never)',
    })
    .option('quiet', { alias: 'q', type: 'boolean', default: false, describe: 'No progress bar and no info lines; errors only' })
    .option('json', { type: 'boolean', default: false, describe: 'Print one JSON summary line on stdout at the end' })
    .option('log-level', { choices: ['debug', 'info', 'warn', 'error', 'silent'] as const, describe: 'Log detail on stderr [default: info, or warn with --quiet]' })
    .option('log-format', { choices: ['auto', 'text', 'json'] as const, default: 'auto' as const, describe: 'Log lines as text or JSON (auto: text on a terminal)' });
}

function buildParser(argv: string[]) {
  return yargs(argv)
    .scriptName('ftx')
    .usage('ftx: send one file to another machine over TCP, verified end to end.\n\nUsage: ftx <command> [options]')
    .command('recv [target]', 'Wait for one file and save it to target (a file path, or a folder to keep the sender\'s name)', (args) =>
      commonOptions(args)
        .positional('target', { type: 'string', default: '.', describe: 'Where to save the file' })
        .option('port', {
          alias: 'p',
          type: 'string',
          default: String(DEFAULT_PORT),
          describe: 'TCP port to listen on (0: any free port)',
          coerce: (text: string) => parsePort(text, true),
        })
        .option('bind', { type: 'string', describe: 'Listen on this address only [default: all interfaces, IPv6 and IPv4]' })
        .option('force', { alias: 'f', type: 'boolean', default: false, describe: 'Replace the target if it exists' })
        .option('max-size', { type: 'string', describe: 'Refuse files larger than this (e.g. 10G)', coerce: parseMaxSize })
        .option('serve', { type: 'boolean', default: false, describe: 'Keep running and store every sender\'s file in the target folder, many at once' })
        .option('max-conns', { type: 'number', default: DEFAULT_MAX_CONNS, describe: 'With --serve: transfers at once; more senders are refused as busy' })
        .option('on-conflict', {
          choices: ['refuse', 'rename', 'overwrite'] as const,
          describe: 'When the name is taken: refuse the file, store it as name-N, or replace [default: refuse; overwrite with --force]',
        })
        .option('grace', { type: 'number', default: 30, describe: 'With --serve: on Ctrl-C/SIGTERM, seconds to let transfers in flight finish' })
        .check((argv) => {
          if (argv.force && argv['on-conflict'] && argv['on-conflict'] !== 'overwrite') throw new UsageError('--force means --on-conflict overwrite; give one or the other');
          if (!(Number.isInteger(argv['max-conns']) && argv['max-conns'] >= 1)) throw new UsageError('--max-conns must be a whole number of at least 1');
          if (!(argv.grace >= 0)) throw new UsageError('--grace must be a number of seconds, 0 or more');
          if (!(argv.timeout >= 0)) throw new UsageError('--timeout must be a number of seconds, 0 or more');
          return true;
        })
        .example('ftx recv out.jpg', 'save the next file that arrives as out.jpg')
        .example('ftx recv /srv/inbox --port 7000', 'keep the sender\'s file name, listen on port 7000')
        .example('ftx recv --serve /srv/backups --on-conflict rename', 'a backup box: many senders, forever'),
    )
    .command('send <file> <destination>', 'Send one file to a waiting `ftx recv`', (args) =>
      commonOptions(args)
        .positional('file', { type: 'string', demandOption: true, describe: 'The file to send' })
        .positional('destination', {
          type: 'string',
          demandOption: true,
          describe: 'host, host:port or [ipv6]:port (port 9999 if omitted)',
          coerce: (text: string) => parseHostPort(text),
        })
        .option('name', { type: 'string', describe: 'Announce the file under this name instead of its own' })
        .option('hash', {
          choices: HASH_ALGORITHMS,
          default: 'sha256' as HashAlgorithm,
          describe: 'Digest both ends check: sha256, or xxh128 (a faster non-cryptographic checksum)',
        })
        .option('verified-only', {
          type: 'boolean',
          default: false,
          describe: 'Fail (exit 11) rather than send to a classic receiver, which cannot confirm the file',
        })
        .example('ftx send photo.jpg 192.168.1.20', 'send to the receiver on port 9999 of that machine')
        .example('ftx send db.dump backupbox:7000 --json --quiet', 'from a script: exit code says it all'),
    )
    .command('ping <destination>', 'Check that a receiver is up: it echoes a message stamped with its clock', (args) =>
      commonOptions(args)
        .positional('destination', {
          type: 'string',
          demandOption: true,
          describe: 'host, host:port or [ipv6]:port (port 9999 if omitted)',
          coerce: (text: string) => parseHostPort(text),
        })
        .option('message', { alias: 'm', type: 'string', default: 'ping', describe: 'Text for the receiver to echo' })
        .example('ftx ping backupbox && ftx send db.dump backupbox', 'send only if the receiver is up'),
    )
    .demandCommand(1, 'Say what to do: ftx recv, ftx send or ftx ping (ftx --help lists them)')
    .strict()
    .version(VERSION)
    .help()
    .alias('h', 'help')
    .wrap(Math.min(100, process.stdout.columns || 100))
    .exitProcess(false)
    .fail((message, error) => {
      throw error ?? new UsageError(message);
    });
}

const COMMANDS = ['recv', 'send', 'ping'];

/** Runs the CLI; returns the exit code. Never calls process.exit itself. */
export async function main(argv: string[]): Promise<number> {
  const [first] = argv;
  if (first !== undefined && !first.startsWith('-') && !COMMANDS.includes(first)) {
    writeStderr(`ftx: error: unknown command "${first}"; use ftx recv, ftx send or ftx ping\nRun 'ftx --help' for usage.\n`);
    return EXIT_CODES.FTX_ERR_USAGE;
  }
  const parser = buildParser(argv);
  let parsed: { _: (string | number)[] } & Partial<RecvArgs & SendArgs>;
  try {
    parsed = (await parser.parseAsync()) as typeof parsed;
  } catch (error) {
    // Whatever fails while parsing (yargs' own checks, our coerce functions) is a usage error.
    writeStderr(`ftx: error: ${error instanceof Error ? error.message : String(error)}\nRun 'ftx --help' for usage.\n`);
    return EXIT_CODES.FTX_ERR_USAGE;
  }
  const command = parsed._[0];
  // yargs has printed help or the version (it does not exit: exitProcess(false)).
  const shown = parsed as { help?: boolean; version?: boolean };
  if (shown.help || shown.version || typeof command !== 'string' || !COMMANDS.includes(command)) return EXIT_OK;

  const args = parsed as unknown as CommonArgs;
  enableGarbageNudges();
  const output = await createOutput({
    level: args['log-level'] ?? (args.quiet ? 'warn' : 'info'),
    format: args['log-format'] === 'auto' ? (process.stderr.isTTY ? 'text' : 'json') : args['log-format'],
    progress: Boolean(process.stderr.isTTY) && !args.quiet,
  });
  const interruption = watchSignals();
  try {
    const recvArgs = parsed as unknown as RecvArgs;
    const summary =
      command === 'recv'
        ? recvArgs.serve
          ? await runServe(recvArgs, output, interruption)
          : await runRecv(recvArgs, output, interruption.signal)
        : command === 'send'
          ? await runSend(parsed as unknown as SendArgs, output, interruption.signal)
          : await runPing(parsed as unknown as PingArgs, output, interruption.signal);
    if (args.json) process.stdout.write(`${JSON.stringify({ ok: true, ...summary })}\n`);
    return EXIT_OK;
  } catch (error) {
    const code = exitCodeFor(error, interruption.signalName());
    reportFailure(output, error, code);
    if (args.json) {
      const failure = isFtxError(error) ? { code: error.code, message: error.message } : { code: 'FTX_ERR_INTERNAL', message: String(error) };
      process.stdout.write(`${JSON.stringify({ ok: false, exitCode: code, error: failure })}\n`);
    }
    return code;
  } finally {
    interruption.dispose();
  }
}

async function runRecv(args: RecvArgs, output: Output, signal: AbortSignal): Promise<Summary> {
  const { receiveOne } = await import('./receiver.js');
  const port = args.port;
  const maxSize = args['max-size'];
  const target = resolvePath(args.target);
  await checkTarget(target, conflictPolicy(args) !== 'refuse');

  const server: Server = await listen(port, args.bind);
  let progress: Awaited<ReturnType<Output['startProgress']>>;
  try {
    // Take connections first, then announce: a sender may connect the moment the port is open.
    const receiving = receiveOne(server, {
      target,
      onConflict: conflictPolicy(args),
      idleTimeoutMs: args.timeout * 1000,
      ...(maxSize === undefined ? {} : { maxSize }),
      signal,
      log: output.log,
      onStart: ({ name, path, size, peer }) => {
        output.log.info({ event: 'receiving', peer, name, path, size }, `receiving ${name} (${formatBytes(size)}) from ${peer}`);
        // The bar is created asynchronously; progress before it exists is simply not drawn.
        void output.startProgress(size, 'recv').then((bar) => {
          progress = bar;
        });
      },
      onProgress: (bytes) => progress?.update(bytes),
    });
    receiving.catch(() => {}); // Awaited below, after the announcement.
    await announceListening(args, output, (server.address() as { port: number }).port, target);
    const result = await receiving;
    progress?.stop();
    const rate = result.bytes / 1e6 / Math.max(result.seconds, 1e-6);
    output.log.info(
      { event: 'received', ...result },
      `saved ${result.path} (${formatBytes(result.bytes)} in ${result.seconds.toFixed(2)} s, ${rate.toFixed(1)} MB/s), ${result.hash} ${result.digest}`,
    );
    return {
      protocol: result.protocol,
      path: result.path,
      bytes: result.bytes,
      ...digestFields(result),
      seconds: round(result.seconds),
      mbps: round(rate),
      peer: result.peer,
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

function conflictPolicy(args: RecvArgs): ConflictPolicy {
  return args['on-conflict'] ?? (args.force ? 'overwrite' : 'refuse');
}

/** Serve mode: runs until Ctrl-C/SIGTERM, then drains (see ServeReceiver.shutdown). */
async function runServe(args: RecvArgs, output: Output, interruption: Interruption): Promise<Summary> {
  const { ServeReceiver } = await import('./serve.js');
  const folder = resolvePath(args.target);
  const folderStats = await stat(folder).catch((error: unknown) => {
    throw localIoError(error, 'serve into', folder);
  });
  if (!folderStats.isDirectory()) throw new UsageError(`--serve needs a folder to store files in; ${folder} is not one`);
  await access(folder, constants.W_OK).catch((error: unknown) => {
    throw localIoError(error, 'write into', folder);
  });
  const server = await listen(args.port, args.bind);
  // The receiver takes connections from the moment it exists; the board and the
  // announcement come after (a transfer that starts before the board just has no line).
  let board: TransferBoard | undefined;
  const stats = { stored: 0, failed: 0, pings: 0, bytes: 0 };
  const receiver = new ServeReceiver(server, {
    folder,
    maxConns: args['max-conns'],
    onConflict: conflictPolicy(args),
    idleTimeoutMs: args.timeout * 1000,
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
  });

  board = await output.startBoard();
  await announceListening(args, output, (server.address() as { port: number }).port, folder);

  // Ctrl-C or SIGTERM: stop accepting and let transfers finish; a second one cuts them now.
  await new Promise<void>((resolve) => interruption.signal.addEventListener('abort', () => resolve(), { once: true }));
  const graceMs = args.grace * 1000;
  if (receiver.activeTransfers > 0) {
    output.log.info({ event: 'draining', active: receiver.activeTransfers }, `stopping: letting ${receiver.activeTransfers} transfers finish (up to ${args.grace} s; press Ctrl-C again to cut them now)`);
  }
  const cutNow = new Promise<number>((resolve) => {
    interruption.onRepeat = () => resolve(receiver.shutdown(0));
  });
  const cut = await Promise.race([receiver.shutdown(graceMs), cutNow]);
  board?.stop();
  const summary = { folder, stored: stats.stored, failed: stats.failed, pings: stats.pings, bytes: stats.bytes, cut };
  output.log.info({ event: 'stopped', ...summary }, `stopped: ${stats.stored} files stored, ${stats.failed} failed, ${cut} cut short`);
  if (cut > 0) throw new InterruptedError(`${cut} transfers in flight were cut short; their partial files were removed`, interruption.signalName());
  return summary;
}

async function runSend(args: SendArgs, output: Output, signal: AbortSignal): Promise<Summary> {
  const { openSource, sendFile } = await import('./sender.js');
  const destination = args.destination;
  const source = await openSource(args.file, args.name);
  let progress: Awaited<ReturnType<Output['startProgress']>>;
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
        void output.startProgress(size, 'send').then((bar) => {
          progress = bar;
        });
      },
      onProgress: (bytes) => progress?.update(bytes),
    });
    progress?.stop();
    const rate = result.bytes / 1e6 / Math.max(result.seconds, 1e-6);
    const confirmation = result.verified
      ? `the receiver confirmed ${result.hash} ${result.digest}`
      : `not verified: the classic receiver confirms nothing (${result.hash} of what was sent: ${result.digest})`;
    output.log.info(
      { event: 'sent', ...result },
      `sent ${source.path} to ${formatHostPort(destination)} as ${result.name} (${formatBytes(result.bytes)} in ${result.seconds.toFixed(2)} s, ${rate.toFixed(1)} MB/s); ${confirmation}`,
    );
    return {
      protocol: result.protocol,
      path: source.path,
      name: result.name,
      bytes: result.bytes,
      ...digestFields(result),
      seconds: round(result.seconds),
      mbps: round(rate),
      peer: formatHostPort(destination),
      verified: result.verified,
    };
  } finally {
    progress?.stop();
    await source.handle.close();
  }
}

async function runPing(args: PingArgs, output: Output, signal: AbortSignal): Promise<Summary> {
  const { ping } = await import('./ping.js');
  const peer = formatHostPort(args.destination);
  const socket = await connect(args.destination, { timeoutMs: args.timeout * 1000, signal });
  const result = await ping(socket, args.message, { idleTimeoutMs: args.timeout * 1000 });
  if (result.protocol === 'classic') {
    output.log.warn({ peer }, `${peer} is a classic tutorial receiver: it is up, but cannot answer pings (this check may have used up its one transfer)`);
  }
  // The reply is the command's result, so it goes to stdout (unless --json says otherwise).
  if (!args.json) {
    const detail = result.protocol === 'ftx' ? `rtt ${result.roundTripMs.toFixed(1)} ms, ftx protocol ${result.version}${result.software ? `, ${result.software}` : ''}` : 'classic protocol';
    process.stdout.write(`${result.reply}  (${peer}: ${detail})\n`);
  }
  return { peer, protocol: result.protocol, reply: result.reply, version: result.version, rttMs: round(result.roundTripMs), time: result.time ?? null };
}

/** Logs where the receiver listens, with the command to type on the sending machine. */
async function announceListening(args: RecvArgs, output: Output, port: number, target: string): Promise<void> {
  const addresses = args.bind ? [args.bind] : lanAddresses();
  const commands = (addresses.length > 0 ? addresses : ['THIS-HOST']).slice(0, 3).map((host) => `ftx send FILE ${formatHostPort({ host, port })}`);
  output.log.info(
    { event: 'listening', port, bind: args.bind ?? null, addresses, target, serve: args.serve },
    `${args.serve ? 'serving' : 'listening'} on port ${port}${args.bind ? ` of ${args.bind}` : ''}; on the sending machine run: ${commands.join('   or   ')}`,
  );
  const folder = (await stat(target).catch(() => undefined))?.isDirectory() ? target : dirname(target);
  for (const leftover of await findLeftovers(folder)) {
    output.log.warn(
      { event: 'leftover', path: leftover.path, bytes: leftover.bytes, modified: leftover.modified.toISOString() },
      `${leftover.path} (${formatBytes(leftover.bytes)}, ${leftover.modified.toISOString()}) is a partial file from a transfer that was cut short (a killed receiver?); delete it once no other ftx writes to this folder`,
    );
  }
}

/** Fails early, before listening, when the target cannot possibly work. */
async function checkTarget(target: string, force: boolean): Promise<void> {
  const existing = await stat(target).catch(() => undefined);
  if (existing?.isDirectory()) {
    await access(target, constants.W_OK).catch((error: unknown) => {
      throw localIoError(error, 'write into', target);
    });
    return;
  }
  const folder = dirname(target);
  const parent = await stat(folder).catch((error: unknown) => {
    throw localIoError(error, 'save into', folder);
  });
  if (!parent.isDirectory()) throw new LocalIoError(`cannot save into ${folder}: it is not a folder`);
  await access(folder, constants.W_OK).catch((error: unknown) => {
    throw localIoError(error, 'write into', folder);
  });
  const link = await lstat(target).catch(() => undefined);
  if (link && !force) throw new RefusedError('exists', `${target} already exists; remove it, choose another name, or add --force to replace it`);
}

function parseMaxSize(text: string): number {
  const bytes = parseByteSize(text);
  if (bytes === undefined) throw new UsageError(`--max-size "${text}" is not a size; write e.g. 500M or 10G`);
  return bytes;
}

interface Interruption {
  signal: AbortSignal;
  signalName(): NodeJS.Signals | undefined;
  /** Called on the second signal instead of exiting at once; the third always exits. */
  onRepeat: (() => void) | undefined;
  dispose(): void;
}

/**
 * First Ctrl-C (or SIGTERM) aborts the transfer, which removes its partial file and
 * exits with the "interrupted" code; a second one exits at once.
 */
function watchSignals(): Interruption {
  const controller = new AbortController();
  let received: NodeJS.Signals | undefined;
  let count = 0;
  const onSignal = (name: NodeJS.Signals) => {
    count += 1;
    if (count === 2 && interruption.onRepeat) {
      interruption.onRepeat();
      return;
    }
    if (count >= 2) process.exit(name === 'SIGTERM' ? EXIT_SIGTERM : EXIT_CODES.FTX_ERR_INTERRUPTED);
    received = name;
    controller.abort(new InterruptedError(name === 'SIGINT' ? 'interrupted by Ctrl-C' : `stopped by ${name}`, name));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const interruption: Interruption = {
    signal: controller.signal,
    signalName: () => received,
    onRepeat: undefined,
    dispose: () => {
      process.removeListener('SIGINT', onSignal);
      process.removeListener('SIGTERM', onSignal);
    },
  };
  return interruption;
}

function exitCodeFor(error: unknown, signal?: NodeJS.Signals): number {
  if (error instanceof InterruptedError || signal) {
    return signal === 'SIGTERM' ? EXIT_SIGTERM : EXIT_CODES.FTX_ERR_INTERRUPTED;
  }
  return isFtxError(error) ? EXIT_CODES[error.code] : EXIT_INTERNAL;
}

function reportFailure(output: Output, error: unknown, exitCode: number): void {
  if (error instanceof FtxError) {
    output.log.error({ code: error.code, exitCode }, error.message);
    if (error.cause !== undefined) output.log.debug({ cause: String((error.cause as Error)?.stack ?? error.cause) }, 'cause');
  } else {
    output.log.error({ code: 'FTX_ERR_INTERNAL', exitCode }, `unexpected error (a bug in ftx; please report it): ${error instanceof Error ? error.message : String(error)}`);
  }
  output.log.debug({ stack: error instanceof Error ? error.stack : undefined }, 'stack');
}

function writeStderr(text: string): void {
  process.stderr.write(text);
}

function round(value: number): number {
  return Math.round(value * 1000) / 1000;
}
