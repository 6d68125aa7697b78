/**
 * The receiving end of one connection (receiveConnection), from greeting to receipt, in
 * either protocol. Who accepts connections and what ends the wait is the API's business
 * (api/receive.ts for one file, api/serve.ts for a backup box).
 *
 * One skeleton serves both protocols (receiveTransfer): decide the target, stage a
 * file, accept, take exactly the announced bytes, verify, commit, confirm. Where ftx
 * and the classic tutorial protocol differ (how to say no, how to say go ahead, whether
 * there is a digest to check and a receipt to send) a Dialect says how.
 *
 * A connection is untrusted until its header is in, and bounded all along:
 * - before the header: a fixed deadline (dribbling does not extend it) and a frame
 *   limit that fits a header, so a connection costs at most a few KiB for a few seconds;
 * - after the Accept: the idle timeout, and a floor under the data rate, so a transfer
 *   that barely moves cannot hold a slot or a space reservation for long;
 * - every failure after the Accept is told to the sender in an Error frame, refusals
 *   included (the name was taken meanwhile), so it never sees a bare close.
 */
import { stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { DEFAULT_HANDSHAKE_TIMEOUT_MS, DEFAULT_MIN_BYTES_PER_SECOND } from './defaults.js';
import { DEFAULT_DIGEST, type DigestName } from './digest/registry.js';
import { abortReason, AuthError, ConnectionLostError, IntegrityError, InternalError, RefusedError, RemoteIoError, TimeoutError, type RefusalReason, type Remedy } from './errors.js';
import { StagedFile, type ConflictPolicy } from './fs/staged-file.js';
import {
  errorFrame,
  errorFromPeer,
  readOpening,
  readTrailer,
  sendAccept,
  sendError,
  sendAuthGreeting,
  sendGreeting,
  sendKeepAlive,
  sendPong,
  sendReceipt,
  sendRefuse,
} from './handshake.js';
import { FrameType } from './framing.js';
import { Channel, type ByteSource } from './protocol/channel.js';
import { CLASSIC_ACK, readClassicSize } from './protocol/classic.js';
import { ctime, PROTOCOL_VERSION, type Header, type Open, type Ping, type Protocol, type Receipt } from './protocol/messages.js';
import { receiveSession, type SessionCounts, type SessionOptions, type SessionTarget } from './session/receive-session.js';
import { receiveData } from './session/incoming.js';
import { withKeepAlives } from './session/keep-alive.js';
import { alwaysAccept, type ConnectionPolicy, type TransferRequest } from './session/policy.js';
import { commitTarget, decideTarget, quoteName, type IncomingFile } from './session/target.js';
import { peerOf } from './transport/tcp.js';
import type { KeyRing } from './transport/keys.js';
import { acceptPsk, type Authenticated } from './transport/tls.js';
import { silentLog, type Log } from './util/log.js';
import { whenAborted } from './util/timers.js';

/** After an error, how long to keep reading (and dropping) the peer's bytes so it can read ours. */
const LINGER_MS = 2_000;

/**
 * The largest frame a sender ever sends: a header (a 255-byte name is at most ~1.5 KiB
 * of JSON even when every character is escaped), a trailer, or an Error (at most 1024
 * characters, ~6 KiB escaped). Nothing a sender says needs the protocol's 64 KiB.
 */
export const MAX_SENDER_FRAME_PAYLOAD = 8 * 1024;

export interface ConnectionOptions {
  /** A file path, or an existing folder where the file is stored under the sender's name. */
  target: string;
  /** What to do when the target name is taken: refuse the file, pick "name-N", or replace. */
  onConflict: ConflictPolicy;
  /** Give up on a connection after this long without traffic; 0 never. */
  idleTimeoutMs: number;
  /** From connect to a complete header; 0 disables (default DEFAULT_HANDSHAKE_TIMEOUT_MS). */
  handshakeTimeoutMs?: number | undefined;
  /** Floor under the data rate after the Accept, bytes/s; 0 disables (default DEFAULT_MIN_BYTES_PER_SECOND). */
  minBytesPerSecond?: number | undefined;
  /** Store names starting with a dot (.bashrc) at the top of a target folder; refused by default. */
  allowDotFiles?: boolean | undefined;
  /** Refuse files larger than this many bytes. */
  maxSize?: number | undefined;
  /** Each of a transfer's two file buffers, bytes (see DEFAULT_FILE_BUFFER_BYTES). */
  fileBufferBytes?: number | undefined;
  log?: Log | undefined;
  /** Called once the connection is past its handshake: a header, a ping or a classic size is in. */
  onOpened?: (() => void) | undefined;
  /** Called once a file is accepted, before its bytes arrive. */
  onStart?: ((transfer: { name: string; path: string; size: number; peer: string; protocol: Protocol }) => void) | undefined;
  /** Called as bytes arrive, with the count so far. */
  onProgress?: ((bytesReceived: number) => void) | undefined;
  /**
   * Aborting cuts the connection: the peer is told why (the abort reason, when it is an
   * FtxError), and any partial file is removed before the handler settles.
   */
  signal?: AbortSignal | undefined;
  /** Where the connection's bytes come from, when not the stream's own reads (transport/direct-reads.ts). */
  source?: ByteSource | undefined;
  /** Write the one incoming file or stream here instead of to `target` (`ftx recv -`): sessions only. */
  output?: { stream: NodeJS.WritableStream; label: string } | undefined;
  /** Whether a folder target's file system treats names differing only by case as one (fs/case-folding.ts). */
  foldsCase?: boolean | undefined;
  /** A session (protocol 2) was accepted: how many entries and bytes, when the sender knows. */
  onSession?: SessionOptions['onStart'];
  /** A session's entry is done: stored, refused, or failed. */
  onEntry?: SessionOptions['onEntry'];
  /**
   * Take only senders that prove one of these keys (TLS 1.3 with a pre-shared key,
   * started after a plain greeting). `targetFor` gives the target for an identity (serve
   * mode: its own folder); without it, `target` serves every identity.
   */
  auth?: { keys: KeyRing; targetFor?: ((identity: string) => Promise<{ target: string; streamLimit?: SessionOptions['streamLimit'] }>) | undefined } | undefined;
  /** What a stream of unknown size may bring (a quota's room), besides maxSize. */
  streamLimit?: SessionOptions['streamLimit'];
  /** Called once a sender has proved its key: who it is. */
  onIdentity?: ((identity: string) => void) | undefined;
  /** The sender's identity once proved (set for the conversation inside TLS): partials are kept per identity. */
  identity?: string | undefined;
  /** Kept partials untouched this long are not resumed (default DEFAULT_PARTIAL_MAX_AGE_MS). */
  partialMaxAgeMs?: number | undefined;
  /** A session's file was offered its kept partial: resumed, or started over. */
  onResume?: SessionOptions['onResume'];
  /** A session's file was cut short and its bytes kept to resume. */
  onPartialKept?: SessionOptions['onPartialKept'];
}

export interface ReceivedFile {
  /** The classic protocol has no digest to check against: its transfers are unverified. */
  protocol: Protocol;
  /** Where the file was stored. */
  path: string;
  bytes: number;
  hash: DigestName;
  digest: string;
  seconds: number;
  /** The sender's address, "host:port". */
  peer: string;
  /**
   * A session (protocol 2): what it carried. `path` is then the folder it landed in (or
   * the one file, when it carried one), `digest` the one file's (else empty).
   */
  session?: SessionCounts | undefined;
  /** The sender's identity, when it proved a key (TLS); undefined for an unauthenticated sender. */
  identity?: string | undefined;
}

export type ConnectionOutcome =
  | { kind: 'file'; result: ReceivedFile }
  | { kind: 'session'; result: ReceivedFile & { session: SessionCounts } }
  | { kind: 'ping'; message: string }
  | { kind: 'silent' };

/**
 * How a protocol says the things a transfer needs said. ftx: frames, a digest, a
 * receipt. Classic: a text line for no, "ko" for yes, and nothing after the data.
 */
interface Dialect {
  protocol: Protocol;
  /** The digest computed over the data (the classic protocol has none to compare: ours only). */
  hash: DigestName;
  refuse(reason: RefusalReason, message: string): Promise<void>;
  accept(): Promise<void>;
  /** After the data: checks it against what the sender says it sent. */
  verify(digest: string): Promise<void>;
  /** Runs the commit (ftx keeps the sender's idle timer from firing during a long fsync). */
  committing<T>(work: () => Promise<T>): Promise<T>;
  /** After the commit: tells the sender (ftx: the receipt). */
  confirm(receipt: Receipt): Promise<void>;
  /** Once the connection is closed: what was left unread. */
  closed(extraBytes: number): void;
}

/** What one connection's conversation has reached, for what to tell the peer on failure. */
interface Progress {
  speaksClassic: boolean;
  /** A Refuse (or a classic error line) went out: nothing more to say. */
  refused: boolean;
}

/**
 * Runs one connection from greeting to receipt. Resolves with what the peer wanted;
 * rejects with an FtxError after telling the peer why and removing any partial file.
 */
export async function receiveConnection(stream: Duplex, options: ConnectionOptions, policy: ConnectionPolicy = alwaysAccept): Promise<ConnectionOutcome> {
  const peer = peerOf(stream);
  const channel = new Channel(stream, { idleTimeoutMs: options.idleTimeoutMs, peerRole: 'the sender', source: options.source });
  channel.maxFramePayload = MAX_SENDER_FRAME_PAYLOAD;
  const log = options.log ?? silentLog;
  const progress: Progress = { speaksClassic: false, refused: false };
  channel.farewell = (error) => (progress.speaksClassic ? classicErrorLine(error.message) : errorFrame(error));
  // The abort reason says why we hang up (shutting down, dropped for a newer connection).
  const stopListening = whenAborted(options.signal, () => channel.hangUp(abortReason(options.signal)));

  const handshakeMs = options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
  const deadline =
    handshakeMs > 0 ? setTimeout(() => channel.hangUp(new TimeoutError(`the sender sent no complete header within ${handshakeMs / 1000} s of connecting`)), handshakeMs) : undefined;
  const opened = () => {
    clearTimeout(deadline);
    options.onOpened?.();
  };
  try {
    if (options.auth) {
      const handed = await receiveOverTls(stream, channel, options, options.auth, handshakeMs, peer);
      if (handed.kind !== 'secured') return handed;
      clearTimeout(deadline);
      const { socket, identity } = handed;
      options.onIdentity?.(identity);
      let target = options.target;
      let streamLimit = options.streamLimit;
      try {
        if (options.auth.targetFor) ({ target, streamLimit } = await options.auth.targetFor(identity));
      } catch (error) {
        // Told inside TLS, and without the receiver's paths (the log has them).
        const inner = new Channel(socket, { idleTimeoutMs: options.idleTimeoutMs, peerRole: 'the sender' });
        await sendGreeting(inner).catch(() => {});
        await sendError(inner, new RemoteIoError(`the receiver cannot store files for ${JSON.stringify(identity)} now (its folder there is unusable); its operator has been told`));
        await lingerThenClose(inner);
        throw error;
      }
      // The conversation itself, inside TLS: the stream's own reads (direct reads are for plain TCP).
      const inner = await receiveConnection(socket, { ...options, target, streamLimit, identity, auth: undefined, source: undefined }, policy);
      if (inner.kind === 'file' || inner.kind === 'session') inner.result.identity = identity;
      return inner;
    }
    try {
      await sendGreeting(channel);
    } catch (error) {
      // Gone before our first byte reached it: a probe that resets at once.
      if (error instanceof ConnectionLostError) {
        channel.destroy();
        return { kind: 'silent' };
      }
      throw error;
    }
    const opening = await readOpening(channel);
    switch (opening.kind) {
      case 'silent':
        channel.destroy();
        return { kind: 'silent' };
      case 'ping':
        opened();
        await answerPing(channel, opening.ping);
        await lingerThenClose(channel);
        return { kind: 'ping', message: opening.ping.message };
      case 'classic': {
        progress.speaksClassic = true;
        const size = await readClassicSize(channel);
        opened();
        if (options.output) await refuseUnsupported(channel, progress, 'this receiver writes to its standard output, which a classic client cannot send to; use ftx send');
        const incoming = { name: classicFileName(new Date()), size };
        const result = await receiveTransfer(channel, incoming, classicDialect(channel, progress, peer, log), options, policy, peer, log);
        return { kind: 'file', result };
      }
      case 'open': {
        opened();
        const result = await receiveSessionOf(channel, opening.open, options, policy, peer, progress);
        return { kind: 'session', result };
      }
      case 'header': {
        opened();
        if (options.output) await refuseUnsupported(channel, progress, 'this receiver writes to its standard output, which takes a session (ftx 0.2 or newer); upgrade the sender');
        const result = await receiveTransfer(channel, opening.header, ftxDialect(channel, opening.header, progress, peer, options, log), options, policy, peer, log);
        return { kind: 'file', result };
      }
      default:
        return opening satisfies never;
    }
  } catch (error) {
    const failure = channel.explain(error);
    if (!progress.refused) {
      if (progress.speaksClassic) await channel.write(classicErrorLine(failure.message)).catch(() => {});
      else await sendError(channel, failure);
    }
    await lingerThenClose(channel);
    throw failure;
  } finally {
    clearTimeout(deadline);
    stopListening();
  }
}

/** TLS's first byte: a handshake record (what a ClientHello starts with). */
const TLS_HANDSHAKE_RECORD = 0x16;

/**
 * The plain part of an authenticated connection: a short greeting that says a key is
 * needed, then the sender's TLS handshake. Anything else is turned away with an Error
 * frame AUTH and never gets to say a name or send a byte of data; a keyless ftx sender
 * says why it gives up (an Error frame), which is logged like any stray.
 */
async function receiveOverTls(
  stream: Duplex,
  channel: Channel,
  options: ConnectionOptions,
  auth: NonNullable<ConnectionOptions['auth']>,
  handshakeMs: number,
  peer: string,
): Promise<ConnectionOutcome | ({ kind: 'secured' } & Authenticated)> {
  try {
    await sendAuthGreeting(channel);
  } catch (error) {
    if (error instanceof ConnectionLostError) {
      channel.destroy();
      return { kind: 'silent' };
    }
    throw error;
  }
  const first = await channel.peekByte();
  if (first === null) {
    channel.destroy();
    return { kind: 'silent' };
  }
  if (first !== TLS_HANDSHAKE_RECORD) {
    if (first === FrameType.Error) {
      const frame = await channel.readFrame();
      if (frame) throw errorFromPeer(channel, frame);
    }
    const refusal = new AuthError('this receiver takes only senders with a key: give the sender its key file, or the code the receiver printed');
    await sendError(channel, refusal);
    await lingerThenClose(channel);
    throw refusal;
  }
  if (!(stream instanceof Socket)) throw new InternalError("TLS needs the connection's socket");
  const buffered = channel.detach();
  options.log?.debug({ peer }, 'TLS handshake');
  const secured = await acceptPsk(stream, buffered, auth.keys, handshakeMs);
  channel.handedOver();
  return { kind: 'secured', ...secured };
}

/**
 * A refusal of a protocol 1 (or classic) sender, in its protocol. Protocol 1 has no
 * 'unsupported' reason (ftx 0.1 reads a Refuse with an unknown reason as a protocol
 * error), so it goes as an Error frame FTX_ERR_REFUSED, whose unknown reason ftx 0.1
 * reads as 'busy', and prints the message.
 */
async function refuseUnsupported(channel: Channel, progress: Progress, message: string): Promise<never> {
  progress.refused = true;
  const refusal = new RefusedError('unsupported', message);
  if (progress.speaksClassic) await channel.write(classicErrorLine(message)).catch(() => {});
  else await sendError(channel, refusal);
  throw refusal;
}

/** A protocol 2 session (session/receive-session.ts), into a folder, a file, or a stream. */
async function receiveSessionOf(channel: Channel, open: Open, options: ConnectionOptions, policy: ConnectionPolicy, peer: string, progress: Progress): Promise<ReceivedFile & { session: SessionCounts }> {
  const startedAt = performance.now();
  const refuse = async (reason: RefusalReason, message: string, remedy?: Remedy): Promise<never> => {
    progress.refused = true;
    await sendRefuse(channel, reason, message).catch(() => {});
    throw new RefusedError(reason, message, remedy === undefined ? undefined : { remedy });
  };
  const target: SessionTarget = options.output
    ? { kind: 'stream', output: options.output.stream, label: options.output.label }
    : (await isFolder(options.target))
      ? { kind: 'folder', root: options.target, foldsCase: options.foldsCase ?? false }
      : { kind: 'file', path: options.target };
  const received = await receiveSession(
    channel,
    open,
    target,
    { ...options, onStart: options.onSession, onEntry: options.onEntry, onFile: (file) => options.onStart?.({ ...file, peer, protocol: 'ftx' }) },
    policy,
    peer,
    refuse,
  );
  await lingerThenClose(channel);
  const { path, bytes, hash, digest, ...session } = received;
  return { protocol: 'ftx', path, bytes, hash, digest, seconds: (performance.now() - startedAt) / 1000, peer, session };
}

async function isFolder(path: string): Promise<boolean> {
  const stats = await stat(path).catch(() => undefined);
  return stats?.isDirectory() ?? false;
}

/** One file, in whichever protocol: target, staged file, accept, data, verify, commit, confirm. */
async function receiveTransfer(
  channel: Channel,
  incoming: IncomingFile & { mode?: number | undefined; mtime?: number | undefined },
  dialect: Dialect,
  options: ConnectionOptions,
  policy: ConnectionPolicy,
  peer: string,
  log: Log,
): Promise<ReceivedFile> {
  const startedAt = performance.now();
  const refuse = async (reason: RefusalReason, message: string, remedy?: Remedy): Promise<never> => {
    await dialect.refuse(reason, message).catch(() => {});
    throw new RefusedError(reason, message, remedy === undefined ? undefined : { remedy });
  };
  const slot = policy.claimSlot();
  if (slot) await refuse(slot.reason, slot.message);
  let request: TransferRequest;
  try {
    request = await decideTarget(incoming, peer, options, policy, refuse);
  } catch (error) {
    policy.releaseSlot();
    throw error;
  }
  let staged: StagedFile | undefined;
  try {
    staged = await StagedFile.create(request.path, incoming.mode);
    const file = staged;
    request.bytesWritten = () => file.bytesWritten;
    await dialect.accept();
    log.debug({ peer, name: incoming.name, size: incoming.size, path: request.path, temp: staged.tempPath }, 'accepted');
    options.onStart?.({ name: incoming.name, path: request.path, size: incoming.size, peer, protocol: dialect.protocol });

    const minRate = options.minBytesPerSecond ?? DEFAULT_MIN_BYTES_PER_SECOND;
    const floor = minRate > 0 && options.idleTimeoutMs > 0 ? { bytesPerSecond: minRate, windowMs: options.idleTimeoutMs } : undefined;
    const { digest, received } = await receiveData(channel, incoming.size, dialect.hash, file, { bufferBytes: options.fileBufferBytes, floor, onProgress: options.onProgress });
    await dialect.verify(digest);
    const stored = await dialect.committing(() => commitTarget(file, request, { onConflict: options.onConflict, mtimeMs: incoming.mtime }, policy));
    await dialect.confirm({ bytes: received, hash: dialect.hash, digest, name: basename(stored) });
    dialect.closed(await lingerThenClose(channel));
    return { path: stored, bytes: received, hash: dialect.hash, digest, seconds: (performance.now() - startedAt) / 1000, peer, protocol: dialect.protocol };
  } finally {
    await staged?.discard();
    policy.release(request);
    policy.releaseSlot();
  }
}

function ftxDialect(channel: Channel, header: Header, progress: Progress, peer: string, options: ConnectionOptions, log: Log): Dialect {
  return {
    protocol: 'ftx',
    hash: header.hash,
    refuse: (reason, message) => {
      progress.refused = true;
      return sendRefuse(channel, reason, message);
    },
    accept: () => sendAccept(channel),
    verify: async (digest) => {
      const trailer = await readTrailer(channel, header.size);
      if (trailer.hash !== header.hash || trailer.digest !== digest) {
        throw new IntegrityError(
          `the data received for ${quoteName(header.name)} does not match the sender's ${trailer.hash} (${trailer.digest.slice(0, 12)}… vs ${digest.slice(0, 12)}…); nothing was saved, send it again`,
        );
      }
    },
    committing: (work) => withKeepAlives(channel, options.idleTimeoutMs, work),
    // The file is complete, verified and durable: that is the receiver's verdict, whether or
    // not the receipt gets through (if it does not, the sender reports a lost connection).
    confirm: (receipt) =>
      sendReceipt(channel, receipt).catch((error: unknown) => {
        log.warn(
          { peer, name: receipt.name, cause: String(error) },
          `stored ${receipt.name}, but the receipt could not be sent (${channel.describeStreamError(error).message}); the sender will not know it arrived`,
        );
      }),
    closed: () => {},
  };
}

/**
 * A classic tutorial client: ASCII size, "ko", exactly that many bytes, close. It sends
 * no name and gets no receipt; the same temp-fsync-rename safety applies.
 */
function classicDialect(channel: Channel, progress: Progress, peer: string, log: Log): Dialect {
  let announced = 0;
  return {
    protocol: 'classic',
    hash: DEFAULT_DIGEST,
    // A classic client cannot read a refusal; it gets a line of text instead of "ko", then EOF.
    refuse: (_reason, message) => {
      progress.refused = true;
      return channel.write(classicErrorLine(message));
    },
    accept: async () => {
      await channel.write(Buffer.from(CLASSIC_ACK, 'latin1'));
      log.info({ peer }, `${peer} speaks the classic tutorial protocol: no name, no digest, no receipt`);
    },
    verify: async () => {},
    committing: (work) => work(),
    confirm: async (receipt) => {
      announced = receipt.bytes;
    },
    closed: (extra) => {
      if (extra > 0) log.warn({ peer, extra }, `the classic sender sent ${extra} bytes more than the ${announced} it announced; kept the first ${announced}`);
    },
  };
}

async function answerPing(channel: Channel, ping: Ping): Promise<void> {
  const now = new Date();
  await sendPong(channel, { reply: `[${ctime(now)}] ${ping.message}`, version: PROTOCOL_VERSION, time: now.toISOString() });
}

/** What a classic peer gets instead of a frame: one line of text. */
function classicErrorLine(message: string): Buffer {
  return Buffer.from(`error: ${message.replace(/[\r\n]+/g, ' ')}\n`, 'utf8');
}

/** Classic senders send no name; when storing into a folder, name the file by its arrival time. */
function classicFileName(now: Date): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z').replace('T', '-');
  return `classic-${stamp}.bin`;
}

/**
 * Ends our side, then reads and drops whatever the peer still sends until it closes
 * (or LINGER_MS passes): closing with unread bytes would send a reset, and the peer
 * could lose our last frame (the receipt or the error) with it. Returns how many bytes
 * were dropped (a classic sender's surplus).
 */
async function lingerThenClose(channel: Channel): Promise<number> {
  if (channel.stream.destroyed) return 0;
  channel.end();
  let dropped = 0;
  const timer = setTimeout(() => channel.destroy(), LINGER_MS);
  try {
    for (let chunk = await channel.readRaw(); chunk; chunk = await channel.readRaw()) dropped += chunk.length;
  } catch {
    // Closed under us: nothing left to wait for.
  } finally {
    clearTimeout(timer);
    channel.destroy();
  }
  return dropped;
}
