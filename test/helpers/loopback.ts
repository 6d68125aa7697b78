/** In-process sender and receiver over real loopback sockets, through the public API. */
import { afterEach, expect } from 'vitest';
import { ping, receive, send, type ReceiveHandle, type ReceiveOptions, type ReceivedFile, type SendOptions, type SendResult } from '../../src/index.js';

export interface RunningReceiver {
  port: number;
  /** The received file, or the error that ended the wait. */
  result: Promise<ReceivedFile>;
  handle: ReceiveHandle;
  /** Stops the receiver (a one-shot receiver keeps waiting after refusals and garbage). */
  stop(): Promise<void>;
}

const running = new Set<RunningReceiver>();

afterEach(async () => {
  await Promise.all([...running].map((receiver) => receiver.stop()));
});

/** receive() on a free loopback port, with a 5 s timeout unless told otherwise; stopped after the test. */
export async function startReceiver(options: ReceiveOptions & { target: string }): Promise<RunningReceiver> {
  const handle = await receive({ port: 0, host: '127.0.0.1', timeoutMs: 5_000, ...options });
  const receiver: RunningReceiver = {
    port: handle.port,
    result: handle.done,
    handle,
    stop: async () => {
      running.delete(receiver);
      await handle.close();
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
  const pong = await ping({ to: { host: '127.0.0.1', port: receiver.port }, message: 'still there?', timeoutMs: 5_000 });
  expect(pong.reply).toMatch(/still there\?$/);
  expect(settled, 'the one-shot receiver ended instead of waiting for its file').toBe(false);
}

/** send() to a loopback port, with a 5 s timeout unless told otherwise. */
export function sendTo(port: number, path: string, options: Partial<Omit<SendOptions, 'path' | 'to'>> = {}): Promise<SendResult> {
  return send({ path, to: { host: '127.0.0.1', port }, timeoutMs: 5_000, ...options });
}
