/**
 * What the CLI shows on stderr: log lines (pino) and the progress bar (cli-progress),
 * kept from tearing each other. While a bar is drawn, log lines go through
 * MultiBar.log(), which prints them above the bar; otherwise straight to fd 2.
 *
 * pino and cli-progress are loaded only by commands that use them: `ftx --help`
 * should not pay for them. cli-progress is loaded when the output is created, not when
 * the first bar starts: a bar created after its transfer ended would never be stopped,
 * and its redraw timer would keep the process alive.
 *
 * Text lines may carry what a peer sent (an Error frame's message, a ping reply, a file
 * name): every one goes through escapeForTerminal, so no peer can move the cursor,
 * erase a line or forge one of ours.
 */
import { writeSync } from 'node:fs';
import type { MultiBar, SingleBar } from 'cli-progress';
import { createRequire } from 'node:module';
import type { Logger } from 'pino';
import type { Log, LogMethod } from '../util/log.js';
import { formatBytes, plural } from '../util/units.js';

type CliProgress = typeof import('cli-progress');

/**
 * Characters a terminal acts on, or that hide or reorder text: C0 controls (ESC, CR,
 * LF, BEL...), DEL, C1 controls (U+0080-U+009F, some terminals read U+009B as CSI),
 * and Unicode format characters: bidi embeddings, overrides and isolates
 * (U+202A-U+202E, U+2066-U+2069, U+061C), zero-width and direction marks
 * (U+200B-U+200F, U+2060-U+2064, U+180E), the soft hyphen, line and paragraph
 * separators (U+2028/U+2029), the BOM (U+FEFF) and interlinear annotations (U+FFF9-U+FFFB).
 */
const TERMINAL_UNSAFE = /[\u0000-\u001f\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u2069\ufeff\ufff9-\ufffb]/g;

const NAMED_ESCAPES: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/**
 * Text made safe to print on a terminal as one line: every character in TERMINAL_UNSAFE
 * becomes a visible escape (\n, \x1b, \u202e), the rest is left as it is.
 */
export function escapeForTerminal(text: string): string {
  return text.replace(TERMINAL_UNSAFE, (char) => {
    const named = NAMED_ESCAPES[char];
    if (named) return named;
    const code = char.charCodeAt(0);
    return code < 0x100 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}

/** DECAWM: whether the terminal wraps at the right margin (cli-progress turns it off while bars are drawn). */
const WRAP_ON = '\u001b[?7h';
const WRAP_OFF = '\u001b[?7l';
/** Erase from the cursor to the end of the screen. */
const ERASE_BELOW = '\u001b[J';

export type LogFormat = 'text' | 'json';
export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';

/** Where log lines end up: above the bar while one is drawn, else stderr. */
class StderrSink {
  bars: MultiBar | undefined;

  constructor(private readonly format: LogFormat) {}

  /** pino calls this with one JSON line per record. */
  write(line: string): void {
    const text = this.format === 'json' ? line : formatForHumans(line);
    if (this.bars) {
      // cli-progress turns the terminal's line wrapping off while bars are drawn (so a
      // bar never spills onto a second row), which cuts every longer log line at the
      // terminal's width. A log line is printed above the bars with wrapping on, so it
      // is read in full. MultiBar prints log lines where the bars start and redraws the
      // bars below them; erasing below first clears the bar rows the line is written
      // over (a wrapped line covers more than one).
      this.bars.log(`${WRAP_ON}${ERASE_BELOW}${text}${WRAP_OFF}`);
    } else {
      writeStderr(text);
    }
  }
}

/** Writes to fd 2, dropping the line if nobody can read it any more (the terminal closed: SIGHUP). */
function writeStderr(text: string): void {
  try {
    writeSync(2, text);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EIO' && code !== 'EPIPE') throw error;
  }
}

const LEVEL_LABELS: Record<number, string> = { 10: 'trace: ', 20: 'debug: ', 30: '', 40: 'warning: ', 50: 'error: ', 60: 'fatal: ' };
const PINO_FIELDS = new Set(['level', 'time', 'msg', 'pid', 'hostname']);

/** "ftx: warning: message" — and at debug level, the record's fields too. */
function formatForHumans(line: string): string {
  let record: Record<string, unknown>;
  try {
    record = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return `${escapeForTerminal(line.replace(/\n$/, ''))}\n`;
  }
  const level = typeof record.level === 'number' ? record.level : 30;
  let text = `ftx: ${LEVEL_LABELS[level] ?? ''}${String(record.msg ?? '')}`;
  if (level <= 20) {
    const fields = Object.entries(record).filter(([key]) => !PINO_FIELDS.has(key));
    if (fields.length > 0) text += ` ${JSON.stringify(Object.fromEntries(fields))}`;
  }
  return `${escapeForTerminal(text)}\n`;
}

export interface Output {
  log: Log;
  /** Whether startProgress draws anything (a terminal, not quiet): worth counting totals for. */
  showsProgress: boolean;
  /**
   * For the few lines a user cannot do without even with --quiet (the port that
   * --port 0 picked): logs at info level unless the level is `silent`.
   */
  essential: Log;
  /**
   * Starts a bar if stderr is a terminal and output is not quiet; returns it or undefined.
   * `files`: a session's file count, shown as "files done / files"; `total` 0 with
   * `unknownTotal` for a stream (bytes and rate, no ETA).
   */
  startProgress(total: number, label: string, options?: { files?: number | undefined; unknownTotal?: boolean }): Progress | undefined;
  /** Serve mode: one line per transfer plus a total, under the same conditions. */
  startBoard(): TransferBoard | undefined;
}

export async function createOutput(options: { level: LogLevel; format: LogFormat; progress: boolean }): Promise<Output> {
  const cliProgress = options.progress ? await loadCliProgress() : undefined;
  const sink = new StderrSink(options.format);
  const log = lazyLogger(options.level, options.format, sink);
  const essential = options.level === 'warn' || options.level === 'error' ? lazyLogger('info', options.format, sink) : log;
  return {
    log,
    essential,
    showsProgress: cliProgress !== undefined,
    startProgress: (total, label, options) => (cliProgress ? routeLogsAbove(sink, Progress.start(cliProgress, total, label, options)) : undefined),
    startBoard: () => (cliProgress ? routeLogsAbove(sink, TransferBoard.start(cliProgress)) : undefined),
  };
}

const LEVEL_VALUES: Record<LogLevel, number> = { debug: 20, info: 30, warn: 40, error: 50, silent: Number.POSITIVE_INFINITY };

/**
 * A logger that loads pino on the first line it has to write. pino and its dependencies
 * cost a process ~9 MB of RSS and 20-40 ms to load; a quiet run (--quiet, cron) may log
 * nothing at all and should pay for neither. Levels are checked here, without pino.
 */
function lazyLogger(level: LogLevel, format: LogFormat, sink: StderrSink): Log {
  let logger: Logger | undefined;
  const write = (method: 'debug' | 'info' | 'warn' | 'error'): LogMethod => {
    const enabled = LEVEL_VALUES[method] >= LEVEL_VALUES[level];
    return (fields, message) => {
      if (!enabled) return;
      // pino is CommonJS: required synchronously, so a line is never delayed or reordered.
      logger ??= (createRequire(import.meta.url)('pino') as typeof import('pino')).pino({ level, base: undefined, timestamp: format === 'json' }, sink);
      logger[method](fields, message);
    };
  };
  return { debug: write('debug'), info: write('info'), warn: write('warn'), error: write('error') };
}

async function loadCliProgress(): Promise<CliProgress> {
  return (await import('cli-progress')).default;
}

/** While `display` is drawn, log lines go above its bars; after stop(), to stderr again. */
function routeLogsAbove<T extends BarDisplay>(sink: StderrSink, display: T): T {
  sink.bars = display.bars;
  display.onStop = () => {
    sink.bars = undefined;
  };
  return display;
}

/** Something drawn with a MultiBar: a single transfer's bar, or serve mode's board. */
abstract class BarDisplay {
  onStop: (() => void) | undefined;

  constructor(readonly bars: MultiBar) {}

  /** Draws the final state and releases the terminal. Safe to call twice. */
  stop(): void {
    if (!this.onStop) return;
    this.redraw();
    // update() before stop(): lines logged since the last frame are printed, not lost.
    this.bars.update();
    this.bars.stop();
    this.onStop();
    this.onStop = undefined;
  }

  protected abstract redraw(): void;
}

/**
 * Serve mode's display: a bar per transfer in flight, and a total line (files stored,
 * transfers active, bytes received since start).
 */
export class TransferBoard extends BarDisplay {
  readonly #rows = new Map<number, { bar: SingleBar; total: number; done: number }>();
  readonly #startedAt = performance.now();
  #bytesBefore = 0;
  #filesStored = 0;
  #lastDraw = 0;

  private constructor(
    bars: MultiBar,
    private readonly totalBar: SingleBar,
  ) {
    super(bars);
  }

  static start(cliProgress: CliProgress): TransferBoard {
    const bars = new cliProgress.MultiBar(
      { stream: process.stderr, format: '{label} {bar} {percentage}% | {done} / {size}', barsize: 24, hideCursor: true, clearOnComplete: false, fps: 10 },
      cliProgress.Presets.shades_classic,
    );
    const totalBar = bars.create(1, 0, { label: 'total', done: '', size: '', rate: '' }, { format: '{label} {summary}' });
    const board = new TransferBoard(bars, totalBar);
    board.redraw();
    return board;
  }

  add(id: number, label: string, total: number): void {
    // The label carries the sender's file name: escaped, like every line ftx prints.
    const bar = this.bars.create(Math.max(total, 1), 0, { label: escapeForTerminal(label).slice(0, 24).padEnd(24), done: formatBytes(0), size: formatBytes(total) });
    this.#rows.set(id, { bar, total, done: 0 });
    this.redraw();
  }

  update(id: number, done: number): void {
    const row = this.#rows.get(id);
    if (!row) return;
    row.done = done;
    const now = performance.now();
    if (now - this.#lastDraw < REDRAW_EVERY_MS) return;
    this.#lastDraw = now;
    this.redraw();
  }

  /** Removes a transfer's line; `stored` counts it in the total. */
  remove(id: number, stored: boolean): void {
    const row = this.#rows.get(id);
    if (!row) return;
    this.#rows.delete(id);
    this.bars.remove(row.bar);
    this.#bytesBefore += row.done;
    if (stored) this.#filesStored += 1;
    this.redraw();
  }

  protected redraw(): void {
    for (const row of this.#rows.values()) row.bar.update(row.total === 0 ? 1 : row.done, { done: formatBytes(row.done) });
    let bytes = this.#bytesBefore;
    for (const row of this.#rows.values()) bytes += row.done;
    const seconds = (performance.now() - this.#startedAt) / 1000;
    const summary = `${plural(this.#filesStored, 'file')} stored, ${this.#rows.size} in progress, ${formatBytes(bytes)} received (${formatBytes(bytes / Math.max(seconds, 1e-3))}/s average)`;
    this.totalBar.update(0, { summary });
  }
}

/** Redrawing on every chunk would cost more than the transfer; a few times a second is enough. */
const REDRAW_EVERY_MS = 100;

export class Progress extends BarDisplay {
  #lastDraw = 0;
  #done = 0;
  #filesDone = 0;
  readonly #startedAt = performance.now();

  private constructor(
    bars: MultiBar,
    private readonly bar: SingleBar,
    private readonly total: number,
    private readonly files: number | undefined,
    private readonly unknownTotal: boolean,
  ) {
    super(bars);
  }

  static start(cliProgress: CliProgress, total: number, label: string, options: { files?: number | undefined; unknownTotal?: boolean } = {}): Progress {
    const files = options.files;
    const format = options.unknownTotal
      ? `${label} {done} | {rate}`
      : `${label} {bar} {percentage}% | {done} / {size}${files === undefined ? '' : ' | {files}'} | {rate} | ETA {eta_formatted}`;
    const bars = new cliProgress.MultiBar(
      {
        stream: process.stderr,
        format,
        barsize: 30,
        hideCursor: true,
        clearOnComplete: false,
        stopOnComplete: false,
        etaBuffer: 50,
        fps: 10,
      },
      cliProgress.Presets.shades_classic,
    );
    const bar = bars.create(Math.max(total, 1), 0, { done: formatBytes(0), size: formatBytes(total), rate: '-', files: '' });
    return new Progress(bars, bar, total, files, options.unknownTotal === true);
  }

  update(done: number): void {
    this.#done = done;
    const now = performance.now();
    if (now - this.#lastDraw < REDRAW_EVERY_MS && done < this.total) return;
    this.#lastDraw = now;
    this.redraw();
  }

  /** A session's file is done (stored or not). */
  fileDone(): void {
    this.#filesDone += 1;
    this.update(this.#done);
  }

  protected redraw(): void {
    const seconds = (performance.now() - this.#startedAt) / 1000;
    const rate = seconds > 0 ? `${formatBytes(this.#done / seconds)}/s` : '-';
    const files = this.files === undefined ? '' : `${this.#filesDone.toLocaleString('en-US')} / ${this.files.toLocaleString('en-US')} files`;
    const shown = this.total === 0 ? (this.unknownTotal ? 0 : 1) : this.#done;
    this.bar.update(shown, { done: formatBytes(this.#done), size: formatBytes(this.total), rate, files });
  }
}
