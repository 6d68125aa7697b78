/**
 * The command line: parses arguments, sets up the output, runs the command
 * (cli-run.ts), and owns everything the process shows (stderr lines, the bar, the
 * --json line on stdout) and its exit code. Nothing below the CLI prints or exits.
 */
import yargs, { type Argv } from 'yargs';
import { createOutput, escapeForTerminal, type Output } from './output.js';
import type { CommonArgs, Interruption, KeygenArgs, PingArgs, RecvArgs, SendArgs } from './commands.js';
import { EXIT_CODES, EXIT_INTERNAL, EXIT_OK, EXIT_SIGTERM } from './exit-codes.js';
import { describeFailure, type Side } from './hints.js';
import {
  DEFAULT_GRACE_MS,
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  DEFAULT_MAX_TRANSFERS,
  DEFAULT_PER_HOST_CONNECTIONS,
  DEFAULT_PER_HOST_TRANSFERS,
  DEFAULT_PORT,
  DEFAULT_TIMEOUT_MS,
} from '../defaults.js';
import { DEFAULT_DIGEST, DIGEST_NAMES } from '../digest/names.js';
import { parseByteSize, parseDuration } from '../util/units.js';
import { VERSION } from '../util/version.js';
import { FtxError, InterruptedError, isFtxError, PartialError, UsageError } from '../errors.js';
import { parseHostPort, parsePort } from '../util/address.js';

/** Longest wait a Node timer can hold (2^31 - 1 ms); longer ones would fire at once. */
const MAX_SECONDS = Math.floor((2 ** 31 - 1) / 1000);
const DEFAULT_GRACE_SECONDS = DEFAULT_GRACE_MS / 1000;
const DEFAULT_HANDSHAKE_SECONDS = DEFAULT_HANDSHAKE_TIMEOUT_MS / 1000;

function commonOptions<T>(args: Argv<T>) {
  return args
    .option('timeout', {
      type: 'number',
      default: DEFAULT_TIMEOUT_MS / 1000,
      describe: 'Give up when the peer sends nothing for this many seconds (0: never)',
    })
    .option('quiet', { alias: 'q', type: 'boolean', default: false, describe: 'No progress bar and no info lines; errors only' })
    .option('json', { type: 'boolean', default: false, describe: 'Print one JSON summary line on stdout at the end' })
    .option('log-level', { choices: ['debug', 'info', 'warn', 'error', 'silent'] as const, describe: 'Log detail on stderr [default: info, or warn with --quiet]' })
    .option('log-format', { choices: ['auto', 'text', 'json'] as const, default: 'auto' as const, describe: 'Log lines as text or JSON (auto: text on a terminal)' })
    .check((argv) => {
      // Every command waits on --timeout: NaN or a negative number would never fire.
      requireSeconds('--timeout', argv.timeout);
      return true;
    });
}

/** A number of seconds a timer can wait: 0 or more, and within what setTimeout holds. */
function requireSeconds(option: string, value: number): void {
  if (!(Number.isFinite(value) && value >= 0 && value <= MAX_SECONDS)) {
    // yargs has already turned text that is not a number into NaN: nothing to quote.
    throw new UsageError(`${option} must be a number of seconds from 0 to ${MAX_SECONDS}${Number.isNaN(value) ? '' : `, not ${value}`}`);
  }
}

function buildParser(argv: string[]) {
  return yargs(argv)
    .scriptName('ftx')
    .usage('ftx: send files, folders and streams to another machine over TCP, verified end to end.\n\nUsage: ftx <command> [options]')
    // The target is read from argv._ (recvTarget): yargs drops a lone "-" given for a declared positional.
    .command('recv', '[TARGET]  wait for files, folders or a stream and save them under TARGET (a folder; a file path for one file; - for stdout)', (args) =>
      commonOptions(args)
        .usage("ftx recv [TARGET] [options]\n\nTARGET: where to save: a folder (keeps the sender's names; default: the current folder), a file path (one file), or - (one file or stream to stdout).")
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
        // --max-conns and --grace have no yargs default, so the check below can tell an
        // explicit one (an error without --serve) from none; runServe applies the defaults.
        .option('max-conns', { type: 'number', describe: `With --serve: transfers at once; more senders are refused as busy [default: ${DEFAULT_MAX_TRANSFERS}]` })
        .option('on-conflict', {
          choices: ['refuse', 'rename', 'overwrite'] as const,
          describe: 'When the name is taken: refuse the file, store it as name-N, or replace [default: refuse; overwrite with --force]',
        })
        .option('grace', { type: 'number', describe: `With --serve: on Ctrl-C/SIGTERM/SIGHUP, seconds to let transfers in flight finish [default: ${DEFAULT_GRACE_SECONDS}]` })
        .option('per-host-transfers', { type: 'number', describe: `With --serve: transfers at once from one address [default: ${DEFAULT_PER_HOST_TRANSFERS}]` })
        .option('per-host-conns', { type: 'number', default: DEFAULT_PER_HOST_CONNECTIONS, describe: 'Connections at once from one address, handshaking or transferring (IPv6: per /64)' })
        .option('handshake-timeout', { type: 'number', default: DEFAULT_HANDSHAKE_SECONDS, describe: 'Drop a connection that has not sent its header this many seconds after connecting (0: never)' })
        .option('min-rate', {
          type: 'string',
          default: '1K',
          describe: 'Cut a transfer that moves less than this per second over a --timeout window (0: no floor)',
          coerce: (text: string) => parseSizeOption('--min-rate', text),
        })
        .option('allow-dotfiles', { type: 'boolean', default: false, describe: 'Accept names starting with a dot (.bashrc) into a target folder; refused by default' })
        .option('key-file', { type: 'string', describe: 'Take only senders with a key listed here (lines from ftx keygen; TLS 1.3); each writes under TARGET/IDENTITY/ with --serve [default: $FTX_KEY_FILE]' })
        .option('code', { type: 'boolean', default: false, describe: 'Make a one-time code and take only the sender that gives it (printed with the command to type there)' })
        .option('insecure', { type: 'boolean', default: false, describe: 'With --serve: serve without keys, taking files from anyone who reaches the port' })
        .option('partial-max-age', {
          type: 'string',
          default: '7d',
          describe: 'Partial files kept to resume cut transfers: remove them once untouched this long, and never resume older ones (at start-up; hourly with --serve; 0: keep them)',
          coerce: (text: string) => {
            const ms = parseDuration(text);
            if (ms === undefined) throw new UsageError(`--partial-max-age "${text}" is not a duration; write e.g. 90m, 24h or 7d`);
            return ms;
          },
        })
        .check((argv) => {
          if (argv.force && argv['on-conflict'] && argv['on-conflict'] !== 'overwrite') throw new UsageError('--force means --on-conflict overwrite; give one or the other');
          if (argv.code && argv['key-file'] !== undefined) throw new UsageError('--code and --key-file are two ways to check the sender: give one');
          if (argv.code && argv.serve) throw new UsageError('--code is for one sender, once; a serving receiver takes keys (--key-file)');
          if (argv.insecure && !argv.serve) throw new UsageError('--insecure only applies to --serve (a one-shot receiver is plain unless given --code or --key-file)');
          for (const option of ['max-conns', 'grace', 'per-host-transfers'] as const) {
            if (argv[option] !== undefined && !argv.serve) throw new UsageError(`--${option} only applies to --serve; add --serve or drop --${option}`);
          }
          const maxConns = argv['max-conns'];
          if (maxConns !== undefined && !(Number.isInteger(maxConns) && maxConns >= 1)) throw new UsageError('--max-conns must be a whole number of at least 1');
          if (argv.grace !== undefined) requireSeconds('--grace', argv.grace);
          requireSeconds('--handshake-timeout', argv['handshake-timeout']);
          for (const option of ['per-host-conns', 'per-host-transfers'] as const) {
            const value = argv[option];
            if (value !== undefined && !(Number.isInteger(value) && value >= 1)) throw new UsageError(`--${option} must be a whole number of at least 1`);
          }
          return true;
        })
        .check((argv) => {
          if (recvTarget(argv) === '-') {
            if (argv.serve) throw new UsageError('--serve stores into a folder; it cannot write to stdout (-)');
            if (argv.json) throw new UsageError('--json prints on stdout, which `ftx recv -` fills with the data; use --log-format json for lines on stderr');
          }
          return true;
        })
        .example('ftx recv out.jpg', 'save the next file that arrives as out.jpg')
        .example('ftx recv /srv/in', 'store whatever is sent (files, folders) under /srv/in')
        .example('ftx recv - | tar x', 'write the one incoming file or stream to stdout; the exit code says whether it was verified')
        .example('ftx recv /srv/inbox --port 7000', 'keep the sender\'s file name, listen on port 7000')
        .example('ftx recv --serve /srv/backups --on-conflict rename', 'a backup box: many senders, forever'),
    )
    // The paths are read from argv._ (see sendPaths): a variadic positional would keep only
    // its last value under 'duplicate-arguments-array': false, which the options need.
    .command('send', 'PATH... DESTINATION  send files and folders (- for stdin) to a waiting `ftx recv`', (args) =>
      commonOptions(args)
        .usage('ftx send PATH... DESTINATION [options]\n\nPATH: files and folders to send (folders recursively; - reads stdin).\nDESTINATION: host, host:port or [ipv6]:port (port 9999 if omitted).')
        .option('name', { type: 'string', describe: 'Announce a single file, or stdin, under this name (required with -)' })
        .option('follow-symlinks', { type: 'boolean', default: false, describe: 'In folders, send what symbolic links point to (by default links are skipped, with a warning)' })
        .option('key-file', { type: 'string', describe: 'Prove this key (one line from ftx keygen) and send only encrypted, to a receiver that lists it [default: $FTX_KEY_FILE]' })
        .option('code', { type: 'string', describe: 'The code a receiver started with --code printed' })
        .option('resume', {
          type: 'boolean',
          default: true,
          describe: 'Continue files the receiver kept part of from a cut attempt (after both ends check the part is the same), and skip files it has with the same size and time; --no-resume sends everything whole',
        })
        .check((argv) => {
          const given = sendPaths(argv);
          if (given.length < 2) throw new UsageError(`say what to send and where: ftx send PATH... HOST[:PORT]${given.length === 1 ? ` (${given[0]} alone is not enough)` : ''}`);
          checkDestination(given[given.length - 1] as string);
          const sources = given.slice(0, -1);
          if (argv.code !== undefined && argv['key-file'] !== undefined) throw new UsageError('--code and --key-file are two ways to prove who you are: give one');
          if (sources.includes('-')) {
            if (sources.length > 1) throw new UsageError('- (stdin) is sent on its own: give no other paths with it');
            if (argv.name === undefined || argv.name === '') throw new UsageError('stdin has no name: give one with --name (e.g. --name db.dump)');
          }
          return true;
        })
        .option('hash', {
          choices: DIGEST_NAMES,
          describe: `Digest both ends check: blake3 (what b3sum prints), sha256 (what sha256sum prints), or xxh128 (a non-cryptographic checksum) [default: ${DEFAULT_DIGEST}; sha256 for receivers older than it]`,
        })
        .option('verified-only', {
          type: 'boolean',
          default: false,
          describe: 'Fail (exit 11) rather than send to a classic receiver, which cannot confirm the file',
        })
        .example('ftx send photo.jpg 192.168.1.20', 'send to the receiver on port 9999 of that machine')
        .example('ftx send ./photos notes.txt backupbox', 'a folder and a file in one session')
        .example('pg_dump -Fc db | ftx send - backupbox --name db.dump', 'a stream of unknown size')
        .example('ftx send db.dump backupbox:7000 --json --quiet', 'from a script: exit code says it all'),
    )
    .command('ping <destination>', 'Check that a receiver is up: it echoes a message stamped with its clock', (args) =>
      commonOptions(args)
        .positional('destination', {
          type: 'string',
          demandOption: true,
          describe: 'host, host:port or [ipv6]:port (port 9999 if omitted)',
          coerce: checkDestination,
        })
        .option('message', { alias: 'm', type: 'string', default: 'ping', describe: 'Text for the receiver to echo' })
        .option('key-file', { type: 'string', describe: 'Prove this key to a receiver that takes only senders with keys [default: $FTX_KEY_FILE]' })
        .example('ftx ping backupbox && ftx send db.dump backupbox', 'send only if the receiver is up'),
    )
    .command('keygen', 'Make a key for a sender: prints IDENTITY:KEY, for its key file and the receiver\'s', (args) =>
      commonOptions(args)
        .usage('ftx keygen --id NAME\n\nPrints one line, IDENTITY:KEY (32 random bytes). Keep it private (chmod 600): the sender proves it with --key-file, and the receiver lists it in its own --key-file.')
        .option('id', { type: 'string', demandOption: true, describe: 'The sender\'s name: it names the sender in logs, and its folder on a serving receiver' })
        .example('ftx keygen --id web1 > web1.key', 'a key for the machine web1')
        .example('cat web1.key >> /etc/ftx/senders.keys', 'on the receiver: let web1 send'),
    )
    .demandCommand(1, 'Say what to do: ftx recv, ftx send, ftx ping or ftx keygen (ftx --help lists them)')
    // A repeated option takes its last value (as with most Unix tools), instead of
    // becoming an array that the choices, coerce functions and the protocol never expect.
    .parserConfiguration({ 'duplicate-arguments-array': false })
    // Unknown commands are caught before parsing (main); strictOptions() leaves positional
    // arguments to the checks below and to send's own.
    .strictOptions()
    .check((argv) => {
      // strictOptions() does not count positional arguments: recv and ping take one at most.
      const [command, ...extra] = argv._.map(String);
      if ((command === 'recv' && extra.length > 1) || (command === 'ping' && extra.length > 0)) {
        throw new UsageError(`unexpected argument ${JSON.stringify(extra[command === 'recv' ? 1 : 0])}; ${command === 'recv' ? 'ftx recv takes one target' : 'ftx ping takes one destination'}`);
      }
      return true;
    })
    .version(VERSION)
    .help()
    .alias('h', 'help')
    .wrap(Math.min(100, process.stdout.columns || 100))
    .exitProcess(false)
    .fail((message, error) => {
      throw error ?? new UsageError(message);
    });
}

const COMMANDS = ['recv', 'send', 'ping', 'keygen'];

/** Runs the CLI; returns the exit code. Never calls process.exit itself. */
export async function main(argv: string[]): Promise<number> {
  // A closed terminal or pipe (SIGHUP, `| head`) must not turn a last line into a crash.
  ignoreBrokenOutput();
  const [first] = argv;
  if (first !== undefined && !first.startsWith('-') && !COMMANDS.includes(first)) {
    return usageFailure(argv, `unknown command "${first}"; use ftx recv, ftx send, ftx ping or ftx keygen`);
  }
  const parser = buildParser(argv);
  // --code is a flag on recv (make one) and a value on send (give it): left out of the union.
  let parsed: { _: (string | number)[] } & Partial<Omit<RecvArgs, 'code'> & Omit<SendArgs, 'code'>>;
  try {
    parsed = (await parser.parseAsync()) as typeof parsed;
  } catch (error) {
    // Whatever fails while parsing (yargs' own checks, our coerce functions) is a usage error.
    return usageFailure(argv, error instanceof Error ? error.message : String(error));
  }
  const command = parsed._[0];
  // yargs has printed help or the version (it does not exit: exitProcess(false)).
  const shown = parsed as { help?: boolean; version?: boolean };
  if (shown.help || shown.version || typeof command !== 'string' || !COMMANDS.includes(command)) return EXIT_OK;

  const args = parsed as unknown as CommonArgs;
  const output = await createOutput({
    level: args['log-level'] ?? (args.quiet ? 'warn' : 'info'),
    format: args['log-format'] === 'auto' ? (process.stderr.isTTY ? 'text' : 'json') : args['log-format'],
    progress: Boolean(process.stderr.isTTY) && !args.quiet,
  });
  const interruption = watchSignals();
  try {
    const { runKeygen, runPing, runRecv, runSend, runServe } = await import('./commands.js');
    if (command === 'keygen') {
      const summary = runKeygen(parsed as unknown as KeygenArgs);
      if (args.json) process.stdout.write(`${JSON.stringify({ ok: true, ...summary })}\n`);
      return EXIT_OK;
    }
    const recvArgs = {
      ...(parsed as unknown as RecvArgs),
      target: recvTarget(parsed),
      grace: parsed.grace ?? DEFAULT_GRACE_SECONDS,
      'max-conns': parsed['max-conns'] ?? DEFAULT_MAX_TRANSFERS,
      'per-host-transfers': parsed['per-host-transfers'] ?? DEFAULT_PER_HOST_TRANSFERS,
    };
    const summary =
      command === 'recv'
        ? recvArgs.serve
          ? await runServe(recvArgs, output, interruption)
          : await runRecv(recvArgs, output, interruption.signal)
        : command === 'send'
          ? await runSend({ ...(parsed as unknown as SendArgs), paths: sendPaths(parsed) }, output, interruption.signal)
          : await runPing(parsed as unknown as PingArgs, output, interruption.signal);
    if (args.json) process.stdout.write(`${JSON.stringify({ ok: true, ...summary })}\n`);
    return EXIT_OK;
  } catch (error) {
    const code = exitCodeFor(error, interruption.signalName());
    reportFailure(output, error, code, command === 'recv' ? 'receiver' : 'sender');
    if (args.json) {
      // The same words as the line on stderr, advice included.
      const side: Side = command === 'recv' ? 'receiver' : 'sender';
      const failure = isFtxError(error) ? { code: error.code, message: describeFailure(error, side) } : { code: 'FTX_ERR_INTERNAL', message: String(error) };
      // Some entries of a session failed: the others are stored; say which failed and why.
      const partial = error instanceof PartialError ? { stored: error.stored, failed: error.failed, failures: error.failures } : {};
      process.stdout.write(`${JSON.stringify({ ok: false, exitCode: code, error: failure, ...partial })}\n`);
    }
    return code;
  } finally {
    interruption.dispose();
  }
}

/**
 * A command line that could not be parsed: one line on stderr, and with --json the
 * failure summary on stdout too (found in argv by hand, since parsing failed).
 */
function usageFailure(argv: string[], message: string): number {
  const code = EXIT_CODES.FTX_ERR_USAGE;
  writeStderr(`ftx: error: ${escapeForTerminal(message)}\nRun 'ftx --help' for usage.\n`);
  if (jsonRequested(argv)) {
    process.stdout.write(`${JSON.stringify({ ok: false, exitCode: code, error: { code: 'FTX_ERR_USAGE', message } })}\n`);
  }
  return code;
}

/** Whether argv asks for --json, as yargs would read it (the last of --json / --no-json wins). */
function jsonRequested(argv: string[]): boolean {
  let wanted = false;
  for (const [index, arg] of argv.entries()) {
    if (arg === '--') break;
    if (arg === '--json') wanted = argv[index + 1] !== 'false';
    else if (arg === '--json=true') wanted = true;
    else if (arg === '--no-json' || arg === '--json=false') wanted = false;
  }
  return wanted;
}

/** `ftx recv`'s target: its one positional argument, or the current folder. */
export function recvTarget(argv: { _: (string | number)[] }): string {
  return argv._[1] === undefined ? '.' : String(argv._[1]);
}

/** `ftx send`'s positional arguments: the paths, then the destination. */
export function sendPaths(argv: { _: (string | number)[] }): string[] {
  return argv._.slice(1).map(String);
}

/** Checks a destination as the API will read it (a usage error now, before anything starts); keeps the text. */
function checkDestination(text: string): string {
  parseHostPort(text);
  return text;
}

function parseMaxSize(text: string): number {
  return parseSizeOption('--max-size', text);
}

function parseSizeOption(option: string, text: string): number {
  const bytes = parseByteSize(text);
  if (bytes === undefined) throw new UsageError(`${option} "${text}" is not a size; write e.g. 500M or 10G`);
  return bytes;
}

/**
 * Signals that stop ftx, with the exit code each one gets: 128 + its number, as a shell
 * reports a process killed by it. SIGHUP is the terminal closing or an SSH session
 * dropping: without a handler Node dies at once and leaves the partial file behind.
 */
const STOP_SIGNALS = {
  SIGINT: EXIT_CODES.FTX_ERR_INTERRUPTED,
  SIGTERM: EXIT_SIGTERM,
  // 128 + 1. Belongs next to EXIT_SIGTERM in exit-codes.ts (not this file's to change).
  SIGHUP: 129,
} as const satisfies Partial<Record<NodeJS.Signals, number>>;

type StopSignal = keyof typeof STOP_SIGNALS;

const SIGNAL_STORIES: Record<StopSignal, string> = {
  SIGINT: 'interrupted by Ctrl-C',
  SIGTERM: 'stopped by SIGTERM',
  SIGHUP: 'stopped by SIGHUP (the terminal closed or the SSH session dropped)',
};

/**
 * The first Ctrl-C, SIGTERM or SIGHUP aborts the transfer, which removes its partial
 * file and exits with that signal's code; a second one exits at once.
 */
function watchSignals(): Interruption {
  const controller = new AbortController();
  let received: NodeJS.Signals | undefined;
  let count = 0;
  const onSignal = (name: StopSignal) => {
    count += 1;
    if (count === 2 && interruption.onRepeat) {
      interruption.onRepeat();
      return;
    }
    if (count >= 2) process.exit(STOP_SIGNALS[name]);
    received = name;
    controller.abort(new InterruptedError(SIGNAL_STORIES[name], name));
  };
  const names = Object.keys(STOP_SIGNALS) as StopSignal[];
  for (const name of names) process.on(name, onSignal);
  const interruption: Interruption = {
    signal: controller.signal,
    signalName: () => received,
    onRepeat: undefined,
    dispose: () => {
      for (const name of names) process.removeListener(name, onSignal);
    },
  };
  return interruption;
}

function exitCodeFor(error: unknown, signal?: NodeJS.Signals): number {
  const stoppedBy = signal ?? (error instanceof InterruptedError ? error.signal : undefined);
  if (stoppedBy !== undefined && stoppedBy in STOP_SIGNALS) return STOP_SIGNALS[stoppedBy as StopSignal];
  if (error instanceof InterruptedError) return EXIT_CODES.FTX_ERR_INTERRUPTED;
  return isFtxError(error) ? EXIT_CODES[error.code] : EXIT_INTERNAL;
}

/** EPIPE/EIO on stdout or stderr (the reader or the terminal went away) is not worth a crash. */
function ignoreBrokenOutput(): void {
  for (const stream of [process.stdout, process.stderr]) {
    if (stream.listenerCount('error') === 0) stream.on('error', () => {});
  }
}

function reportFailure(output: Output, error: unknown, exitCode: number, side: Side): void {
  if (error instanceof FtxError) {
    output.log.error({ code: error.code, exitCode }, describeFailure(error, side));
    if (error.cause !== undefined) output.log.debug({ cause: String((error.cause as Error)?.stack ?? error.cause) }, 'cause');
  } else {
    output.log.error({ code: 'FTX_ERR_INTERNAL', exitCode }, `unexpected error (a bug in ftx; please report it): ${error instanceof Error ? error.message : String(error)}`);
  }
  output.log.debug({ stack: error instanceof Error ? error.stack : undefined }, 'stack');
}

function writeStderr(text: string): void {
  process.stderr.write(text);
}
