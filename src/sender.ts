/**
 * The sending end of one connection (sendOverConnection): greet, announce, stream, and
 * wait for the receiver's receipt, in whichever protocol the receiver's greeting shows it
 * speaks. Opening the file and connecting are the API's business (api/send.ts).
 */
import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { DEFAULT_DIGEST, LEGACY_DIGESTS, type DigestName } from './digest/registry.js';
import { abortReason, AuthError, ConnectionLostError, IntegrityError, InternalError, InterruptedError, LocalIoError, ProtocolError, TimeoutError, UnverifiedError } from './errors.js';
import type { SourceFile } from './fs/source.js';
import { FrameType } from './framing.js';
import { errorFrame, readDecision, readGreeting, readReceipt, sendHeader, sendTrailer, throwIfTurnedAway } from './handshake.js';
import { Channel } from './protocol/channel.js';
import { awaitClassicClose, classicAnnounce, readClassicGreeting } from './protocol/classic.js';
import type { Greeting, Protocol, Receipt } from './protocol/messages.js';
import { sendData } from './session/outgoing.js';
import { sendSession, type SendSessionOptions, type SentEntry, type SentSession, type SessionSource } from './session/send-session.js';
import { sessionFailure } from './session/verdict.js';
import type { SenderKey } from './transport/keys.js';
import { peerOf } from './transport/tcp.js';
import { connectPsk } from './transport/tls.js';
import type { Log } from './util/log.js';
import { whenAborted } from './util/timers.js';

export interface SendingOptions {
  /** Give up when the receiver sends nothing for this long; 0 never. */
  idleTimeoutMs: number;
  /** Digest both ends compute (classic transfers always use the default locally). */
  hash?: DigestName | undefined;
  /** Fail, before sending any data, if the receiver cannot confirm the file (a classic peer). */
  verifiedOnly?: boolean | undefined;
  signal?: AbortSignal | undefined;
  log?: Log | undefined;
  /** Called once the receiver accepted, before the first data byte. */
  onStart?: ((transfer: { size: number; protocol: Protocol }) => void) | undefined;
  /** Called as bytes are read into the socket, with the count so far. */
  onProgress?: ((bytesSent: number) => void) | undefined;
  /** A session's entry is done (stored, refused, failed, or skipped here). */
  onEntry?: ((entry: SentEntry) => void) | undefined;
  /** Let the receiver resume files it kept part of, and skip those it has (default true; sessions only). */
  resume?: boolean | undefined;
  /** A file the receiver offered to resume: resumed, or sent whole (why). */
  onResume?: SendSessionOptions['onResume'];
  /**
   * Prove this key to the receiver (TLS 1.3 with a pre-shared key) and send only inside
   * TLS. A receiver that does not ask for a key is refused: never a silent downgrade.
   */
  key?: SenderKey | undefined;
}

/**
 * What to send: one file (opened, for a receiver of protocol 1 or a classic one), and
 * the session that carries the same, or more (folders, many files, a stream), for a
 * receiver of protocol 2. `single` is absent when only a session can carry it.
 */
export interface SendPlan {
  single?: SourceFile | undefined;
  session: () => SessionSource;
}

export interface SentFile {
  protocol: Protocol;
  /** The name the receiver stored the file under (classic receivers do not say: the name sent). */
  name: string;
  bytes: number;
  hash: DigestName;
  digest: string;
  seconds: number;
  /** The receiver's address, "host:port". */
  peer: string;
  /** True when the receiver confirmed bytes and digest; false for classic receivers. */
  verified: boolean;
  /** The identity this sender proved (TLS with its key, or a code's); undefined when it sent in plain text. */
  identity?: string | undefined;
  /** Sent as a session (protocol 2): what it carried. `name` and `digest` are the one file's, when it was one. */
  session?: Omit<SentSession, 'bytes' | 'name' | 'digest'> | undefined;
}

/**
 * Runs the whole conversation over a connected stream. Does not close the file; the
 * stream is ended (success) or destroyed (failure).
 */
export async function sendOverConnection(stream: Duplex, plan: SendPlan, options: SendingOptions): Promise<SentFile> {
  const peer = peerOf(stream);
  const channel = new Channel(stream, { idleTimeoutMs: options.idleTimeoutMs, peerRole: 'the receiver' });
  channel.farewell = errorFrame;
  // hangUp says why in an Error frame, unless file data is flowing (the channel knows).
  const stopListening = whenAborted(options.signal, () => channel.hangUp(abortReason(options.signal)));
  const startedAt = performance.now();
  let speaksFtx = false;
  try {
    const first = await channel.peekByte().catch((error: unknown) => {
      if (error instanceof TimeoutError && !error.fromPeer) {
        throw new TimeoutError(`${peer} accepted the connection but sent no greeting within ${options.idleTimeoutMs / 1000} s: is an ftx receiver listening there, or another service on that port?`, {
          cause: error,
          remedy: 'raise-timeout',
        });
      }
      throw error;
    });
    if (first === null) throw new ConnectionLostError(`${peer} closed the connection without a greeting: is an ftx receiver listening there, or another service on that port?`);
    speaksFtx = first === FrameType.Greeting;
    if (!speaksFtx && options.key) {
      throw new AuthError(`${peer} is a classic tutorial receiver, which cannot prove anything or encrypt; nothing was sent, since this sender has a key`);
    }
    const sent = speaksFtx ? await sendOverFtxOrTls(channel, stream, plan, options, peer) : await sendOverClassic(channel, requireSingle(plan, peer, 'the classic tutorial protocol'), options, peer);
    return { ...sent, seconds: (performance.now() - startedAt) / 1000, peer };
  } catch (error) {
    // Our own read failing (a file, a stream's producer): tell an ftx receiver why, where
    // the wire allows (not inside file data), rather than leave it a bare closed
    // connection. A classic server would take the frame for file bytes.
    if (speaksFtx && error instanceof LocalIoError) channel.hangUp(error);
    else channel.destroy();
    if (options.signal?.aborted) {
      // Say which signal: "stopped by SIGHUP (the terminal closed...)" tells more than "interrupted".
      const reason = abortReason(options.signal);
      if (!(reason instanceof InterruptedError)) throw reason;
      // A receiver of ftx 0.3 keeps a large file's part for the next attempt; older ones, and any without resume, discard it.
      const fate = speaksFtx && options.resume !== false ? 'sending again resumes where it stopped' : 'the receiver discards the partial file';
      throw new InterruptedError(`${reason.message}; ${fate}`, reason.signal);
    }
    throw channel.explain(error);
  } finally {
    stopListening();
  }
}

type Sent = Omit<SentFile, 'seconds' | 'peer'>;

/**
 * The plain greeting decides: a receiver that asks for a key gets TLS (and the whole
 * conversation inside it), if this sender has one; a plain receiver gets the
 * conversation as it is, if this sender has no key. The other two cases fail before
 * anything is said: no name, no byte of data.
 */
async function sendOverFtxOrTls(channel: Channel, stream: Duplex, plan: SendPlan, options: SendingOptions, peer: string): Promise<Sent> {
  const greeting = await readGreeting(channel);
  if (greeting.tls === undefined) {
    if (options.key) {
      // A keyed receiver turning this connection away greets in full, then refuses: say that, not "no keys".
      await throwIfTurnedAway(channel, 200);
      // Said to the receiver too, so its log tells why this sender hung up.
      await channel.write(errorFrame(new AuthError('the sender has a key and sends only encrypted, to a receiver that checks keys; it sent nothing'))).catch(() => {});
      throw new AuthError(`${peer} takes senders without a key (it is not set up with keys, and would not encrypt); nothing was sent, since this sender has a key`);
    }
    return sendOverFtx(channel, plan, options, peer, greeting);
  }
  if (!options.key) {
    const error = new AuthError(`${peer} takes only senders with a key: give this sender its key file (ftx keygen on the receiver's side makes one), or the code the receiver printed`);
    await channel.write(errorFrame(new AuthError('the sender has no key'))).catch(() => {});
    throw error;
  }
  if (!(stream instanceof Socket)) throw new InternalError("TLS needs the connection's socket");
  // A receiver turning the connection away (busy, too many failed checks) refuses right after its greeting.
  await throwIfTurnedAway(channel, 0);
  const buffered = channel.detach();
  if (buffered.length > 0) stream.unshift(buffered);
  const secured = await connectPsk(stream, options.key, peer, options.idleTimeoutMs);
  channel.handedOver();
  const inner = new Channel(secured, { idleTimeoutMs: options.idleTimeoutMs, peerRole: 'the receiver' });
  inner.farewell = errorFrame;
  // The plain channel is silent once detached: an abort hangs up here, saying why inside TLS.
  const stopListening = whenAborted(options.signal, () => inner.hangUp(abortReason(options.signal)));
  try {
    const sent = await sendOverFtx(inner, plan, options, peer, await readGreeting(inner));
    return { ...sent, identity: options.key.identity };
  } catch (error) {
    // As in plain text (sendOverConnection): our own read failing is told, here inside TLS.
    if (error instanceof LocalIoError) inner.hangUp(error);
    throw error;
  } finally {
    stopListening();
  }
}

async function sendOverFtx(channel: Channel, plan: SendPlan, options: SendingOptions, peer: string, greeting: Greeting): Promise<Sent> {
  options.log?.debug({ peer, greeting }, 'greeted');
  const algorithm = chooseDigest(options.hash, greeting);
  if (greeting.versions?.includes(2)) return sendOverSession(channel, plan.session(), algorithm, options);
  const source = requireSingle(plan, peer, `ftx protocol ${greeting.version} (${greeting.software ?? 'ftx 0.1'})`);
  await sendHeader(channel, { name: source.name, size: source.size, hash: algorithm, mode: source.mode, mtime: source.mtimeMs });
  await readDecision(channel);
  options.onStart?.({ size: source.size, protocol: 'ftx' });

  // From here the receiver may speak at any time (an Error frame), so listen now.
  const receipt = readReceipt(channel);
  receipt.catch(() => {}); // Observed below; this only stops an unhandled rejection.
  const digest = await sendData(channel, source, algorithm, receipt, options);
  await sendTrailer(channel, { hash: algorithm, digest });
  const confirmed = await receipt;
  checkReceipt(confirmed, source.size, algorithm, digest);
  channel.end();
  return { protocol: 'ftx', name: confirmed.name, bytes: confirmed.bytes, hash: algorithm, digest, verified: true };
}

/** A session (protocol 2): any number of entries; its failures are the caller's error. */
async function sendOverSession(channel: Channel, source: SessionSource, algorithm: DigestName, options: SendingOptions): Promise<Sent> {
  const sent = await sendSession(channel, source, {
    hash: algorithm,
    signal: options.signal,
    onStart: () => options.onStart?.({ size: source.bytes ?? 0, protocol: 'ftx' }),
    onProgress: options.onProgress,
    onEntry: options.onEntry,
    resume: options.resume,
    onResume: options.onResume,
  });
  channel.end();
  const failure = sessionFailure(sent, 'the receiver refused the file: ');
  if (failure) throw failure;
  const { bytes, name, digest, ...session } = sent;
  return { protocol: 'ftx', name, bytes, hash: algorithm, digest, verified: true, session };
}

/** One file, for a receiver that takes nothing else. */
function requireSingle(plan: SendPlan, peer: string, speaks: string): SourceFile {
  if (plan.single) return plan.single;
  throw new ProtocolError(`${peer} speaks ${speaks}, which takes one regular file; folders, several files and streams need a receiver running ftx 0.2 or newer: upgrade it`);
}

/**
 * The classic tutorial server: it greets with "welcome to conair", wants the size as
 * ASCII digits, answers "ko", and closes once it has read the data. It sends no receipt,
 * so success here means "delivered and the server closed", not "verified".
 */
async function sendOverClassic(channel: Channel, source: SourceFile, options: SendingOptions, peer: string): Promise<Sent> {
  const greeting = await readClassicGreeting(channel);
  const quoted = JSON.stringify(greeting);
  if (options.verifiedOnly) {
    throw new UnverifiedError(`${peer} speaks the classic tutorial protocol (it greeted ${quoted}), which confirms nothing; nothing was sent, since only verified delivery was asked for`);
  }
  options.log?.warn({ peer, greeting }, `${peer} speaks the classic tutorial protocol (it greeted ${quoted}): delivery will not be verified`);
  await classicAnnounce(channel, source.size);
  options.onStart?.({ size: source.size, protocol: 'classic' });
  const digest = await sendData(channel, source, DEFAULT_DIGEST, undefined, options);
  channel.end();
  await awaitClassicClose(channel);
  return { protocol: 'classic', name: source.name, bytes: source.size, hash: DEFAULT_DIGEST, digest, verified: false };
}

/**
 * The digest to use with this receiver: the one asked for, or the default; a receiver
 * that does not list its digests (ftx 0.1) gets SHA-256 unless told otherwise, since it
 * predates BLAKE3. A digest the receiver does not know fails now, before any data moves.
 */
function chooseDigest(asked: DigestName | undefined, greeting: Greeting): DigestName {
  const accepted = greeting.digests ?? LEGACY_DIGESTS;
  const wanted = asked ?? (accepted.includes(DEFAULT_DIGEST) ? DEFAULT_DIGEST : 'sha256');
  if (!accepted.includes(wanted)) {
    throw new ProtocolError(`the receiver (${greeting.software ?? `ftx protocol ${greeting.version}`}) does not know the digest ${wanted}; it takes ${accepted.join(', ')}: choose one of those`);
  }
  return wanted;
}

function checkReceipt(receipt: Receipt, size: number, algorithm: DigestName, digest: string): void {
  if (receipt.bytes !== size || receipt.hash !== algorithm || receipt.digest !== digest) {
    throw new IntegrityError(
      `the receiver stored ${receipt.bytes} bytes with ${receipt.hash} ${receipt.digest.slice(0, 12)}…, but ${size} bytes with ${digest.slice(0, 12)}… were sent; send it again`,
    );
  }
}
