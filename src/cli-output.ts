/**
 * What the CLI shows on stderr: log lines (pino) and the progress bar (cli-progress),
 * kept from tearing each other. While a bar is drawn, log lines go through
 * MultiBar.log(), which prints them above the bar; otherwise straight to fd 2.
 *
 * pino and cli-progress are loaded only by commands that use them: `ftx --help`
 * should not pay for them.
 */
import { writeSync } from 'node:fs';
import type { MultiBar, SingleBar } from 'cli-progress';
import type { Logger } from 'pino';
import { formatBytes } from './units.js';

export type LogFormat = 'text' | 'json';
export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';

/** Where log lines end up: above the bar while one is drawn, else stderr. */
class StderrSink {
  bars: MultiBar | undefined;

  constructor(private readonly format: LogFormat) {}

  /** pino calls this with one JSON line per record. */
  write(line: string): void {
    const text = this.format === 'json' ? line : formatForHumans(line);
    // MultiBar clears only the first line it logs over; erase each line's tail so a
    // short log line does not leave the end of a bar line behind it.
    if (this.bars) this.bars.log(text.replace(/\n$/, '\u001b[K\n'));
    else writeSync(2, text);
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
    return line;
  }
  const level = typeof record.level === 'number' ? record.level : 30;
  let text = `ftx: ${LEVEL_LABELS[level] ?? ''}${String(record.msg ?? '')}`;
  if (level <= 20) {
    const fields = Object.entries(record).filter(([key]) => !PINO_FIELDS.has(key));
    if (fields.length > 0) text += ` ${JSON.stringify(Object.fromEntries(fields))}`;
  }
  return `${text}\n`;
}

export interface Output {
  log: Logger;
  /** Starts a bar if stderr is a terminal and output is not quiet; returns it or undefined. */
  startProgress(total: number, label: string): Promise<Progress | undefined>;
  /** Serve mode: one line per transfer plus a total, under the same conditions. */
  startBoard(): Promise<TransferBoard | undefined>;
}

export async function createOutput(options: { level: LogLevel; format: LogFormat; progress: boolean }): Promise<Output> {
  const { pino } = await import('pino');
  const sink = new StderrSink(options.format);
  const log = pino({ level: options.level, base: undefined, timestamp: options.format === 'json' }, sink);
  return {
    log,
    startProgress: async (total, label) => (options.progress ? routeLogsAbove(sink, await Progress.start(total, label)) : undefined),
    startBoard: async () => (options.progress ? routeLogsAbove(sink, await TransferBoard.start()) : undefined),
  };
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

  static async start(): Promise<TransferBoard> {
    const cliProgress = (await import('cli-progress')).default;
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
    const bar = this.bars.create(Math.max(total, 1), 0, { label: label.slice(0, 24).padEnd(24), done: formatBytes(0), size: formatBytes(total) });
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
    const summary = `${this.#filesStored} files stored, ${this.#rows.size} in progress, ${formatBytes(bytes)} received (${formatBytes(bytes / Math.max(seconds, 1e-3))}/s average)`;
    this.totalBar.update(0, { summary });
  }
}

/** Redrawing on every chunk would cost more than the transfer; a few times a second is enough. */
const REDRAW_EVERY_MS = 100;

export class Progress extends BarDisplay {
  #lastDraw = 0;
  #done = 0;
  readonly #startedAt = performance.now();

  private constructor(
    bars: MultiBar,
    private readonly bar: SingleBar,
    private readonly total: number,
  ) {
    super(bars);
  }

  static async start(total: number, label: string): Promise<Progress> {
    const cliProgress = (await import('cli-progress')).default;
    const bars = new cliProgress.MultiBar(
      {
        stream: process.stderr,
        format: `${label} {bar} {percentage}% | {done} / {size} | {rate} | ETA {eta_formatted}`,
        barsize: 30,
        hideCursor: true,
        clearOnComplete: false,
        stopOnComplete: false,
        etaBuffer: 50,
        fps: 10,
      },
      cliProgress.Presets.shades_classic,
    );
    const bar = bars.create(Math.max(total, 1), 0, { done: formatBytes(0), size: formatBytes(total), rate: '-' });
    return new Progress(bars, bar, total);
  }

  update(done: number): void {
    this.#done = done;
    const now = performance.now();
    if (now - this.#lastDraw < REDRAW_EVERY_MS && done < this.total) return;
    this.#lastDraw = now;
    this.redraw();
  }

  protected redraw(): void {
    const seconds = (performance.now() - this.#startedAt) / 1000;
    const rate = seconds > 0 ? `${formatBytes(this.#done / seconds)}/s` : '-';
    this.bar.update(this.total === 0 ? 1 : this.#done, { done: formatBytes(this.#done), size: formatBytes(this.total), rate });
  }
}
