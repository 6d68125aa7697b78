/**
 * The sending end of a protocol 2 session (see receive-session.ts for the conversation):
 * entries go out ahead of their data, up to SEND_AHEAD of them, so the receiver's
 * decisions arrive while earlier data is still flowing and no file waits a round trip.
 *
 * Two things run at once: this loop, which writes (Entry frames, then each stored
 * file's Data frames and Trailer), and a reader (SessionReplies), which takes the
 * receiver's Decisions, Results, KeepAlives and its final Summary as they come. An Error
 * frame from the receiver stops the data at once.
 *
 * Small files are read whole when their Entry is sent (so the size announced is the
 * size sent) and go out with their Entry, Data and Trailer in one write; large files
 * keep their handle open from their Entry to their data, and stream through the file
 * pump's ring of buffers, reused for every file of the session.
 *
 * Memory: the entries ahead (SEND_AHEAD), the digests of files whose Result has not come
 * back (bounded by what the connection's buffers hold), the first failures. Nothing
 * grows with the session.
 */
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { open as openFile, type FileHandle } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { createHasher, digestOfBytes, type DigestName, type Hasher } from '../digest/registry.js';
import {
  ConnectionLostError,
  IntegrityError,
  isFtxError,
  LocalIoError,
  localIoError,
  ProtocolError,
  RefusedError,
  type EntryFailure,
  type FtxError,
  type Remedy,
} from '../errors.js';
import { dataFrameHeader, FrameType, frameTypeName, MAX_DATA_FRAME } from '../framing.js';
import { pumpBuffers } from '../fs/file-pump.js';
import { readPrefix } from '../fs/file-prefix.js';
import { SMALL_FILE_BYTES } from '../fs/small-file.js';
import { errorFromPeer, sendKeepAlive } from '../handshake.js';
import type { Channel } from '../protocol/channel.js';
import {
  decodeAccept,
  decodeDecision,
  decodeRefuse,
  decodeResult,
  decodeResume,
  decodeSummary,
  jsonFrame,
  PROTOCOL_VERSION,
  type Decision,
  type Entry,
  type EntryTrailer,
  type Open,
  type Prefix,
  type Result,
  type Resume,
  type Summary,
} from '../protocol/messages.js';
import { FailureGate } from '../util/failure-gate.js';
import { sendData } from './outgoing.js';
import { MAX_LISTED_FAILURES, type ResumeEvent, type SessionCounts } from './receive-session.js';

/** Entries sent ahead of the one whose data goes out (the receiver allows MAX_ENTRIES_AHEAD). */
export const SEND_AHEAD = 32;

/** Writes of small files and entries are gathered up to this size. */
const BATCH_BYTES = 256 * 1024;

/** While this side reads a long prefix to resume, a KeepAlive this often keeps the receiver's idle timer quiet. */
const KEEPALIVE_EVERY_MS = 5_000;

/** Stream data goes out in frames of at most this size. */
const STREAM_FRAME_BYTES = 1024 * 1024;

/** What a session sends, in order: what fs/walk.ts yields, or a stream. */
export type OutgoingItem =
  | { kind: 'file'; path: string; absolute: string; size: number; mode: number; mtimeMs: number }
  | { kind: 'dir'; path: string; absolute: string; mode: number; mtimeMs: number }
  | { kind: 'stream'; path: string; stream: Readable }
  /** Not sent: a symbolic link, a device, an unreadable file. `failed`: it counts against the session. */
  | { kind: 'skipped'; path: string; reason: string; failed: boolean; remedy?: Remedy | undefined };

export interface SessionSource {
  /** Entries and file bytes, when known before the walk (a file target wants 1). */
  entries: number | null;
  bytes: number | null;
  items: AsyncIterable<OutgoingItem>;
}

export interface SendSessionOptions {
  hash: DigestName;
  signal?: AbortSignal | undefined;
  /** The receiver accepted the session. */
  onStart?: (() => void) | undefined;
  /** File bytes sent so far, all entries together. */
  onProgress?: ((bytesSent: number) => void) | undefined;
  /** An entry's outcome: stored (the receiver's Result), refused, failed, or skipped here. */
  onEntry?: ((entry: SentEntry) => void) | undefined;
  /**
   * Resume (default true): the receiver may continue a file from the part it kept of an
   * earlier attempt, once both ends have shown they hold the same bytes, and skip files it
   * has already (same size and modification time). False: every file is sent whole.
   */
  resume?: boolean | undefined;
  /** A file the receiver offered to resume: resumed from `offset`, or sent whole (`why`). */
  onResume?: ((event: ResumeEvent) => void) | undefined;
}

export interface SentEntry {
  path: string;
  type: 'file' | 'dir';
  /** 'skipped': not sent (a link, a device; or `unchanged`: the receiver has it already). */
  outcome: 'stored' | 'refused' | 'failed' | 'skipped';
  /** Skipped because the receiver has it already (same size and modification time). */
  unchanged?: boolean | undefined;
  /** Where the receiver stored it, relative to its target. */
  storedAs?: string | undefined;
  bytes: number;
  digest?: string | undefined;
  /** Why not (refused, failed, skipped). */
  message?: string | undefined;
  /** Skipped: what the caller could change to send it (a link: follow links). */
  remedy?: Remedy | undefined;
  error?: FtxError | undefined;
}

export interface SentSession extends SessionCounts {
  /** Entries not sent at all (symbolic links, devices: warnings, not failures). */
  skipped: number;
  /** File bytes the receiver stored. */
  bytes: number;
  /** File bytes that went over the connection (less than `bytes` when a file was resumed). */
  bytesSent: number;
  /** The one file's stored name and digest, when the session was one file. */
  name: string;
  digest: string;
}

/** An entry sent, waiting for its decision. */
type Ahead =
  | { entry: Entry; kind: 'dir' }
  | { entry: Entry; kind: 'small'; bytes: Buffer }
  | { entry: Entry; kind: 'large'; handle: FileHandle; absolute: string }
  | { entry: Entry; kind: 'stream'; stream: Readable };

export async function sendSession(channel: Channel, source: SessionSource, options: SendSessionOptions): Promise<SentSession> {
  const open: Open = { version: PROTOCOL_VERSION, hash: options.hash, entries: source.entries, bytes: source.bytes };
  if (options.resume !== false) open.resume = true;
  await channel.write(jsonFrame(FrameType.Open, open));
  await readOpenAnswer(channel, source.entries === 1 ? 'the file' : 'the session');
  options.onStart?.();
  const replies = new SessionReplies(channel);
  const session = new SessionSender(channel, replies, options);
  try {
    return await session.run(source.items);
  } finally {
    await session.closeAll();
    replies.stop();
  }
}

/** `what`: how the refusal names what was offered ("the file" for one, as protocol 1 said). */
async function readOpenAnswer(channel: Channel, what: string): Promise<void> {
  for (;;) {
    const frame = await channel.readFrame();
    if (!frame) throw new ConnectionLostError(`${channel.peerRole} closed the connection while ftx waited for an answer to the session`);
    if (frame.type === FrameType.KeepAlive) continue;
    if (frame.type === FrameType.Error) throw errorFromPeer(channel, frame);
    if (frame.type === FrameType.Refuse) {
      const refusal = decodeRefuse(frame);
      throw new RefusedError(refusal.reason, `the receiver refused ${what}: ${refusal.message}`, { fromPeer: true });
    }
    decodeAccept(frame);
    return;
  }
}

class SessionSender {
  readonly #channel: Channel;
  readonly #replies: SessionReplies;
  readonly #options: SendSessionOptions;
  readonly #ahead: Ahead[] = [];
  readonly #counts: SentSession = { entries: 0, files: 0, folders: 0, failed: 0, failures: [], skipped: 0, unchanged: 0, bytesSkipped: 0, bytes: 0, bytesSent: 0, name: '', digest: '' };
  #batch: Buffer[] = [];
  #batchBytes = 0;
  #bytesSent = 0;
  #buffers: Buffer[] | undefined;

  constructor(channel: Channel, replies: SessionReplies, options: SendSessionOptions) {
    this.#channel = channel;
    this.#replies = replies;
    this.#options = options;
    replies.onResult = (result) => this.#onResult(result);
  }

  async run(items: AsyncIterable<OutgoingItem>): Promise<SentSession> {
    for await (const item of items) {
      this.#options.signal?.throwIfAborted();
      this.#replies.throwIfFailed();
      if (item.kind === 'skipped') {
        this.#skipped(item);
        continue;
      }
      const ahead = await this.#prepare(item);
      if (!ahead) continue;
      this.#queue(jsonFrame(FrameType.Entry, ahead.entry));
      this.#ahead.push(ahead);
      while (this.#ahead.length >= SEND_AHEAD) await this.#sendNext();
    }
    while (this.#ahead.length > 0) await this.#sendNext();
    this.#queue(jsonFrame(FrameType.End, { entries: this.#counts.entries, bytes: this.#bytesSent }));
    await this.#flush();
    const summary = await this.#replies.summary();
    return this.#finish(summary);
  }

  /** Opens (a large file) or reads (a small one) what the entry will send; a file that cannot be read is skipped, as a failure. */
  async #prepare(item: Exclude<OutgoingItem, { kind: 'skipped' }>): Promise<Ahead | undefined> {
    const id = this.#counts.entries + 1;
    if (item.kind === 'dir') {
      this.#counts.entries = id;
      return { kind: 'dir', entry: { id, path: item.path, type: 'dir', size: null, mode: item.mode, mtime: item.mtimeMs } };
    }
    if (item.kind === 'stream') {
      this.#counts.entries = id;
      return { kind: 'stream', entry: { id, path: item.path, type: 'file', size: null }, stream: item.stream };
    }
    try {
      if (item.size <= SMALL_FILE_BYTES) {
        const bytes = readSmallFile(item.absolute);
        this.#counts.entries = id;
        return { kind: 'small', bytes, entry: { id, path: item.path, type: 'file', size: bytes.length, mode: item.mode, mtime: item.mtimeMs } };
      }
      const handle = await openFile(item.absolute, constants.O_RDONLY | constants.O_NONBLOCK);
      const stats = await handle.stat();
      if (!stats.isFile()) {
        await handle.close();
        throw new LocalIoError(`cannot send ${item.absolute}: it is no longer a regular file`);
      }
      this.#counts.entries = id;
      return { kind: 'large', handle, absolute: item.absolute, entry: { id, path: item.path, type: 'file', size: stats.size, mode: stats.mode & 0o7777, mtime: stats.mtimeMs } };
    } catch (error) {
      const failure = isFtxError(error) ? error : localIoError(error, 'read', item.absolute);
      this.#skipped({ kind: 'skipped', path: item.path, reason: failure.message, failed: true });
      return undefined;
    }
  }

  /** Waits for the oldest entry's decision, and sends its data if it is to be stored. */
  async #sendNext(): Promise<void> {
    const ahead = this.#ahead.shift() as Ahead;
    // Before waiting, let what is gathered go (the receiver needs those Entries to decide).
    if (!this.#replies.hasDecision(ahead.entry.id)) await this.#flush();
    let decision: Decision;
    try {
      decision = await this.#replies.decision(ahead.entry.id);
    } catch (error) {
      if (ahead.kind === 'large') await ahead.handle.close().catch(() => {});
      throw error;
    }
    const offset = decision.action === 'store' ? (decision.offset ?? 0) : 0;
    if (decision.action === 'skip' || offset > 0) {
      // Only what this sender asked for: an offer within a large file it sent, a skip of a file.
      const size = ahead.entry.size ?? 0;
      const allowed = this.#options.resume !== false && (decision.action === 'skip' ? ahead.entry.type === 'file' && ahead.kind !== 'stream' : ahead.kind === 'large' && offset <= size);
      if (!allowed) {
        if (ahead.kind === 'large') await ahead.handle.close().catch(() => {});
        throw new ProtocolError(`the receiver answered ${JSON.stringify(ahead.entry.path)} with ${decision.action === 'skip' ? 'a skip' : `an offset of ${offset}`}, which this sender did not ask for`);
      }
    }
    if (decision.action === 'skip') {
      if (ahead.kind === 'large') await ahead.handle.close().catch(() => {});
      this.#counts.unchanged += 1;
      this.#counts.bytesSkipped += ahead.entry.size ?? 0;
      this.#counts.name = ahead.entry.path;
      this.#options.onEntry?.({ path: ahead.entry.path, type: 'file', outcome: 'skipped', unchanged: true, bytes: 0, message: decision.message ?? 'the receiver has it already' });
      this.#options.onProgress?.(this.#progress());
      return;
    }
    if (decision.action !== 'store') {
      if (ahead.kind === 'large') await ahead.handle.close().catch(() => {});
      const error = new RefusedError(decision.reason ?? 'busy', decision.message ?? 'refused', { fromPeer: true });
      this.#failed(ahead.entry, error, 'refused');
      return;
    }
    switch (ahead.kind) {
      case 'dir':
        this.#counts.folders += 1;
        this.#options.onEntry?.({ path: ahead.entry.path, type: 'dir', outcome: 'stored', bytes: 0 });
        return;
      case 'small': {
        const digest = await digestOfBytes(this.#options.hash, ahead.bytes);
        if (ahead.bytes.length > 0) {
          this.#queue(dataFrameHeader(ahead.bytes.length));
          this.#queue(ahead.bytes);
        }
        this.#bytesSent += ahead.bytes.length;
        this.#sent(ahead.entry, ahead.bytes.length, digest);
        return;
      }
      case 'large':
        await this.#sendLarge(ahead, offset);
        return;
      case 'stream':
        await this.#sendStream(ahead);
        return;
      default:
        return ahead satisfies never;
    }
  }

  async #sendLarge(ahead: Extract<Ahead, { kind: 'large' }>, offered: number): Promise<void> {
    await this.#flush();
    const size = ahead.entry.size as number;
    const before = this.#bytesSent;
    try {
      const resumeAt = offered > 0 ? await this.#settleResume(ahead, offered) : undefined;
      const start = resumeAt?.offset ?? 0;
      this.#counts.bytesSkipped += start;
      const digest = await sendData(
        this.#channel,
        { path: ahead.absolute, name: ahead.entry.path, size, mode: 0, mtimeMs: 0, handle: ahead.handle },
        this.#options.hash,
        this.#replies.failure,
        {
          signal: this.#options.signal,
          frames: { maxBytes: MAX_DATA_FRAME, header: dataFrameHeader },
          buffers: (this.#buffers ??= pumpBuffers()),
          resumeAt,
          onProgress: (bytes) => {
            // Not inside the optional call's arguments: those are skipped when there is no listener.
            this.#bytesSent = before + bytes;
            this.#options.onProgress?.(this.#progress());
          },
        },
      );
      this.#sent(ahead.entry, size, digest);
    } finally {
      await ahead.handle.close().catch(() => {});
    }
  }

  /**
   * The receiver offers to resume at `offered`: this side hashes its own first bytes
   * (KeepAlives meanwhile, however long that takes), sends that digest as a Prefix, and
   * the receiver's Resume says where the data starts: there, if its bytes are the same,
   * else at 0. Returns the offset and the hash so far, or undefined to send it whole.
   */
  async #settleResume(ahead: Extract<Ahead, { kind: 'large' }>, offered: number): Promise<{ offset: number; hasher: Hasher } | undefined> {
    const hasher = await createHasher(this.#options.hash);
    let lastWrite = performance.now();
    const read = await this.#replies.guard(
      readPrefix(
        ahead.handle,
        offered,
        (chunk) => {
          hasher.update(chunk);
          if (performance.now() - lastWrite > KEEPALIVE_EVERY_MS) {
            lastWrite = performance.now();
            sendKeepAlive(this.#channel).catch(() => {});
          }
        },
        ahead.absolute,
      ),
    );
    // A file now shorter than the offer cannot be the one the receiver holds part of.
    const offset = read === offered ? offered : 0;
    const prefix: Prefix = { id: ahead.entry.id, offset, hash: this.#options.hash, digest: offset > 0 ? hasher.snapshot() : (await createHasher(this.#options.hash)).digest() };
    this.#replies.expectResume(ahead.entry.id);
    this.#queue(jsonFrame(FrameType.Prefix, prefix));
    await this.#flush();
    const answer = await this.#replies.resume(ahead.entry.id);
    const size = ahead.entry.size as number;
    if (answer.offset === offset && offset > 0) {
      this.#options.onResume?.({ path: ahead.entry.path, size, offset, resumed: true });
      return { offset, hasher };
    }
    if (answer.offset !== 0) throw new ProtocolError(`the receiver answered a prefix of ${offset} bytes with an offset of ${answer.offset}`);
    const why = offset === 0 ? `${ahead.absolute} is shorter than the part the receiver kept` : (answer.message ?? 'the receiver did not resume it');
    this.#options.onResume?.({ path: ahead.entry.path, size, offset: 0, resumed: false, why });
    return undefined;
  }

  /** Bytes accounted for, for progress: those sent, and those the receiver did not need. */
  #progress(): number {
    return this.#bytesSent + this.#counts.bytesSkipped;
  }

  /** A stream of unknown size: Data frames as its chunks come, then the trailer with the count. */
  async #sendStream(ahead: Extract<Ahead, { kind: 'stream' }>): Promise<void> {
    const hash = await createHasher(this.#options.hash);
    let bytes = 0;
    try {
      for await (const piece of ahead.stream) {
        const chunk = Buffer.isBuffer(piece) ? piece : Buffer.from(piece as string);
        for (let offset = 0; offset < chunk.length; offset += STREAM_FRAME_BYTES) {
          const part = chunk.subarray(offset, offset + STREAM_FRAME_BYTES);
          hash.update(part);
          bytes += part.length;
          this.#queue(dataFrameHeader(part.length));
          this.#queue(part);
        }
        this.#bytesSent += chunk.length;
        this.#options.onProgress?.(this.#progress());
        this.#replies.throwIfFailed();
        if (this.#batchBytes >= BATCH_BYTES) await this.#flush();
      }
    } catch (error) {
      if (isFtxError(error)) throw error;
      // A stream's failure is its producer's (a child process, a socket), not a path's.
      const label = ahead.entry.path === '-' ? 'standard input' : `the stream for ${JSON.stringify(ahead.entry.path)}`;
      throw new LocalIoError(`reading ${label} failed: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
    }
    this.#sent(ahead.entry, bytes, hash.digest());
  }

  /** The entry's data is out: its trailer follows, and its Result will say whether it is stored. */
  #sent(entry: Entry, bytes: number, digest: string): void {
    this.#replies.expect(entry.id, { path: entry.path, bytes, digest });
    const trailer: EntryTrailer = { id: entry.id, bytes, hash: this.#options.hash, digest };
    this.#queue(jsonFrame(FrameType.Trailer, trailer));
    this.#options.onProgress?.(this.#progress());
  }

  #onResult(result: Result & { sent: { path: string; bytes: number; digest: string } }): void {
    const sent = result.sent;
    if (result.ok) {
      if (result.digest !== undefined && result.digest !== sent.digest) {
        this.#replies.fail(new IntegrityError(`the receiver stored ${JSON.stringify(sent.path)} with digest ${result.digest.slice(0, 12)}…, but ${sent.digest.slice(0, 12)}… was sent`));
        return;
      }
      this.#counts.files += 1;
      this.#counts.bytes += sent.bytes;
      this.#counts.name = result.path ?? sent.path;
      this.#counts.digest = sent.digest;
      this.#options.onEntry?.({ path: sent.path, type: 'file', outcome: 'stored', storedAs: result.path, bytes: sent.bytes, digest: sent.digest });
      return;
    }
    const message = result.message ?? 'failed';
    const error =
      result.code === 'FTX_ERR_REFUSED'
        ? new RefusedError(result.reason ?? 'busy', message, { fromPeer: true })
        : result.code === 'FTX_ERR_INTEGRITY'
          ? new IntegrityError(message, { fromPeer: true })
          : new ProtocolError(message, { fromPeer: true });
    this.#failed({ id: result.id, path: sent.path, type: 'file', size: sent.bytes }, error, error instanceof RefusedError ? 'refused' : 'failed');
  }

  #skipped(item: Extract<OutgoingItem, { kind: 'skipped' }>): void {
    if (item.failed) {
      this.#record({ path: item.path, code: 'FTX_ERR_LOCAL_IO', message: item.reason });
    } else {
      this.#counts.skipped += 1;
    }
    this.#options.onEntry?.({ path: item.path, type: 'file', outcome: item.failed ? 'failed' : 'skipped', bytes: 0, message: item.reason, remedy: item.remedy });
  }

  #failed(entry: Entry, error: FtxError, outcome: 'refused' | 'failed'): void {
    this.#record({ path: entry.path, code: error.code, reason: error instanceof RefusedError ? error.reason : undefined, message: error.message });
    this.#options.onEntry?.({ path: entry.path, type: entry.type, outcome, bytes: 0, message: error.message, error });
  }

  #record(failure: EntryFailure): void {
    this.#counts.failed += 1;
    if (this.#counts.failures.length < MAX_LISTED_FAILURES) this.#counts.failures.push(failure);
  }

  #finish(summary: Summary): SentSession {
    const counts = this.#counts;
    counts.bytesSent = this.#bytesSent;
    if (summary.entries !== counts.entries || summary.stored !== counts.files + counts.folders || summary.skipped !== counts.unchanged) {
      throw new ProtocolError(`the receiver's summary (${summary.stored} of ${summary.entries} entries stored) does not match what it confirmed (${counts.files + counts.folders} of ${counts.entries})`);
    }
    // A name and a digest belong to a session of one file; several entries have one each (onEntry).
    if (counts.entries === 1 && counts.unchanged === 1) return { ...counts, digest: '' };
    if (counts.entries !== 1 || counts.files !== 1) return { ...counts, name: '', digest: '' };
    return counts;
  }

  #queue(bytes: Buffer): void {
    this.#batch.push(bytes);
    this.#batchBytes += bytes.length;
  }

  async #flush(): Promise<void> {
    if (this.#batch.length === 0) return;
    const bytes = this.#batch.length === 1 ? (this.#batch[0] as Buffer) : Buffer.concat(this.#batch, this.#batchBytes);
    this.#batch = [];
    this.#batchBytes = 0;
    await this.#replies.guard(this.#channel.write(bytes));
  }

  /** Whatever is still open when the session ends (it failed midway). */
  async closeAll(): Promise<void> {
    for (const ahead of this.#ahead.splice(0)) {
      if (ahead.kind === 'large') await ahead.handle.close().catch(() => {});
    }
  }
}

/**
 * The receiver's side of a session, read as it comes: a Decision per entry (in order),
 * a Result per file sent, KeepAlives, the Summary at the end. An Error frame, a broken
 * reply or a lost connection fails `failure`, which every wait races against.
 */
class SessionReplies {
  readonly #channel: Channel;
  readonly #decisions = new Map<number, Decision>();
  #waiting: { id: number; resolve: (decision: Decision) => void } | undefined;
  readonly #expected = new Map<number, { path: string; bytes: number; digest: string }>();
  #resume: Resume | undefined;
  #resumeWaiting: { id: number; resolve: (resume: Resume) => void } | undefined;
  /** The entry whose Prefix went out and whose Resume is due, if any: any other Resume is a protocol error. */
  #resumeDue: number | undefined;
  #summary: Summary | undefined;
  #summaryWaiter: ((summary: Summary) => void) | undefined;
  #reject!: (error: FtxError) => void;
  readonly #gate = new FailureGate<FtxError>();
  #stopped = false;
  /** Rejects when the session fails on the receiver's side; never resolves. */
  readonly failure: Promise<never>;
  onResult: (result: Result & { sent: { path: string; bytes: number; digest: string } }) => void = () => {};

  constructor(channel: Channel) {
    this.#channel = channel;
    this.failure = new Promise<never>((_, reject) => {
      this.#reject = reject;
    });
    this.failure.catch(() => {});
    void this.#read();
  }

  hasDecision(id: number): boolean {
    return this.#decisions.has(id);
  }

  /** The decision on entry `id`, once it comes. */
  decision(id: number): Promise<Decision> {
    const known = this.#decisions.get(id);
    if (known) {
      this.#decisions.delete(id);
      return Promise.resolve(known);
    }
    return this.guard(new Promise<Decision>((resolve) => (this.#waiting = { id, resolve })));
  }

  /** A Prefix for entry `id` is about to go: its Resume is due. */
  expectResume(id: number): void {
    this.#resumeDue = id;
  }

  /** The receiver's answer to the Prefix of entry `id` (one is outstanding at a time). */
  resume(id: number): Promise<Resume> {
    const known = this.#resume;
    if (known) {
      this.#resume = undefined;
      if (known.id !== id) return Promise.reject(new ProtocolError(`${this.#channel.peerRole} answered a prefix of entry ${known.id}, not ${id}`));
      return Promise.resolve(known);
    }
    return this.guard(new Promise<Resume>((resolve) => (this.#resumeWaiting = { id, resolve })));
  }

  /** A file's data and trailer are out: its Result is checked against this. */
  expect(id: number, sent: { path: string; bytes: number; digest: string }): void {
    this.#expected.set(id, sent);
  }

  summary(): Promise<Summary> {
    if (this.#summary) return Promise.resolve(this.#summary);
    return this.guard(new Promise<Summary>((resolve) => (this.#summaryWaiter = resolve)));
  }

  /** `work`, or the session's failure if that comes first (util/failure-gate.ts). */
  guard<T>(work: Promise<T>): Promise<T> {
    return this.#gate.guard(work);
  }

  throwIfFailed(): void {
    const failure = this.#gate.failure;
    if (failure) throw failure;
  }

  fail(error: FtxError): void {
    if (this.#gate.failure) return;
    // The long-lived `failure` first (it stops a pump in flight), then the guarded waits.
    this.#reject(error);
    this.#gate.fail(error);
  }

  stop(): void {
    this.#stopped = true;
  }

  async #read(): Promise<void> {
    try {
      for (;;) {
        const frame = await this.#channel.readFrame();
        if (!frame) {
          if (this.#summary || this.#stopped) return;
          throw new ConnectionLostError(`${this.#channel.peerRole} closed the connection before the session's summary`);
        }
        switch (frame.type) {
          case FrameType.Decision: {
            const decision = decodeDecision(frame);
            if (this.#waiting?.id === decision.id) {
              const waiting = this.#waiting;
              this.#waiting = undefined;
              waiting.resolve(decision);
            } else {
              if (this.#decisions.size > SEND_AHEAD * 2) throw new ProtocolError(`${this.#channel.peerRole} sent decisions on entries it was not asked about`);
              this.#decisions.set(decision.id, decision);
            }
            break;
          }
          case FrameType.Resume: {
            const resume = decodeResume(frame);
            const waiting = this.#resumeWaiting;
            if (this.#resumeDue !== resume.id) throw new ProtocolError(`${this.#channel.peerRole} sent an answer to a prefix it was not sent`);
            this.#resumeDue = undefined;
            if (waiting) {
              this.#resumeWaiting = undefined;
              waiting.resolve(resume);
            } else {
              this.#resume = resume;
            }
            break;
          }
          case FrameType.Result: {
            const result = decodeResult(frame);
            const sent = this.#expected.get(result.id);
            if (!sent) throw new ProtocolError(`${this.#channel.peerRole} sent a result for entry ${result.id}, whose data was not sent`);
            this.#expected.delete(result.id);
            this.onResult({ ...result, sent });
            break;
          }
          case FrameType.Summary: {
            if (this.#expected.size > 0) throw new ProtocolError(`${this.#channel.peerRole} summed up the session with ${this.#expected.size} results still owed`);
            this.#summary = decodeSummary(frame);
            this.#summaryWaiter?.(this.#summary);
            return;
          }
          case FrameType.KeepAlive:
            break;
          case FrameType.Error:
            throw errorFromPeer(this.#channel, frame);
          default:
            throw new ProtocolError(`${this.#channel.peerRole} sent a ${frameTypeName(frame.type)} frame in the middle of a session`);
        }
      }
    } catch (error) {
      if (this.#stopped) return;
      this.fail(this.#channel.explain(error));
    }
  }
}

/** A small file, read whole now: what its Entry announces is what is sent. */
function readSmallFile(path: string): Buffer {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (error) {
    throw localIoError(error, 'read', path);
  }
  try {
    const stats = fstatSync(fd);
    if (!stats.isFile()) throw new LocalIoError(`cannot send ${path}: it is no longer a regular file`);
    const bytes = Buffer.allocUnsafe(stats.size);
    let filled = 0;
    while (filled < bytes.length) {
      const read = readSync(fd, bytes, filled, bytes.length - filled, filled);
      if (read === 0) break;
      filled += read;
    }
    return filled === bytes.length ? bytes : bytes.subarray(0, filled);
  } catch (error) {
    throw isFtxError(error) ? error : localIoError(error, 'read', path);
  } finally {
    closeSync(fd);
  }
}

