/**
 * The classic tutorial protocol, which ftx speaks both ways for old scripts:
 *
 *   server (receiver)                 client (sender)
 *   "welcome to conair" (17 bytes) -->
 *                                 <-- size as ASCII decimal digits, no terminator
 *   "ko" ------------------------->
 *                                 <-- exactly size bytes, then close
 *
 * There is no name, no digest and no receipt. Two facts shape the code here:
 * - The size has no terminator. A classic client sends the digits in one sendall and
 *   then waits for "ko", so the number is complete when no byte has arrived for
 *   CLASSIC_SIZE_QUIET_MS after the last digit (or a non-digit arrives).
 * - The client closes right after its last byte; that close is success.
 */
import type { Channel } from './channel.js';
import { ConnectionLostError, ProtocolError } from '../errors.js';

export const CLASSIC_GREETING = 'welcome to conair';

const ASCII_ZERO = 0x30;
const ASCII_NINE = 0x39;

/** A classic client opens with its size in ASCII digits; no ftx frame type is a digit. */
export function isAsciiDigit(byte: number): boolean {
  return byte >= ASCII_ZERO && byte <= ASCII_NINE;
}
export const CLASSIC_ACK = 'ko';

/**
 * How long the size must be quiet to count as complete. A client's single sendall
 * arrives at once; the window covers a size split over two segments (seen on slow
 * links) while keeping the delay per classic transfer small.
 */
export const CLASSIC_SIZE_QUIET_MS = 200;

/** 2^53 - 1 has 16 digits: more cannot be a size ftx can hold exactly. */
export const MAX_SIZE_DIGITS = 16;

/** The classic server's ack is 2 bytes; a greeting that arrives late can precede it. */
const MAX_ACK_BYTES = 1024;

/** Receiver side: reads the ASCII size that opens a classic client's conversation. */
export async function readClassicSize(channel: Channel, quietMs = CLASSIC_SIZE_QUIET_MS): Promise<number> {
  let digits = '';
  for (;;) {
    const chunk = await channel.readRaw();
    if (!chunk) throw new ConnectionLostError(`${channel.peerRole} closed the connection before its size was complete`);
    let end = 0;
    while (end < chunk.length && isAsciiDigit(chunk[end] as number)) end++;
    digits += chunk.toString('latin1', 0, end);
    if (digits.length > MAX_SIZE_DIGITS) {
      throw new ProtocolError(`${channel.peerRole} sent a size of more than ${MAX_SIZE_DIGITS} digits`);
    }
    if (end < chunk.length) {
      // A non-digit ends the size: a client that did not wait for "ko" glued its data on.
      channel.unread(chunk.subarray(end));
      break;
    }
    const next = await channel.waitForBytes(quietMs);
    if (next === 'quiet') break;
    if (next === 'eof') throw new ConnectionLostError(`${channel.peerRole} closed the connection right after its size`);
  }
  const size = Number(digits);
  if (digits.length === 0 || !Number.isSafeInteger(size)) {
    throw new ProtocolError(`${channel.peerRole} sent ${JSON.stringify(digits)}, which is not a size ftx can hold exactly (at most 2^53-1)`);
  }
  return size;
}

/**
 * Sender side: a classic server greets with exactly CLASSIC_GREETING (possibly split
 * across segments). Anything else (an SSH banner, an SMTP greeting) is some other
 * service on that port: "not an ftx receiver", never "up", so a health check on a wrong
 * port fails.
 */
export async function readClassicGreeting(channel: Channel): Promise<string> {
  let received = '';
  while (received.length < CLASSIC_GREETING.length) {
    const chunk = await channel.readRaw();
    if (!chunk) {
      if (received.length === 0) throw new ConnectionLostError(`${channel.peerRole} closed the connection before greeting`);
      throw notAReceiver(channel, received);
    }
    received += chunk.toString('latin1');
    if (!CLASSIC_GREETING.startsWith(received.slice(0, CLASSIC_GREETING.length))) throw notAReceiver(channel, received);
  }
  // The tutorial's server sends the 17 bytes and then waits: only trailing white space may follow.
  if (received.slice(CLASSIC_GREETING.length).trim() !== '') throw notAReceiver(channel, received);
  return CLASSIC_GREETING;
}

function notAReceiver(channel: Channel, greeting: string): ProtocolError {
  const shown = JSON.stringify(greeting.slice(0, 60).trim());
  return new ProtocolError(`${channel.peerRole} is not an ftx receiver (it greeted ${shown}); check the host and port`);
}

/** Sender side: sends the size and waits for "ko". */
export async function classicAnnounce(channel: Channel, size: number): Promise<void> {
  await channel.write(Buffer.from(String(size), 'latin1'));
  let answer = '';
  while (!answer.endsWith(CLASSIC_ACK)) {
    const chunk = await channel.readRaw();
    if (!chunk) {
      const said = answer.trim() ? ` (it said ${JSON.stringify(answer.trim().slice(0, 200))})` : '';
      throw new ConnectionLostError(`${channel.peerRole} closed the connection instead of acknowledging the size${said}`);
    }
    answer += chunk.toString('latin1');
    if (answer.length > MAX_ACK_BYTES) throw new ProtocolError(`${channel.peerRole} did not acknowledge the size with "${CLASSIC_ACK}"`);
  }
}

/** Sender side: after the data, the classic server closes once it has read it all. */
export async function awaitClassicClose(channel: Channel): Promise<void> {
  while ((await channel.readRaw()) !== null);
}
