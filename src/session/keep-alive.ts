/**
 * While the receiver is busy with its own disk (the fsync of a large file), the sender
 * hears nothing; KeepAlive frames keep its idle timer from taking the silence for a
 * dead receiver.
 */
import { sendKeepAlive } from '../handshake.js';
import type { Channel } from '../protocol/channel.js';

export async function withKeepAlives<T>(channel: Channel, idleTimeoutMs: number, work: () => Promise<T>): Promise<T> {
  const everyMs = Math.max(100, Math.min(5_000, idleTimeoutMs / 3 || 5_000));
  const timer = setInterval(() => sendKeepAlive(channel).catch(() => {}), everyMs);
  try {
    return await work();
  } finally {
    clearInterval(timer);
  }
}
