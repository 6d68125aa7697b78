/**
 * The command line: parses arguments, wires the library to the terminal, and owns
 * everything the process shows (stderr lines, the bar, the --json line on stdout)
 * and its exit code. Nothing below this file prints or exits.
 */
import { constants } from 'node:fs';
import { access, lstat, stat } from 'node:fs/promises';
import type { Server } from 'node:net';
import { dirname, resolve as resolvePath } from 'node:path';
import yargs, { type Argv } from 'yargs';
import { createOutput, type LogFormat, type LogLevel, type Output } from './cli-output.js';
import { FtxError, InterruptedError, isFtxError, localIoError, LocalIoError, RefusedError, UsageError } from './errors.js';
import { EXIT_CODES, EXIT_INTERNAL, EXIT_OK, EXIT_SIGTERM } from './exit-codes.js';
import { connect, DEFAULT_PORT, formatHostPort, lanAddresses, listen, parseHostPort, parsePort, type HostPort } from './net.js';
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
}

interface SendArgs extends CommonArgs {
  file: string;
  destination: HostPort;
  name: string | undefined;
  'verified-only': boolean;
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
        .example('ftx recv out.jpg', 'save the next file that arrives as out.jpg')
        .example('ftx recv /srv/inbox --port 7000', 'keep the sender\'s file name, listen on port 7000'),
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
  if (typeof command !== 'string' || !COMMANDS.includes(command)) return EXIT_OK; // --help or --version was shown.

  const args = parsed as unknown as CommonArgs;
  const output = await createOutput({
    level: args['log-level'] ?? (args.quiet ? 'warn' : 'info'),
    format: args['log-format'] === 'auto' ? (process.stderr.isTTY ? 'text' : 'json') : args['log-format'],
    progress: Boolean(process.stderr.isTTY) && !args.quiet,
  });
  const interruption = watchSignals();
  try {
    const summary =
      command === 'recv'
        ? await runRecv(parsed as unknown as RecvArgs, output, interruption.signal)
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
  await checkTarget(target, args.force);

  const server: Server = await listen(port, args.bind);
  const boundPort = (server.address() as { port: number }).port;
  const addresses = args.bind ? [args.bind] : lanAddresses();
  const commands = (addresses.length > 0 ? addresses : ['THIS-HOST']).slice(0, 3).map((host) => `ftx send FILE ${formatHostPort({ host, port: boundPort })}`);
  output.log.info(
    { event: 'listening', port: boundPort, bind: args.bind ?? null, addresses, target },
    `listening on port ${boundPort}${args.bind ? ` of ${args.bind}` : ''}; on the sending machine run: ${commands.join('   or   ')}`,
  );

  let progress: Awaited<ReturnType<Output['startProgress']>>;
  try {
    const result = await receiveOne(server, {
      target,
      onConflict: args.force ? 'overwrite' : 'refuse',
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
    progress?.stop();
    const rate = result.bytes / 1e6 / Math.max(result.seconds, 1e-6);
    output.log.info(
      { event: 'received', ...result },
      `saved ${result.path} (${formatBytes(result.bytes)} in ${result.seconds.toFixed(2)} s, ${rate.toFixed(1)} MB/s), sha256 ${result.digest}`,
    );
    return {
      protocol: result.protocol,
      path: result.path,
      bytes: result.bytes,
      sha256: result.digest,
      seconds: round(result.seconds),
      mbps: round(rate),
      peer: result.peer,
    };
  } finally {
    progress?.stop();
    server.close();
  }
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
      ? `the receiver confirmed sha256 ${result.digest}`
      : `not verified: the classic receiver confirms nothing (sha256 sent: ${result.digest})`;
    output.log.info(
      { event: 'sent', ...result },
      `sent ${source.path} to ${formatHostPort(destination)} as ${result.name} (${formatBytes(result.bytes)} in ${result.seconds.toFixed(2)} s, ${rate.toFixed(1)} MB/s); ${confirmation}`,
    );
    return {
      protocol: result.protocol,
      path: source.path,
      name: result.name,
      bytes: result.bytes,
      sha256: result.digest,
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
  dispose(): void;
}

/**
 * First Ctrl-C (or SIGTERM) aborts the transfer, which removes its partial file and
 * exits with the "interrupted" code; a second one exits at once.
 */
function watchSignals(): Interruption {
  const controller = new AbortController();
  let received: NodeJS.Signals | undefined;
  const onSignal = (name: NodeJS.Signals) => {
    if (received) {
      process.exit(name === 'SIGTERM' ? EXIT_SIGTERM : EXIT_CODES.FTX_ERR_INTERRUPTED);
    }
    received = name;
    controller.abort(new InterruptedError(name === 'SIGINT' ? 'interrupted by Ctrl-C' : `stopped by ${name}`, name));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    signal: controller.signal,
    signalName: () => received,
    dispose: () => {
      process.removeListener('SIGINT', onSignal);
      process.removeListener('SIGTERM', onSignal);
    },
  };
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
