/**
 * The conversation, one step per function, on top of Channel and the frame payloads.
 *
 *   receiver                                sender
 *   Greeting  ------------------------------>
 *             <------------------------------  Header   (or Ping)
 *   Accept "ko" (or Refuse) ---------------->
 *             <------------------------------  N raw bytes, then Trailer (its digest)
 *   KeepAlive* while fsyncing -------------->
 *   Receipt (or Error) --------------------->
 *
 * See PROTOCOL.md for the bytes. Errors from the peer arrive as Error frames and are
 * turned into the matching local error class here, so both sides report the same story.
 */
import type { Socket } from 'node:net';
import type { Channel } from './protocol/channel.js';
import { isAsciiDigit } from './protocol/classic.js';
import {
  AuthError,
  ConnectionLostError,
  FtxError,
  IntegrityError,
  ProtocolError,
  RefusedError,
  RemoteIoError,
  TimeoutError,
  type RefusalReason,
} from './errors.js';
import { FrameType, frameTypeName, type Frame } from './framing.js';
import {
  decodeAccept,
  decodeError,
  decodeGreeting,
  decodeHeader,
  decodeOpen,
  decodePing,
  decodePong,
  decodeReceipt,
  decodeRefuse,
  decodeTrailer,
  boundedText,
  jsonFrame,
  PROTOCOL_NAME,
  PROTOCOL_VERSION,
  PROTOCOL_VERSIONS,
  type Greeting,
  type Header,
  type Open,
  type Ping,
  type Pong,
  type Receipt,
  type Trailer,
} from './protocol/messages.js';
import { SOFTWARE } from './util/version.js';
import { DIGEST_NAMES } from './digest/names.js';

/** How the first bytes of a sender's opening are classified. */
export type Opening =
  | { kind: 'header'; header: Header }
  /** A session of entries (protocol 2). */
  | { kind: 'open'; open: Open }
  | { kind: 'ping'; ping: Ping }
  /** The classic tutorial client: its first byte is an ASCII decimal digit. */
  | { kind: 'classic' }
  /** Connected and closed without a byte: a port scan or a health probe. */
  | { kind: 'silent' };


// ---- receiver side -------------------------------------------------------------

/** A receiver's greeting: who it is, and the digests it accepts. */
function greetingFrame(): Buffer {
  const greeting: Greeting = { protocol: PROTOCOL_NAME, version: PROTOCOL_VERSION, versions: [...PROTOCOL_VERSIONS], software: SOFTWARE, digests: [...DIGEST_NAMES] };
  return jsonFrame(FrameType.Greeting, greeting);
}

export function sendGreeting(channel: Channel): Promise<void> {
  return channel.write(greetingFrame());
}

/**
 * A receiver that takes only senders with a key greets in plain text with just enough to
 * say so (no software name: nothing to fingerprint before the key is proved); its full
 * Greeting follows inside TLS.
 */
export function sendAuthGreeting(channel: Channel): Promise<void> {
  return channel.write(authGreetingFrame());
}

function authGreetingFrame(): Buffer {
  const greeting: Greeting = { protocol: PROTOCOL_NAME, version: PROTOCOL_VERSION, versions: [...PROTOCOL_VERSIONS], tls: 'psk' };
  return jsonFrame(FrameType.Greeting, greeting);
}

export async function readOpening(channel: Channel): Promise<Opening> {
  let first: number | null;
  try {
    first = await channel.peekByte();
  } catch (error) {
    // Reset before a single byte (SO_LINGER 0: scanners, load-balancer health checks):
    // as silent as a FIN, and no reason to give up on the next sender.
    if (error instanceof ConnectionLostError) return { kind: 'silent' };
    throw error;
  }
  if (first === null) return { kind: 'silent' };
  if (isAsciiDigit(first)) return { kind: 'classic' };
  if (!SENDER_OPENINGS.has(first)) throw await notASender(channel);
  const frame = await channel.readFrame();
  if (!frame) throw new ConnectionLostError(`${channel.peerRole} closed the connection before its header was complete`);
  if (frame.type === FrameType.Header) return { kind: 'header', header: decodeHeader(frame) };
  if (frame.type === FrameType.Open) return { kind: 'open', open: decodeOpen(frame) };
  if (frame.type === FrameType.Ping) return { kind: 'ping', ping: decodePing(frame) };
  // The sender gave up (it timed out waiting for our greeting, say): report its reason.
  throw errorFromPeer(channel, frame);
}

/** Frame types a sender may open with: a session's Open, a header, a ping, or an error (it gave up). */
const SENDER_OPENINGS = new Set<number>([FrameType.Open, FrameType.Header, FrameType.Ping, FrameType.Error]);

/**
 * Something that is neither an ftx nor a classic sender (a browser, a port scanner
 * with a payload): say what it sent, printably, rather than decode its bytes as a
 * frame ("frame Greeting declares 1163141167 bytes" helps nobody).
 */
async function notASender(channel: Channel): Promise<ProtocolError> {
  const bytes = (await channel.readRaw()) ?? Buffer.alloc(0);
  const text = bytes.subarray(0, 40).toString('latin1');
  // eslint-disable-next-line no-control-regex
  const looksLikeText = !/[\u0000-\u0008\u000e-\u001f\u007f-\uffff]/.test(text);
  const shown = looksLikeText ? JSON.stringify(text) : `bytes ${bytes.subarray(0, 16).toString('hex')}`;
  const guess = /^(GET|POST|HEAD|PUT|OPTIONS|CONNECT) /.test(text) ? ' (an HTTP client?)' : '';
  return new ProtocolError(`${channel.peerRole} does not speak ftx: it sent ${shown}${guess}`);
}

export function sendAccept(channel: Channel): Promise<void> {
  return channel.write(jsonFrame(FrameType.Accept, { offset: 0 }));
}

export function sendRefuse(channel: Channel, reason: RefusalReason, message: string): Promise<void> {
  return channel.write(jsonFrame(FrameType.Refuse, { reason, message: boundedText(message) }));
}

/**
 * Reads the sender's trailer, which must follow the last data byte. Anything else in
 * that place means the sender sent more bytes than it announced.
 */
export async function readTrailer(channel: Channel, announcedBytes: number): Promise<Trailer> {
  let frame: Frame | null;
  try {
    frame = await channel.readFrame();
  } catch (error) {
    if (error instanceof ProtocolError) {
      throw new ProtocolError(
        `${channel.peerRole} sent more bytes than the ${announcedBytes} it announced (no trailer after the data)`,
        { cause: error },
      );
    }
    throw error;
  }
  if (!frame) throw new ConnectionLostError(`${channel.peerRole} closed the connection before sending its digest`);
  if (frame.type === FrameType.Error) throw errorFromPeer(channel, frame);
  return decodeTrailer(frame);
}

export function sendKeepAlive(channel: Channel): Promise<void> {
  return channel.write(jsonFrame(FrameType.KeepAlive, {}));
}

export function sendReceipt(channel: Channel, receipt: Receipt): Promise<void> {
  return channel.write(jsonFrame(FrameType.Receipt, receipt));
}

export function sendPong(channel: Channel, pong: Pong): Promise<void> {
  return channel.write(jsonFrame(FrameType.Pong, pong));
}

/**
 * An Error frame telling the peer why we give up. A refusal after the Accept (the name
 * was taken meanwhile) carries its reason, so the sender reports a refusal, not a fault.
 */
export function errorFrame(error: FtxError): Buffer {
  const body: Record<string, unknown> = { code: error.code, message: boundedText(error.message) };
  if (error instanceof RefusedError) body.reason = error.reason;
  return jsonFrame(FrameType.Error, body);
}

/**
 * Turns a connection away before its conversation starts (too many from one address):
 * a greeting and a Refuse, so an ftx sender reports the refusal with its reason, then
 * the connection closes. Costs nothing to keep: no reads, closed within a second.
 */
export function refuseConnection(socket: Socket, reason: RefusalReason, message: string, options: { keyed?: boolean } = {}): void {
  socket.on('error', () => {});
  socket.setTimeout(0);
  // A receiver with keys greets as it always does (tls, no software), so a sender without
  // a key never takes it for a plain one and says a name before it reads the refusal.
  const greeting = options.keyed ? authGreetingFrame() : greetingFrame();
  socket.end(Buffer.concat([greeting, jsonFrame(FrameType.Refuse, { reason, message: boundedText(message) })]));
  setTimeout(() => socket.destroy(), 1_000).unref();
}

/** Tells the peer why the conversation failed. Best effort: the peer may be gone. */
export async function sendError(channel: Channel, error: FtxError): Promise<void> {
  if (channel.stream.destroyed || channel.stream.writableEnded) return;
  try {
    await channel.write(errorFrame(error));
  } catch {
    // The peer is gone; it will see a lost connection instead.
  }
}

// ---- sender side ---------------------------------------------------------------

export function sendHeader(channel: Channel, header: Header): Promise<void> {
  return channel.write(jsonFrame(FrameType.Header, header));
}

export function sendTrailer(channel: Channel, trailer: Trailer): Promise<void> {
  return channel.write(jsonFrame(FrameType.Trailer, trailer));
}

export function sendPing(channel: Channel, ping: Ping): Promise<void> {
  return channel.write(jsonFrame(FrameType.Ping, ping));
}

export async function readGreeting(channel: Channel): Promise<Greeting> {
  try {
    return decodeGreeting(await readFrameSkippingKeepAlives(channel, 'a greeting'));
  } catch (error) {
    // Its first byte looked like a greeting ('G'), the rest did not: some other service.
    if (error instanceof ProtocolError) throw new ProtocolError(`${channel.peerRole} is not an ftx receiver: ${error.message}; check the host and port`, { cause: error });
    throw error;
  }
}

/**
 * A receiver that turns a connection away (busy, too many from this address, too many
 * failed key checks) sends its Refuse right after the greeting, then closes. Throws
 * that refusal if it is already here or arrives within `ms`; else returns.
 */
export async function throwIfTurnedAway(channel: Channel, ms: number): Promise<void> {
  // ms 0: only what is here already (no read is left pending).
  if (ms === 0 ? channel.bufferedBytes === 0 : (await channel.waitForBytes(ms)) !== 'data') return;
  if ((await channel.peekByte()) !== FrameType.Refuse) return;
  const frame = await channel.readFrame();
  if (!frame) return;
  const refusal = decodeRefuse(frame);
  throw new RefusedError(refusal.reason, `the receiver refused the connection: ${refusal.message}`, { fromPeer: true });
}

/** Resolves once the receiver accepted; rejects with RefusedError if it declined. */
export async function readDecision(channel: Channel): Promise<void> {
  const frame = await readFrameSkippingKeepAlives(channel, 'an answer to the header');
  if (frame.type === FrameType.Refuse) {
    const refusal = decodeRefuse(frame);
    throw new RefusedError(refusal.reason, `the receiver refused the file: ${refusal.message}`, { fromPeer: true });
  }
  decodeAccept(frame);
}

/** The receiver's receipt; KeepAlive frames while it fsyncs are skipped. */
export async function readReceipt(channel: Channel): Promise<Receipt> {
  return decodeReceipt(await readFrameSkippingKeepAlives(channel, 'a receipt'));
}

export async function readPong(channel: Channel): Promise<Pong> {
  const frame = await readFrameSkippingKeepAlives(channel, 'an answer to the ping');
  // A receiver that turns the connection away (too many from this address) says so at once.
  if (frame.type === FrameType.Refuse) {
    const refusal = decodeRefuse(frame);
    throw new RefusedError(refusal.reason, `the receiver refused the connection: ${refusal.message}`, { fromPeer: true });
  }
  return decodePong(frame);
}

async function readFrameSkippingKeepAlives(channel: Channel, expected: string): Promise<Frame> {
  for (;;) {
    const frame = await channel.readFrame();
    if (!frame) throw new ConnectionLostError(`${channel.peerRole} closed the connection while ftx waited for ${expected}`);
    if (frame.type === FrameType.KeepAlive) continue;
    if (frame.type === FrameType.Error) throw errorFromPeer(channel, frame);
    return frame;
  }
}

/**
 * Maps the peer's Error frame to the local error a user should see. The peer's own
 * I/O failure (its disk is full) is a remote I/O error here, not a local one.
 */
export function errorFromPeer(channel: Channel, frame: Frame): FtxError {
  const { code, message, reason } = decodeError(frame);
  const said = `${channel.peerRole} reports: ${message}`;
  const told = { fromPeer: true };
  switch (code) {
    case 'FTX_ERR_REFUSED':
      return new RefusedError(reason ?? 'busy', `${channel.peerRole} refused the file: ${message}`, told);
    case 'FTX_ERR_INTERNAL':
      // The peer hit a bug: for us that is the peer failing, not our own bug.
      return new RemoteIoError(`${channel.peerRole} failed unexpectedly (a bug on its side): ${message}`, told);
    case 'FTX_ERR_INTEGRITY':
      return new IntegrityError(said, told);
    case 'FTX_ERR_LOCAL_IO':
    case 'FTX_ERR_REMOTE_IO':
      return new RemoteIoError(said, told);
    case 'FTX_ERR_TIMEOUT':
      return new TimeoutError(said, told);
    case 'FTX_ERR_CONNECTION_LOST':
    case 'FTX_ERR_INTERRUPTED':
      return new ConnectionLostError(said, told);
    case 'FTX_ERR_AUTH':
      return new AuthError(said, told);
    default:
      return new ProtocolError(said, told);
  }
}
