/**
 * `ftx ping`: asks a running receiver to echo a message stamped with its clock, the
 * tutorial's time-stamp server turned into a health check. A ping never uses up a
 * receiver's file: receivers answer it and keep waiting.
 */
import type { Duplex } from 'node:stream';
import { Channel } from '../protocol/channel.js';
import { readClassicGreeting } from '../protocol/classic.js';
import { ConnectionLostError, FtxError } from '../errors.js';
import { FrameType } from '../framing.js';
import { readGreeting, readPong, sendPing } from '../handshake.js';
import type { Protocol } from '../protocol/messages.js';

export interface PingResult {
  protocol: Protocol;
  /** `[<ctime>] <message>` from an ftx receiver; the greeting text from a classic one. */
  reply: string;
  /** The receiver's protocol version (classic receivers have none: 0). */
  version: number;
  software?: string;
  /** The receiver's clock, ISO 8601 (ftx receivers only). */
  time?: string;
  roundTripMs: number;
}

export async function ping(stream: Duplex, message: string, options: { idleTimeoutMs: number }): Promise<PingResult> {
  const channel = new Channel(stream, { idleTimeoutMs: options.idleTimeoutMs, peerRole: 'the receiver' });
  try {
    const first = await channel.peekByte();
    if (first === null) throw new ConnectionLostError('the receiver closed the connection without a greeting; is it an ftx receiver?');
    if (first !== FrameType.Greeting) {
      // A classic server is up, but has no ping; closing now costs it its one transfer.
      const greeting = await readClassicGreeting(channel);
      return { protocol: 'classic', reply: greeting.trim(), version: 0, roundTripMs: 0 };
    }
    const greeting = await readGreeting(channel);
    const sentAt = performance.now();
    await sendPing(channel, { message });
    const pong = await readPong(channel);
    const roundTripMs = performance.now() - sentAt;
    return {
      protocol: 'ftx',
      reply: pong.reply,
      version: pong.version,
      ...(greeting.software === undefined ? {} : { software: greeting.software }),
      time: pong.time,
      roundTripMs,
    };
  } catch (error) {
    throw error instanceof FtxError ? error : channel.describeStreamError(error);
  } finally {
    channel.destroy();
  }
}
