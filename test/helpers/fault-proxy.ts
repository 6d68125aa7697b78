/**
 * A TCP proxy for tests that misbehaves on purpose, the same way on every run.
 *
 * Each accepted connection gets its own connection to the target and two one-way pumps:
 * 'up' (client -> server) and 'down' (server -> client). A pump queues what its source
 * socket reads, and a single async loop per pump takes the next batch, waits until it is
 * due (delayMs, coalesceMs), trims it at the next byte mark (stallAfterBytes,
 * cutAfterBytes) and writes it, whole or in splitInto-sized segments. Because one loop
 * does every step, bytes stay in order however the faults are combined.
 *
 * Backpressure: the source is paused while the destination waits for 'drain', while a
 * stall lasts, and while the queue holds QUEUE_HIGH_WATER_BYTES, so the proxy buffers at
 * most about one socket read beyond that mark.
 *
 * Closing mirrors TCP: a FIN from one side ends the other side's write once the queue is
 * flushed (both sockets allow half-open), and an error or reset on one side resets the
 * other, so a peer sees what it would have seen without the proxy.
 *
 * Nothing here is random. The only clock is the timers that delay, coalesce and stall,
 * and every one of them is cleared when its connection ends or the proxy closes.
 */
import { connect, createServer, type Socket } from 'node:net';
import { setImmediate as nextTurn } from 'node:timers/promises';

export interface DirectionFaults {
  /** Writes every batch as segments of at most this many bytes (1 = a byte per write), with Nagle off. */
  splitInto?: number;
  /**
   * Pause between split segments. Default 0: one event-loop turn, enough for a reader in this
   * process to read each segment on its own. A reader in another process may still get them
   * glued unless the gap is about 1 ms or more.
   */
  splitGapMs?: number;
  /** Holds the first byte of a batch this long, then writes everything queued by then as one write: glues separate writes together. */
  coalesceMs?: number;
  /** Writes each chunk this long after it arrived (added to coalesceMs when both are set). Order is kept. */
  delayMs?: number;
  /** After forwarding this many bytes, stops forwarding and reading for stallMs. 0 stalls before the first byte. */
  stallAfterBytes?: number;
  /** How long the stall lasts; undefined or Infinity stalls until the connection or the proxy closes. */
  stallMs?: number;
  /** Forwards exactly this many bytes in this direction, then cuts both sockets. 0 cuts as soon as the target connects. */
  cutAfterBytes?: number;
  /**
   * 'fin' (the default) ends both sockets gracefully; 'rst' resets both (socket.resetAndDestroy())
   * RESET_GRACE_MS after the last byte left, so an active reader has taken the bytes by then.
   */
  cutWith?: 'fin' | 'rst';
}

export interface FaultPlan {
  /** Faults on bytes from the client to the target. */
  up?: DirectionFaults;
  /** Faults on bytes from the target to the client. */
  down?: DirectionFaults;
}

export type Direction = 'up' | 'down';

export interface FaultProxy {
  readonly host: '127.0.0.1';
  readonly port: number;
  /** Connections accepted so far, closed ones included; also the index the next one gets. */
  readonly connections: number;
  /** Bytes written on per direction, summed over all connections. Live. */
  readonly forwarded: Readonly<Record<Direction, number>>;
  /** Stops listening and destroys every live connection. Idempotent. Rejects if a plan function returned an invalid plan. */
  close(): Promise<void>;
}

/** Past this many queued bytes the source is paused, as a socket pauses past its highWaterMark. */
const QUEUE_HIGH_WATER_BYTES = 64 * 1024;

/** setTimeout turns anything longer into 1 ms (with a warning), so longer waits are treated as forever. */
const MAX_TIMER_MS = 2 ** 31 - 1;

const PROXY_HOST = '127.0.0.1';

/**
 * How long a reset waits after the last forwarded byte left. A reset that reaches the reader
 * before it read those bytes loses them: libuv reports a plain EOF ('end') when the bytes and
 * the reset arrive in the same poll, and Node drops bytes still buffered in a paused socket
 * when ECONNRESET destroys it. The wait lets an active reader take the bytes first.
 */
const RESET_GRACE_MS = 10;

export async function startFaultProxy(
  target: { host: string; port: number },
  plan: FaultPlan | ((connectionIndex: number) => FaultPlan),
): Promise<FaultProxy> {
  if (typeof plan !== 'function') validatePlan(plan);
  const forwarded: Record<Direction, number> = { up: 0, down: 0 };
  const live = new Set<ProxiedConnection>();
  let accepted = 0;
  let closing: Promise<void> | undefined;
  let planError: unknown;

  const server = createServer({ allowHalfOpen: true }, (client) => {
    const connectionIndex = accepted++;
    const upstream = connect({ host: target.host, port: target.port, allowHalfOpen: true });
    const connection = new ProxiedConnection(client, upstream, (direction, bytes) => {
      forwarded[direction] += bytes;
    });
    live.add(connection);
    void connection.closed.then(() => live.delete(connection));
    if (closing !== undefined) return connection.destroy();

    let connectionPlan: FaultPlan;
    try {
      connectionPlan = typeof plan === 'function' ? plan(connectionIndex) : plan;
      if (typeof plan === 'function') validatePlan(connectionPlan);
    } catch (error) {
      // Thrown here it would be uncaught; close() hands it to the test instead, and the
      // client sees a reset rather than a clean end it could mistake for an answer.
      planError ??= error;
      return connection.reset();
    }
    upstream.once('connect', () => connection.start(connectionPlan));
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, PROXY_HOST, () => {
      server.removeListener('error', reject);
      resolve();
    });
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('fault proxy is not listening on TCP');

  return {
    host: PROXY_HOST,
    port: address.port,
    get connections() {
      return accepted;
    },
    forwarded,
    close() {
      closing ??= (async () => {
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        const connections = [...live];
        for (const connection of connections) connection.destroy();
        await Promise.all([stopped, ...connections.map((connection) => connection.closed)]);
        if (planError !== undefined) throw planError;
      })();
      return closing;
    },
  };
}

/** One client socket spliced to one target socket, and the lifetime their pumps and timers share. */
class ProxiedConnection {
  /** Aborted on cut, error, close or teardown: pumps stop, timers clear, later bytes are dropped. */
  private readonly lifetime = new AbortController();
  readonly closed: Promise<void>;

  constructor(
    private readonly client: Socket,
    private readonly upstream: Socket,
    private readonly countForwarded: (direction: Direction, bytes: number) => void,
  ) {
    // Listening from the start: an error before the target connects must not go uncaught.
    client.on('error', () => this.resetBecauseOf(client));
    upstream.on('error', () => this.resetBecauseOf(upstream));
    this.closed = Promise.all([closeOf(client), closeOf(upstream)]).then(() => this.lifetime.abort());
  }

  start(plan: FaultPlan): void {
    if (this.lifetime.signal.aborted) return;
    const pumps = [
      new Pump(this.client, this.upstream, plan.up ?? {}, this.hooksFor('up')),
      new Pump(this.upstream, this.client, plan.down ?? {}, this.hooksFor('down')),
    ];
    // A throw inside a pump is a bug here, not a network fault; a reset makes it visible to the test.
    for (const pump of pumps) pump.run().catch(() => this.reset());
  }

  /** Resets the client; the target connection may still be connecting, so it is simply dropped. */
  reset(): void {
    this.lifetime.abort();
    if (!this.client.destroyed) this.client.resetAndDestroy();
    this.upstream.destroy();
  }

  destroy(): void {
    this.lifetime.abort();
    this.client.destroy();
    this.upstream.destroy();
  }

  private hooksFor(direction: Direction): PumpHooks {
    return {
      signal: this.lifetime.signal,
      countForwarded: (bytes) => this.countForwarded(direction, bytes),
      cut: (how) => this.cut(how),
    };
  }

  private cut(how: 'fin' | 'rst'): void {
    if (this.lifetime.signal.aborted) return;
    this.lifetime.abort();
    for (const socket of [this.client, this.upstream]) {
      if (socket.destroyed) continue;
      if (how === 'rst') {
        socket.resetAndDestroy();
      } else {
        // Closing with unread bytes would send RST, not FIN, so keep reading (the pumps drop
        // what arrives) and let the socket close itself once its peer ends too.
        socket.resume();
        socket.end();
      }
    }
  }

  private resetBecauseOf(failed: Socket): void {
    this.lifetime.abort();
    const other = failed === this.client ? this.upstream : this.client;
    if (!other.destroyed) other.resetAndDestroy();
    failed.destroy();
  }
}

interface PumpHooks {
  signal: AbortSignal;
  countForwarded(bytes: number): void;
  cut(how: 'fin' | 'rst'): void;
}

interface QueuedChunk {
  bytes: Buffer;
  arrivedAt: number;
}

/** Moves bytes one way, from `source` to `destination`, applying one direction's faults. */
class Pump {
  private readonly queue: QueuedChunk[] = [];
  private queuedBytes = 0;
  private forwardedBytes = 0;
  private sourceEnded = false;
  private waitingForDrain = false;
  private stalling = false;
  private stallDone = false;
  /** Settles once the last write left Node (or failed): a reset must not discard bytes still in Node's buffer. */
  private lastWrite: Promise<void> = Promise.resolve();
  private wakeLoop: (() => void) | undefined;

  constructor(
    private readonly source: Socket,
    private readonly destination: Socket,
    private readonly faults: DirectionFaults,
    private readonly hooks: PumpHooks,
  ) {
    if (faults.splitInto !== undefined) destination.setNoDelay(true);
    source.on('data', (chunk: Buffer) => this.onData(chunk));
    source.on('end', () => {
      this.sourceEnded = true;
      this.wake();
    });
    hooks.signal.addEventListener('abort', () => this.wake(), { once: true });
    this.updateFlow();
  }

  async run(): Promise<void> {
    const { signal } = this.hooks;
    while (!signal.aborted) {
      if (reached(this.faults.cutAfterBytes, this.forwardedBytes)) {
        if (this.faults.cutWith === 'rst') {
          await this.lastWrite;
          await sleep(RESET_GRACE_MS, signal);
        }
        this.hooks.cut(this.faults.cutWith ?? 'fin');
        return;
      }
      if (!this.stallDone && reached(this.faults.stallAfterBytes, this.forwardedBytes)) {
        await this.stall();
        continue;
      }
      const batch = await this.nextBatch();
      if (batch === undefined) break;
      await this.forward(batch);
    }
    if (!signal.aborted && !this.destination.destroyed) this.destination.end();
  }

  private onData(chunk: Buffer): void {
    if (this.hooks.signal.aborted) return; // after a cut or teardown the rest is dropped
    this.queue.push({ bytes: chunk, arrivedAt: performance.now() });
    this.queuedBytes += chunk.length;
    this.updateFlow();
    this.wake();
  }

  /** The next bytes to write, or undefined once the source ended and the queue is empty (or on abort). */
  private async nextBatch(): Promise<Buffer | undefined> {
    const { signal } = this.hooks;
    await this.waitForInput();
    const first = this.queue[0];
    if (first === undefined || signal.aborted) return undefined;
    const holdMs = (this.faults.delayMs ?? 0) + (this.faults.coalesceMs ?? 0);
    if (holdMs > 0) await sleep(first.arrivedAt + holdMs - performance.now(), signal);
    if (signal.aborted) return undefined;

    const taken = this.faults.coalesceMs === undefined ? this.queue.splice(0, 1) : this.queue.splice(0);
    let bytes = taken.length === 1 ? first.bytes : Buffer.concat(taken.map((chunk) => chunk.bytes));
    const room = this.bytesBeforeNextMark();
    if (bytes.length > room) {
      // The chunk crosses a stall or cut mark: the part past it goes back to the head of the queue.
      this.queue.unshift({ bytes: bytes.subarray(room), arrivedAt: first.arrivedAt });
      bytes = bytes.subarray(0, room);
    }
    this.queuedBytes -= bytes.length;
    this.updateFlow();
    return bytes;
  }

  private async forward(bytes: Buffer): Promise<void> {
    const segmentBytes = this.faults.splitInto ?? bytes.length;
    for (let offset = 0; offset < bytes.length; offset += segmentBytes) {
      // With Nagle off each write is its own TCP segment; the gap also lets a reader in this
      // process (with a gap of ~1 ms, in another one too) read it before the next one lands.
      if (offset > 0) await this.splitGap();
      if (this.hooks.signal.aborted || this.destination.destroyed) return;
      const segment = bytes.subarray(offset, offset + segmentBytes);
      let accepted = true;
      this.lastWrite = new Promise((resolve) => {
        accepted = this.destination.write(segment, () => resolve());
      });
      this.forwardedBytes += segment.length;
      this.hooks.countForwarded(segment.length);
      if (!accepted) await this.waitForDrain();
    }
  }

  private async splitGap(): Promise<void> {
    const gapMs = this.faults.splitGapMs ?? 0;
    if (gapMs > 0) await sleep(gapMs, this.hooks.signal);
    else await nextTurn();
  }

  private async stall(): Promise<void> {
    this.stalling = true;
    this.updateFlow();
    await sleep(this.faults.stallMs ?? Infinity, this.hooks.signal);
    this.stalling = false;
    this.stallDone = true;
    this.updateFlow();
  }

  private async waitForDrain(): Promise<void> {
    this.waitingForDrain = true;
    this.updateFlow();
    await drainOrClose(this.destination, this.hooks.signal);
    this.waitingForDrain = false;
    this.updateFlow();
  }

  /** Pauses the source while this pump cannot take more; once aborted, reads on so the rest can be dropped. */
  private updateFlow(): void {
    const hold =
      !this.hooks.signal.aborted &&
      (this.waitingForDrain || this.stalling || this.queuedBytes >= QUEUE_HIGH_WATER_BYTES);
    if (hold) this.source.pause();
    else this.source.resume();
  }

  private bytesBeforeNextMark(): number {
    const marks = [this.faults.cutAfterBytes, this.stallDone ? undefined : this.faults.stallAfterBytes];
    let room = Infinity;
    for (const mark of marks) {
      if (mark !== undefined && mark > this.forwardedBytes) room = Math.min(room, mark - this.forwardedBytes);
    }
    return room;
  }

  private waitForInput(): Promise<void> {
    if (this.queue.length > 0 || this.sourceEnded || this.hooks.signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      this.wakeLoop = resolve;
    });
  }

  private wake(): void {
    const wakeLoop = this.wakeLoop;
    this.wakeLoop = undefined;
    wakeLoop?.();
  }
}

function reached(mark: number | undefined, forwardedBytes: number): boolean {
  return mark !== undefined && forwardedBytes >= mark;
}

/** Resolves after `ms`, or at once when `signal` aborts; leaves no timer behind either way. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted || ms <= 0) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = ms > MAX_TIMER_MS ? undefined : setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
  });
}

/** Settles on 'drain', and also on 'close', 'error' or abort so a dead socket cannot hang the pump. */
function drainOrClose(socket: Socket, signal: AbortSignal): Promise<void> {
  if (signal.aborted || socket.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const events = ['drain', 'close', 'error'] as const;
    for (const event of events) socket.on(event, done);
    signal.addEventListener('abort', done, { once: true });
    function done(): void {
      for (const event of events) socket.removeListener(event, done);
      signal.removeEventListener('abort', done);
      resolve();
    }
  });
}

/** Called on sockets fresh from accept() and connect(), which cannot have closed yet. */
function closeOf(socket: Socket): Promise<void> {
  return new Promise((resolve) => socket.once('close', () => resolve()));
}

function validatePlan(plan: FaultPlan): void {
  for (const direction of ['up', 'down'] as const) {
    const faults = plan[direction];
    if (faults === undefined) continue;
    const where = `fault plan ${direction}`;
    requireNumber(faults.splitInto, `${where}.splitInto`, { integer: true, min: 1 });
    requireNumber(faults.splitGapMs, `${where}.splitGapMs`, { integer: false, min: 0 });
    requireNumber(faults.coalesceMs, `${where}.coalesceMs`, { integer: false, min: 0 });
    requireNumber(faults.delayMs, `${where}.delayMs`, { integer: false, min: 0 });
    requireNumber(faults.stallAfterBytes, `${where}.stallAfterBytes`, { integer: true, min: 0 });
    requireNumber(faults.cutAfterBytes, `${where}.cutAfterBytes`, { integer: true, min: 0 });
    if (faults.stallMs !== undefined && !(faults.stallMs >= 0)) {
      throw new RangeError(`${where}.stallMs must be 0 or more (Infinity stalls forever), got ${faults.stallMs}`);
    }
    if (faults.cutWith !== undefined && faults.cutWith !== 'fin' && faults.cutWith !== 'rst') {
      throw new RangeError(`${where}.cutWith must be 'fin' or 'rst', got ${String(faults.cutWith)}`);
    }
  }
}

function requireNumber(value: number | undefined, name: string, rule: { integer: boolean; min: number }): void {
  if (value === undefined) return;
  const valid = (rule.integer ? Number.isSafeInteger(value) : Number.isFinite(value)) && value >= rule.min;
  if (!valid) throw new RangeError(`${name} must be ${rule.integer ? 'an integer' : 'a finite number'} >= ${rule.min}, got ${value}`);
}
