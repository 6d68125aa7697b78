/** In-process sender and receiver over real loopback sockets. */
import type { Server } from 'node:net';
import { afterEach, expect } from 'vitest';
import { connect, listen } from '../../src/transport/tcp.js';
import { ping } from '../../src/api/ping.js';
import { receiveOne, type ReceiveOneOptions } from '../../src/api/receive.js';
import type { ReceiveResult } from '../../src/receiver.js';
import { openSource, sendFile, type SendOptions, type SendResult } from '../../src/sender.js';

export interface RunningReceiver {
  port: number;
  server: Server;
  result: Promise<ReceiveResult>;
  /** Stops the receiver (a one-shot receiver keeps waiting after refusals and garbage). */
  stop(): Promise<void>;
}

const running = new Set<RunningReceiver>();

afterEach(async () => {
  await Promise.all([...running].map((receiver) => receiver.stop()));
});

export async function startReceiver(options: Partial<ReceiveOneOptions> & { target: string; signal?: AbortSignal }): Promise<RunningReceiver> {
  const server = await listen(0, '127.0.0.1');
  const port = (server.address() as { port: number }).port;
  const stopper = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, stopper.signal]) : stopper.signal;
  const result = receiveOne(server, { onConflict: 'refuse', idleTimeoutMs: 5_000, ...options, signal });
  result.catch(() => {}); // Tests await it when they care.
  const receiver: RunningReceiver = {
    port,
    server,
    result,
    stop: async () => {
      running.delete(receiver);
      stopper.abort();
      await result.catch(() => {});
    },
  };
  running.add(receiver);
  return receiver;
}

/**
 * Asserts a one-shot receiver is still waiting for its file: it answers a ping (a real
 * conversation, not a guess from silence), and its result has not settled.
 */
export async function expectStillWaiting(receiver: RunningReceiver): Promise<void> {
  let settled = false;
  void receiver.result.then(
    () => (settled = true),
    () => (settled = true),
  );
  const socket = await connect({ host: '127.0.0.1', port: receiver.port }, { timeoutMs: 5_000 });
  const pong = await ping(socket, 'still there?', { idleTimeoutMs: 5_000 });
  expect(pong.reply).toMatch(/still there\?$/);
  expect(settled, 'the one-shot receiver ended instead of waiting for its file').toBe(false);
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
