/**
 * A TCP proxy that records every byte it forwards, both ways, so a test can look at what
 * an eavesdropper on the wire would see; optionally it flips one byte on the way up, as
 * an attacker on the path would, to show that tampering is caught.
 *
 * Each accepted connection gets its own connection to the target. Bytes are forwarded as
 * they arrive, with backpressure (the source pauses until the destination drains); a FIN
 * is passed on as a FIN (both sockets allow half-open) and an error on one side resets
 * the other, so each peer sees what it would have seen without the proxy.
 */
import { connect, createServer, type Socket } from 'node:net';

export interface RecordingProxyOptions {
  /**
   * Flips (XOR 0xff) the byte at this offset of the first connection's upstream bytes
   * (client -> target), counted from its first byte.
   */
  flipUpAt?: number;
}

export interface RecordingProxy {
  readonly host: '127.0.0.1';
  readonly port: number;
  /** Every byte sent client -> target so far, all connections in the order they were accepted. */
  up(): Buffer;
  /** Every byte sent target -> client so far. */
  down(): Buffer;
  /** Whether the byte at flipUpAt went through (flipped). */
  readonly flipped: boolean;
  /** Stops listening and destroys every live connection. Idempotent. */
  close(): Promise<void>;
}

const HOST = '127.0.0.1';

export async function startRecordingProxy(targetPort: number, options: RecordingProxyOptions = {}): Promise<RecordingProxy> {
  const recorded: Record<'up' | 'down', Buffer[][]> = { up: [], down: [] };
  const live = new Set<Socket>();
  let accepted = 0;
  let flipped = false;
  let closing: Promise<void> | undefined;

  const server = createServer({ allowHalfOpen: true }, (client) => {
    const index = accepted++;
    const upstream = connect({ host: HOST, port: targetPort, allowHalfOpen: true });
    const upChunks: Buffer[] = [];
    const downChunks: Buffer[] = [];
    recorded.up[index] = upChunks;
    recorded.down[index] = downChunks;
    for (const socket of [client, upstream]) {
      live.add(socket);
      socket.once('close', () => live.delete(socket));
    }
    let upOffset = 0;
    const flipAt = index === 0 ? options.flipUpAt : undefined;
    pump(client, upstream, upChunks, (chunk) => {
      const start = upOffset;
      upOffset += chunk.length;
      if (flipAt === undefined || flipAt < start || flipAt >= upOffset) return chunk;
      const altered = Buffer.from(chunk);
      altered[flipAt - start] = (altered[flipAt - start] as number) ^ 0xff;
      flipped = true;
      return altered;
    });
    pump(upstream, client, downChunks, (chunk) => chunk);
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, HOST, () => {
      server.removeListener('error', reject);
      resolve();
    });
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('recording proxy is not listening on TCP');

  return {
    host: HOST,
    port: address.port,
    up: () => Buffer.concat(recorded.up.flat()),
    down: () => Buffer.concat(recorded.down.flat()),
    get flipped() {
      return flipped;
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of live) socket.destroy();
      });
      return closing;
    },
  };
}

/** Forwards `source` to `destination`, recording what it writes (after `alter`). */
function pump(source: Socket, destination: Socket, record: Buffer[], alter: (chunk: Buffer) => Buffer): void {
  source.on('data', (chunk: Buffer) => {
    const forwarded = alter(chunk);
    record.push(forwarded);
    if (!destination.write(forwarded)) {
      source.pause();
      destination.once('drain', () => source.resume());
    }
  });
  source.on('end', () => {
    if (!destination.destroyed) destination.end();
  });
  source.on('error', () => {
    if (!destination.destroyed) destination.resetAndDestroy();
  });
  // Closed without an error after our side ended: nothing more to pass on.
  source.on('close', (hadError) => {
    if (hadError && !destination.destroyed) destination.resetAndDestroy();
  });
}
