/**
 * ping(): asks a receiver to echo a message stamped with its clock, the tutorial's
 * time-stamp server turned into a health check. A ping never uses up a receiver's file:
 * receivers answer it and keep waiting.
 */
import { DEFAULT_TIMEOUT_MS } from '../defaults.js';
import { abortReason, AuthError, ConnectionLostError } from '../errors.js';
import { FrameType } from '../framing.js';
import { errorFrame, readGreeting, readPong, sendPing } from '../handshake.js';
import { Channel } from '../protocol/channel.js';
import { readClassicGreeting } from '../protocol/classic.js';
import type { Protocol } from '../protocol/messages.js';
import { parseSenderKey } from '../transport/keys.js';
import { connect, formatHostPort } from '../transport/tcp.js';
import { connectPsk } from '../transport/tls.js';
import { whenAborted } from '../util/timers.js';
import { resolveDestination, validateTimeout, type Destination } from './options.js';

export interface PingOptions {
  /** The receiver: "host", "host:port", "[ipv6]:port", or { host, port }. The port defaults to 9999. */
  to: Destination;
  /** Text for the receiver to echo (default "ping"). */
  message?: string | undefined;
  /** Give up when connecting or waiting for the answer takes this long, in ms (default 30000; 0: never). */
  timeoutMs?: number | undefined;
  /** Aborting stops the ping; ping() rejects with the abort reason. */
  signal?: AbortSignal | undefined;
  /**
   * A sender's key (its key file's text, as send() takes it): a receiver with keys answers
   * a ping only inside TLS, to a key it lists. Without one, such a receiver is reported
   * with AuthError (it is up, and says nothing more).
   */
  key?: string | undefined;
}

export interface PingResult {
  /** The receiver's address, "host:port". */
  peer: string;
  protocol: Protocol;
  /** `[<ctime>] <message>` from an ftx receiver; the greeting from a classic one. */
  reply: string;
  /** The receiver's protocol version (classic receivers have none: 0). */
  version: number;
  /** The receiver's software, as its greeting names it ("ftx/0.1.0"), when it does. */
  software?: string;
  /** The receiver's clock, ISO 8601 (ftx receivers only). */
  time?: string;
  /** From sending the ping to reading the answer, ms (0 for a classic receiver, which has no ping). */
  roundTripMs: number;
}

/**
 * Pings a receiver. Resolves with its answer; rejects with ConnectError when nothing
 * listens, ProtocolError when something else does (an SSH server, say), RefusedError
 * when it turns the connection away (too many from this address).
 *
 * A classic tutorial receiver has no ping: it is reported as up (protocol 'classic'),
 * and the check may have used up its one transfer.
 */
export async function ping(options: PingOptions): Promise<PingResult> {
  const destination = resolveDestination(options.to);
  const timeoutMs = validateTimeout('timeoutMs', options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  const key = options.key !== undefined ? parseSenderKey(options.key, 'the key') : undefined;
  const peer = formatHostPort(destination);
  const socket = await connect(destination, { timeoutMs, signal: options.signal });
  const channel = new Channel(socket, { idleTimeoutMs: timeoutMs, peerRole: 'the receiver' });
  const stopListening = whenAborted(options.signal, () => channel.destroy(abortReason(options.signal)));
  try {
    const first = await channel.peekByte();
    if (first === null) throw new ConnectionLostError('the receiver closed the connection without a greeting; is it an ftx receiver?');
    if (first !== FrameType.Greeting) {
      if (key !== undefined) throw new AuthError(`${peer} is a classic tutorial receiver, which cannot check a key; nothing was sent`);
      // A classic server is up, but has no ping; closing now costs it its one transfer.
      const greeting = await readClassicGreeting(channel);
      return { peer, protocol: 'classic', reply: greeting, version: 0, roundTripMs: 0 };
    }
    let greeting = await readGreeting(channel);
    let talk = channel;
    if (greeting.tls !== undefined || key !== undefined) {
      // A receiver with keys answers a ping only inside TLS, to a sender it knows.
      if (greeting.tls === undefined) throw new AuthError(`${peer} takes senders without a key; this ping has one, and does not go in plain text`);
      if (key === undefined) {
        await channel.write(errorFrame(new AuthError('the pinger has no key'))).catch(() => {});
        throw new AuthError(`${peer} is an ftx receiver that takes only senders with a key; ping it with a key it lists to hear more`, { remedy: 'use-key' });
      }
      const buffered = channel.detach();
      if (buffered.length > 0) socket.unshift(buffered);
      talk = new Channel(await connectPsk(socket, key, peer, timeoutMs), { idleTimeoutMs: timeoutMs, peerRole: 'the receiver' });
      greeting = await readGreeting(talk);
    }
    const sentAt = performance.now();
    await sendPing(talk, { message: options.message ?? 'ping' });
    const pong = await readPong(talk);
    const roundTripMs = performance.now() - sentAt;
    return {
      peer,
      protocol: 'ftx',
      reply: pong.reply,
      version: pong.version,
      ...(greeting.software === undefined ? {} : { software: greeting.software }),
      time: pong.time,
      roundTripMs,
    };
  } catch (error) {
    throw channel.explain(error);
  } finally {
    stopListening();
    channel.destroy();
  }
}
