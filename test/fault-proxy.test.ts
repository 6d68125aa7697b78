import { connect, createServer, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { startFaultProxy, type FaultPlan, type FaultProxy } from './helpers/fault-proxy.js';

const HOST = '127.0.0.1';

/** What one side of a connection read, and how its connection ended. */
interface Received {
  bytes: Buffer;
  dataEvents: number;
  /** 'end' for a FIN, the error code (ECONNRESET) for an error, 'close' if it closed with neither. */
  ending: string;
}

/** Collects a socket's data until 'close'; the first of end/error decides `ending`. */
function collect(socket: Socket): Promise<Received> {
  const chunks: Buffer[] = [];
  let ending: string | undefined;
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.on('end', () => (ending ??= 'end'));
  socket.on('error', (error: NodeJS.ErrnoException) => (ending ??= error.code ?? error.message));
  return new Promise((resolve) => {
    socket.on('close', () => resolve({ bytes: Buffer.concat(chunks), dataEvents: chunks.length, ending: ending ?? 'close' }));
  });
}

/** Deterministic, non-repeating-looking bytes; 251 is prime so the pattern does not align with powers of two. */
function patternBytes(length: number, seed = 0): Buffer {
  const bytes = Buffer.alloc(length);
  for (let index = 0; index < length; index++) bytes[index] = (index * 7 + seed) % 251;
  return bytes;
}

/** A failure names the first differing offset instead of printing megabytes. */
function expectSameBytes(actual: Buffer, expected: Buffer): void {
  let firstDifference = 0;
  while (firstDifference < Math.min(actual.length, expected.length) && actual[firstDifference] === expected[firstDifference]) {
    firstDifference++;
  }
  expect({ length: actual.length, firstDifference }).toEqual({ length: expected.length, firstDifference: expected.length });
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  vi.restoreAllMocks();
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface TargetServer {
  port: number;
  /** What the first accepted connection read, once it closed. */
  firstConnection: Promise<Received>;
}

/**
 * A target on 127.0.0.1:0 that collects what each connection sends and hands the socket to
 * `onConnection`. Without allowHalfOpen it ends its side when the client's FIN arrives, so
 * its connections close on their own.
 */
async function startTarget(
  onConnection: (socket: Socket) => void = () => {},
  options: { allowHalfOpen?: boolean } = {},
): Promise<TargetServer> {
  const sockets = new Set<Socket>();
  let firstConnection: ((received: Promise<Received>) => void) | undefined;
  const server = createServer({ allowHalfOpen: options.allowHalfOpen ?? false }, (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    const received = collect(socket);
    firstConnection?.(received);
    firstConnection = undefined;
    onConnection(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
  cleanups.push(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  });
  return {
    port: (server.address() as { port: number }).port,
    firstConnection: new Promise((resolve) => (firstConnection = (received) => void received.then(resolve))),
  };
}

async function startProxy(target: TargetServer, plan: Parameters<typeof startFaultProxy>[1]): Promise<FaultProxy> {
  const proxy = await startFaultProxy({ host: HOST, port: target.port }, plan);
  cleanups.push(() => proxy.close());
  return proxy;
}

function connectTo(proxy: FaultProxy): Socket {
  const socket = connect({ host: proxy.host, port: proxy.port });
  cleanups.push(async () => void socket.destroy());
  return socket;
}

async function dial(proxy: FaultProxy): Promise<Socket> {
  const socket = connectTo(proxy);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  return socket;
}

/** Waits until `read()` returns the same value twice, 50 ms apart (at most ~5 s), and returns it. */
async function settledValue(read: () => number): Promise<number> {
  let previous = read();
  for (let attempt = 0; attempt < 100; attempt++) {
    await sleep(50);
    const current = read();
    if (current === previous) return current;
    previous = current;
  }
  return previous;
}

describe('fault proxy without faults', () => {
  it('forwards 4 MiB both ways byte for byte and counts them', async () => {
    const echo = await startTarget((socket) => socket.pipe(socket));
    const proxy = await startProxy(echo, {});
    const client = await dial(proxy);
    const payload = patternBytes(4 * 1024 * 1024);
    const reply = collect(client);
    client.end(payload);

    expectSameBytes((await reply).bytes, payload);
    expect((await reply).ending).toBe('end');
    expect(proxy.forwarded).toEqual({ up: payload.length, down: payload.length });
    expect(proxy.connections).toBe(1);
  });

  it('keeps the other direction open after a FIN (half-close)', async () => {
    // The target answers only after the client's FIN reached it: that needs the proxy to pass
    // the FIN upstream while still forwarding downstream.
    const target = await startTarget((socket) => {
      let count = 0;
      socket.on('data', (chunk: Buffer) => (count += chunk.length));
      socket.on('end', () => socket.end(`got ${count}`));
    }, { allowHalfOpen: true });
    const proxy = await startProxy(target, {});
    const client = await dial(proxy);
    const reply = collect(client);
    client.end(patternBytes(1000));

    expect((await reply).bytes.toString()).toBe('got 1000');
    expect((await reply).ending).toBe('end');
  });

  it('passes a reset from the target on to the client as a reset, not a FIN', async () => {
    const target = await startTarget((socket) => socket.resetAndDestroy());
    const proxy = await startProxy(target, {});

    expect((await collect(connectTo(proxy))).ending).toBe('ECONNRESET');
  });

  it('stops reading from the target while the client does not read (backpressure)', async () => {
    // 32 MiB is far more than the kernel buffers on both loopback hops can hold, so a proxy
    // that ignored write()'s return value would forward (and buffer) all of it.
    const payload = patternBytes(32 * 1024 * 1024, 3);
    let targetSocket: Socket | undefined;
    const target = await startTarget((socket) => {
      targetSocket = socket;
      socket.end(payload);
    });
    const proxy = await startProxy(target, {});
    const client = await dial(proxy);
    client.pause();

    const forwardedWhileStuck = await settledValue(() => proxy.forwarded.down);
    const unsentByTarget = targetSocket?.writableLength ?? 0;
    expect(forwardedWhileStuck).toBeLessThan(payload.length / 2);
    // The proxy stopped reading too (it did not just queue the bytes): the target still holds some.
    expect(unsentByTarget).toBeGreaterThan(0);

    const receiving = collect(client);
    client.resume(); // a 'data' listener alone does not restart a socket paused on purpose
    expectSameBytes((await receiving).bytes, payload);
    expect(proxy.forwarded.down).toBe(payload.length);
  });
});

describe('splitInto', () => {
  it('delivers a 20-byte message to the client in many reads, bytes unchanged', async () => {
    const message = Buffer.from('twenty bytes, split!');
    const target = await startTarget((socket) => socket.end(message));
    const proxy = await startProxy(target, { down: { splitInto: 1 } });
    const received = await collect(await dial(proxy));

    expect(received.bytes.toString()).toBe(message.toString());
    expect(received.dataEvents).toBeGreaterThan(1);
  });

  it('splits the upstream direction too, at the size asked', async () => {
    const target = await startTarget();
    const proxy = await startProxy(target, { up: { splitInto: 7 } });
    const client = await dial(proxy);
    const message = patternBytes(20);
    client.end(message);
    const received = await target.firstConnection;

    expectSameBytes(received.bytes, message);
    expect(received.dataEvents).toBeGreaterThan(1);
    expect(received.dataEvents).toBeLessThanOrEqual(3); // ceil(20 / 7) writes, never more reads
  });
});

describe('coalesceMs', () => {
  it('glues separate writes into fewer reads, in order', async () => {
    const target = await startTarget();
    const proxy = await startProxy(target, { up: { coalesceMs: 300 } });
    const client = await dial(proxy);
    const pieces = ['aaaa', 'bbbb', 'cccc', 'dddd', 'eeee'];
    for (const piece of pieces) {
      client.write(piece);
      await sleep(10); // far enough apart that without the proxy each would be its own read
    }
    client.end();
    const received = await target.firstConnection;

    expect(received.bytes.toString()).toBe(pieces.join(''));
    expect(received.dataEvents).toBeLessThan(pieces.length);
  });
});

describe('delayMs', () => {
  it('delivers every chunk late but in order', async () => {
    const target = await startTarget();
    const proxy = await startProxy(target, { up: { delayMs: 100 } });
    const client = await dial(proxy);
    const startedAt = performance.now();
    for (const piece of ['one,', 'two,', 'three']) {
      client.write(piece);
      await sleep(5);
    }
    client.end();
    const received = await target.firstConnection;

    expect(received.bytes.toString()).toBe('one,two,three');
    expect(performance.now() - startedAt).toBeGreaterThanOrEqual(90); // generous: timers may fire a ms early
  });
});

describe('cutAfterBytes', () => {
  const cutAt = 37;
  const payload = patternBytes(100, 9);

  for (const cutWith of ['fin', 'rst'] as const) {
    const expectedEnding = cutWith === 'fin' ? 'end' : 'ECONNRESET';

    it(`forwards exactly ${cutAt} client bytes, then cuts both sides with ${cutWith}`, async () => {
      const target = await startTarget();
      const proxy = await startProxy(target, { up: { cutAfterBytes: cutAt, cutWith } });
      const client = await dial(proxy);
      const clientSide = collect(client);
      client.write(payload); // one write, so the cut falls inside a chunk

      const targetSide = await target.firstConnection;
      expectSameBytes(targetSide.bytes, payload.subarray(0, cutAt));
      expect(targetSide.ending).toBe(expectedEnding);
      expect((await clientSide).ending).toBe(expectedEnding);
      expect(proxy.forwarded.up).toBe(cutAt);
    });

    it(`forwards exactly ${cutAt} target bytes, then cuts both sides with ${cutWith}`, async () => {
      const target = await startTarget((socket) => socket.write(payload));
      const proxy = await startProxy(target, { down: { cutAfterBytes: cutAt, cutWith } });
      const clientSide = await collect(await dial(proxy));

      expectSameBytes(clientSide.bytes, payload.subarray(0, cutAt));
      expect(clientSide.ending).toBe(expectedEnding);
      expect((await target.firstConnection).ending).toBe(expectedEnding);
    });
  }

  it('cuts at the exact byte when the bytes arrive in many small segments', async () => {
    const target = await startTarget((socket) => socket.write(payload));
    const proxy = await startProxy(target, { down: { splitInto: 3, cutAfterBytes: cutAt, cutWith: 'rst' } });
    const clientSide = await collect(await dial(proxy));

    expectSameBytes(clientSide.bytes, payload.subarray(0, cutAt));
    expect(clientSide.ending).toBe('ECONNRESET');
  });

  it('with 0 resets the client before any byte moves', async () => {
    const target = await startTarget((socket) => socket.write(payload));
    const proxy = await startProxy(target, { down: { cutAfterBytes: 0, cutWith: 'rst' } });
    // The reset can beat the client's own 'connect' event, so no dial() here.
    const clientSide = await collect(connectTo(proxy));

    expect(clientSide).toEqual({ bytes: Buffer.alloc(0), dataEvents: 0, ending: 'ECONNRESET' });
  });
});

describe('stall', () => {
  it('holds the bytes past the mark for stallMs, then delivers everything', async () => {
    const payload = patternBytes(50, 1);
    const target = await startTarget((socket) => socket.end(payload));
    const proxy = await startProxy(target, { down: { stallAfterBytes: 10, stallMs: 200 } });
    const client = await dial(proxy);
    const startedAt = performance.now();
    const totals: number[] = [];
    let total = 0;
    client.on('data', (chunk: Buffer) => totals.push((total += chunk.length)));
    const received = await collect(client);

    expectSameBytes(received.bytes, payload);
    expect(totals).toContain(10); // the first 10 bytes arrived on their own, before the stall
    expect(performance.now() - startedAt).toBeGreaterThanOrEqual(150);
  });

  it('stalls forever without stallMs, and close() tears it down without leaving a timer', async () => {
    const target = await startTarget();
    const setTimeoutSpy = vi.spyOn(globalThis, 'setTimeout');
    const clearTimeoutSpy = vi.spyOn(globalThis, 'clearTimeout');
    const proxy = await startFaultProxy(
      { host: HOST, port: target.port },
      { up: { stallAfterBytes: 5 }, down: { stallAfterBytes: 0, stallMs: 60_000 } },
    );
    cleanups.push(() => proxy.close());
    const client = await dial(proxy);
    const clientSide = collect(client);
    client.write(patternBytes(20));

    const forwardedDuringStall = await settledValue(() => proxy.forwarded.up);
    expect(forwardedDuringStall).toBe(5);
    const stallTimerIndex = setTimeoutSpy.mock.calls.findIndex(([, delay]) => delay === 60_000);
    expect(stallTimerIndex).toBeGreaterThanOrEqual(0);
    const stallTimer = setTimeoutSpy.mock.results[stallTimerIndex]!.value as unknown;

    await proxy.close();
    await proxy.close(); // idempotent
    expect(['end', 'ECONNRESET', 'close']).toContain((await clientSide).ending);
    expectSameBytes((await target.firstConnection).bytes, patternBytes(5));
    expect(clearTimeoutSpy.mock.calls.map(([timer]) => timer)).toContain(stallTimer);
  });
});

describe('lifecycle', () => {
  it('asks a plan function once per connection, in accept order', async () => {
    const target = await startTarget((socket) => socket.end('hello world'));
    const plan = (index: number): FaultPlan => (index === 0 ? { down: { cutAfterBytes: 5 } } : {});
    const proxy = await startProxy(target, plan);

    const first = await collect(await dial(proxy));
    const second = await collect(await dial(proxy));
    expect([first.bytes.toString(), second.bytes.toString()]).toEqual(['hello', 'hello world']);
    expect(proxy.connections).toBe(2);
  });

  it('refuses connections after close()', async () => {
    const proxy = await startFaultProxy({ host: HOST, port: (await startTarget()).port }, {});
    await proxy.close();
    const socket = connect({ host: proxy.host, port: proxy.port });
    const error = await new Promise<NodeJS.ErrnoException>((resolve) => socket.once('error', resolve));
    expect(error.code).toBe('ECONNREFUSED');
  });

  it('rejects an invalid plan up front, and a plan function\'s invalid plan at close()', async () => {
    const target = await startTarget();
    await expect(startFaultProxy({ host: HOST, port: target.port }, { up: { splitInto: 0 } })).rejects.toThrow(RangeError);

    const proxy = await startFaultProxy({ host: HOST, port: target.port }, () => ({ down: { cutAfterBytes: -1 } }));
    cleanups.push(() => proxy.close().catch(() => {}));
    const clientSide = await collect(connectTo(proxy));
    expect(clientSide.ending).toBe('ECONNRESET');
    await expect(proxy.close()).rejects.toThrow(/cutAfterBytes/);
  });
});
