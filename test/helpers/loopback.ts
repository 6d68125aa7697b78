/** In-process sender and receiver over real loopback sockets. */
import type { Server } from 'node:net';
import { connect, listen } from '../../src/net.js';
import { receiveOne } from '../../src/receive-one.js';
import type { ReceiveOptions, ReceiveResult } from '../../src/receiver.js';
import { openSource, sendFile, type SendOptions, type SendResult } from '../../src/sender.js';

export interface RunningReceiver {
  port: number;
  server: Server;
  result: Promise<ReceiveResult>;
}

export async function startReceiver(options: Partial<ReceiveOptions> & { target: string; signal?: AbortSignal }): Promise<RunningReceiver> {
  const server = await listen(0, '127.0.0.1');
  const port = (server.address() as { port: number }).port;
  const result = receiveOne(server, { onConflict: 'refuse', idleTimeoutMs: 5_000, ...options });
  result.catch(() => {}); // Tests await it when they care.
  return { port, server, result };
}

export async function sendTo(
  port: number,
  path: string,
  options: Partial<SendOptions> & { name?: string } = {},
): Promise<SendResult> {
  const source = await openSource(path, options.name);
  try {
    const socket = await connect({ host: '127.0.0.1', port }, { timeoutMs: 5_000 });
    return await sendFile(socket, source, { idleTimeoutMs: 5_000, ...options });
  } finally {
    await source.handle.close();
  }
}
