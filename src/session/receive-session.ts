/**
 * The receiving end of a protocol 2 session: many entries (files, folders, a stream)
 * over one connection, pipelined, each verified and committed on its own.
 *
 *   sender                                   receiver
 *   Open      ------------------------------>
 *             <------------------------------  Accept (or Refuse: busy, not a folder…)
 *   Entry 1, Entry 2, … (up to its lookahead) >
 *             <------------------------------  Decision 1, Decision 2, … (store/skip/refuse)
 *   Data…, Trailer 1 (for a stored file) --->
 *             <------------------------------  Result 1 (stored and durable, or failed)
 *   …, End    ------------------------------>
 *             <------------------------------  Summary (every entry accounted for)
 *
 * Entries are decided as they arrive, ahead of their data, so the sender never waits a
 * round trip per file; their data comes in the order they were sent, so the stored
 * files waiting for theirs are a queue (bounded: MAX_ENTRIES_AHEAD). That queue, the
 * folder stack (entry-targets.ts) and the first failures are all the state kept: a
 * session of a million entries costs what one of ten does.
 *
 * Where entries go, by target:
 * - a folder: every entry, under it (EntryTargets);
 * - a file path: exactly one file (the Open must say one entry, else it is refused
 *   before any data: give a folder);
 * - a stream (`ftx recv -`): exactly one file or stream, written as it arrives. It
 *   cannot be staged and renamed, so the digest's verdict is the outcome: the caller's
 *   exit code, which consumers must check.
 *
 * Failures: an entry that is refused or fails its digest is that entry's, told in its
 * Decision or Result, and the session goes on. Anything else ends the session (the
 * caller sends the Error): a broken protocol, a lost connection, a local disk failure.
 */
import { lstatSync } from 'node:fs';
import { basename } from 'node:path';
import { DEFAULT_MIN_BYTES_PER_SECOND, DEFAULT_PARTIAL_MAX_AGE_MS } from '../defaults.js';
import { createHasher, digestOfBytes, type DigestName, type Hasher } from '../digest/registry.js';
import {
  ConnectionLostError,
  IntegrityError,
  ProtocolError,
  RefusedError,
  TimeoutError,
  type EntryFailure,
  type FtxError,
  type RefusalReason,
  type Remedy,
} from '../errors.js';
import { FrameType, frameTypeName, type Frame } from '../framing.js';
import { readFilePrefix } from '../fs/file-prefix.js';
import { lockPartial, lookUpPartial, partialLocked, partialPaths, removePartial, unlockPartial, type PartialLookup } from '../fs/partial.js';
import { discardSmallFile, placeSmallFile, SMALL_FILE_BYTES, writeSmallFile } from '../fs/small-file.js';
import { isNameTaken, pickFreeName, StagedFile } from '../fs/staged-file.js';
import { errorFromPeer, sendAccept } from '../handshake.js';
import type { Channel, DataSink, FloorWatch } from '../protocol/channel.js';
import {
  boundedText,
  decodeEnd,
  decodeEntry,
  decodeEntryTrailer,
  decodePrefix,
  jsonFrame,
  PROTOCOL_VERSIONS,
  type Decision,
  type Entry,
  type Open,
  type Result,
  type Resume,
  type Summary,
} from '../protocol/messages.js';
import { within } from '../util/timers.js';
import { formatBytes } from '../util/units.js';
import { EntryTargets, isUnchanged, type EntryDecision } from './entry-targets.js';
import { IncomingData, streamWriter } from './incoming.js';
import { withKeepAlives } from './keep-alive.js';
import type { ConnectionPolicy, TransferRequest } from './policy.js';
import { commitTarget, decideTarget, freeBytesIn, quoteName, type TargetOptions } from './target.js';

/** Stored files whose data has not come yet, at most (the sender keeps within SEND_AHEAD). */
export const MAX_ENTRIES_AHEAD = 64;

/** Failed entries listed in a session's result (all are counted). */
export const MAX_LISTED_FAILURES = 100;

/** Largest control frame in a session: an Entry with a 4,096-byte path, escaped. */
export const MAX_SESSION_FRAME_PAYLOAD = 32 * 1024;

/** Queued frames for the sender are written once they reach this much (see #send). */
const OUTBOX_BYTES = 64 * 1024;

export type SessionTarget =
  | { kind: 'folder'; root: string; foldsCase: boolean }
  | { kind: 'file'; path: string }
  | { kind: 'stream'; output: NodeJS.WritableStream; label: string };

export interface SessionOptions extends Omit<TargetOptions, 'target'> {
  idleTimeoutMs: number;
  minBytesPerSecond?: number | undefined;
  fileBufferBytes?: number | undefined;
  /** A session of several entries (or of unknown count) was accepted. */
  onStart?: ((session: { peer: string; entries: number | null; bytes: number | null; hash: DigestName }) => void) | undefined;
  /**
   * A session of one entry: its file is accepted (as protocol 1's Accept), before its
   * data. Not called when it is refused: for its caller that is a refused sender, not a
   * transfer.
   */
  onFile?: ((file: { name: string; path: string; size: number }) => void) | undefined;
  /** Every file byte of the session so far. */
  onProgress?: ((bytesReceived: number) => void) | undefined;
  /** What a stream (of unknown size) may bring, besides maxSize, and why: a quota's room. */
  streamLimit?: { bytes: number; why: string } | undefined;
  /** Each entry once its outcome is known (a file once stored, or failed). */
  onEntry?: ((entry: EntryOutcome) => void) | undefined;
  /** The sender's identity, when it proved a key: a partial is resumed only by the identity that left it. */
  identity?: string | undefined;
  /** Kept partials untouched this long are not resumed but replaced, in ms (default DEFAULT_PARTIAL_MAX_AGE_MS; 0: any age). */
  partialMaxAgeMs?: number | undefined;
  /** A file offered a kept partial: resumed from `offset`, or started over (`why`). */
  onResume?: ((event: ResumeEvent) => void) | undefined;
  /** A file cut short whose bytes are kept for a resumed attempt. */
  onPartialKept?: ((partial: { path: string; bytes: number; size: number }) => void) | undefined;
}

export interface ResumeEvent {
  /** As the sender sent it. */
  path: string;
  size: number;
  /** Where its data starts (0 when started over). */
  offset: number;
  resumed: boolean;
  /** Why it was not resumed. */
  why?: string | undefined;
}

export interface EntryOutcome {
  /** As the sender sent it. */
  path: string;
  type: 'file' | 'dir';
  /** 'skipped': the receiver had it already (same size and time, and the sender resumes). */
  outcome: 'stored' | 'refused' | 'failed' | 'skipped';
  /** Where it was stored, relative to the target (a file target: its name). */
  storedAs?: string | undefined;
  bytes: number;
  error?: FtxError | undefined;
}

export interface SessionCounts {
  /** Entries the sender sent. */
  entries: number;
  files: number;
  folders: number;
  /** Entries refused or failed. */
  failed: number;
  /** Files the receiver had already (same size and modification time): not sent again. */
  unchanged: number;
  /** File bytes that did not have to move: unchanged files, and the prefixes of resumed ones. */
  bytesSkipped: number;
  /** The first failures (MAX_LISTED_FAILURES). */
  failures: EntryFailure[];
}

export interface ReceivedSession extends SessionCounts {
  /** Where it landed: the folder, the file, or the stream's label ("-"). */
  path: string;
  /** File bytes stored. */
  bytes: number;
  hash: DigestName;
  /** The digest of the one file, when the session carried exactly one (else empty). */
  digest: string;
}

/** A stored file waiting for its data, then its trailer. */
interface PendingFile {
  entry: Entry;
  /** Where it goes (a stream target: none). */
  path: string | undefined;
  request: TransferRequest | undefined;
  /** Relative path it is stored under (for its Result). */
  relative: string;
  /** A large file's temporary file, created at its Entry (its buffers come with its data). */
  staged?: StagedFile | undefined;
  data: FileData | undefined;
  /**
   * A kept partial offered to the sender: its offset, and the digest of its bytes as read
   * back from disk, started once this file is the next whose data is due (one read at a
   * time per session, however many offers are ahead).
   */
  offer?: { offset: number; ours?: Promise<Hasher> | undefined; until?: number | undefined; allowedMs?: number | undefined } | undefined;
  /** A resumed file: where its data starts, and the hash of the bytes before. */
  startAt?: { offset: number; hasher: Hasher } | undefined;
}

/** Data on its way in: a small file whole in memory, or a staged file or stream written as it comes. */
type FileData =
  | { kind: 'small'; buffer: Buffer; filled: number }
  | { kind: 'staged'; staged: StagedFile | undefined; incoming: IncomingData };

export async function receiveSession(
  channel: Channel,
  open: Open,
  target: SessionTarget,
  options: SessionOptions,
  policy: ConnectionPolicy,
  peer: string,
  refuse: (reason: RefusalReason, message: string, remedy?: Remedy) => Promise<never>,
): Promise<ReceivedSession> {
  const slot = policy.claimSlot();
  if (slot) await refuse(slot.reason, slot.message);
  try {
    if (!(PROTOCOL_VERSIONS as readonly number[]).includes(open.version)) {
      await refuse('unsupported', `the sender opened a session of protocol ${open.version}; this receiver speaks ${PROTOCOL_VERSIONS.join(' and ')}`);
    }
    if (target.kind !== 'folder' && open.entries !== 1) {
      const what = target.kind === 'file' ? `stores one file (at ${quoteName(basename(target.path))})` : 'writes one file to its standard output';
      await refuse('unsupported', `the receiver ${what}, and this session has ${open.entries === null ? 'several' : open.entries} entries; to receive folders or several files, give the receiver a folder`);
    }
    // A resuming sender's total counts what the receiver may have already (files kept, partials): each file is checked on its own instead.
    if (target.kind === 'folder' && open.bytes !== null && open.resume !== true) {
      const free = await freeBytesIn(target.root);
      if (free !== undefined && open.bytes > free) await refuse('no-space', `not enough free space on the receiver for ${formatBytes(open.bytes)}`);
    }
    await sendAccept(channel);
    return await new SessionReceiver(channel, open, target, options, policy, peer).run();
  } finally {
    policy.releaseSlot();
  }
}

class SessionReceiver {
  readonly #channel: Channel;
  readonly #open: Open;
  readonly #target: SessionTarget;
  readonly #options: SessionOptions;
  readonly #policy: ConnectionPolicy;
  readonly #peer: string;
  readonly #targets: EntryTargets | undefined;
  readonly #watch: FloorWatch;
  readonly #pending: PendingFile[] = [];
  readonly #counts: SessionCounts = { entries: 0, files: 0, folders: 0, failed: 0, failures: [], unchanged: 0, bytesSkipped: 0 };
  /** Stops partials being read back when the session ends. */
  readonly #stopReads = new AbortController();
  /** The last partial looked up (the space check and the staging ask about the same file). */
  #lookup: { path: string; entry: number; result: PartialLookup } | undefined;
  #bytes = 0;
  #lastDigest = '';
  /** Where the last file was stored: its full path (a stream: its label). */
  #lastPath = '';
  /** Frames for the sender not written yet (#send). */
  readonly #outbox: Buffer[] = [];
  #outboxBytes = 0;

  constructor(channel: Channel, open: Open, target: SessionTarget, options: SessionOptions, policy: ConnectionPolicy, peer: string) {
    this.#channel = channel;
    this.#open = open;
    this.#target = target;
    this.#options = options;
    this.#policy = policy;
    this.#peer = peer;
    if (target.kind === 'folder') {
      this.#targets = new EntryTargets(
        {
          root: target.root,
          onConflict: options.onConflict,
          maxSize: options.maxSize,
          allowDotFiles: options.allowDotFiles,
          foldsCase: target.foldsCase,
          skipUnchanged: open.resume === true,
          heldBytes: (path, entry) => this.#heldBytes(path, entry),
        },
        policy,
      );
    }
    const minRate = options.minBytesPerSecond ?? DEFAULT_MIN_BYTES_PER_SECOND;
    this.#watch = channel.watchRate(minRate > 0 && options.idleTimeoutMs > 0 ? { bytesPerSecond: minRate, windowMs: options.idleTimeoutMs } : undefined);
  }

  async run(): Promise<ReceivedSession> {
    if (this.#open.entries !== 1) this.#options.onStart?.({ peer: this.#peer, entries: this.#open.entries, bytes: this.#open.bytes, hash: this.#open.hash });
    this.#channel.maxFramePayload = MAX_SESSION_FRAME_PAYLOAD;
    // A failed write shows on the socket's next read as well: nothing to do here.
    this.#channel.beforeWaiting = () => void this.#flush().catch(() => {});
    try {
      for (;;) {
        // A partial offered for the next file: the sender reads its own prefix before it
        // answers, which is its disk's time, not a slow link's (the idle timeout still holds).
        const offer = this.#pending[0]?.offer;
        const frame = offer ? await this.#readWithin(offer) : await this.#channel.readFrameWatched(this.#watch);
        if (!frame) throw new ConnectionLostError(`${this.#channel.peerRole} closed the connection before the end of the session`);
        switch (frame.type) {
          case FrameType.Entry:
            await this.#onEntry(frame);
            break;
          case FrameType.Data:
            await this.#onData(frame.rawLength ?? 0);
            break;
          case FrameType.Trailer:
            await this.#onTrailer(frame);
            break;
          case FrameType.Prefix:
            await this.#onPrefix(frame);
            break;
          case FrameType.End:
            return await this.#onEnd(frame);
          case FrameType.KeepAlive:
            break;
          case FrameType.Error:
            throw errorFromPeer(this.#channel, frame);
          default:
            throw new ProtocolError(`${this.#channel.peerRole} sent a ${frameTypeName(frame.type)} frame in the middle of a session`);
        }
      }
    } catch (error) {
      // The Results already decided go before the Error frame: the sender learns which files are safe.
      await this.#flush().catch(() => {});
      throw error;
    } finally {
      this.#channel.beforeWaiting = undefined;
      this.#watch.stop();
      await this.#abandonPending();
    }
  }

  async #onEntry(frame: Frame): Promise<void> {
    const entry = decodeEntry(frame);
    if (entry.id !== this.#counts.entries + 1) throw new ProtocolError(`${this.#channel.peerRole} sent entry ${entry.id} where entry ${this.#counts.entries + 1} was due`);
    if (this.#pending.length >= MAX_ENTRIES_AHEAD) throw new ProtocolError(`${this.#channel.peerRole} sent more than ${MAX_ENTRIES_AHEAD} entries ahead of their data`);
    this.#counts.entries = entry.id;
    const decision = await this.#decide(entry);
    if (decision.action === 'refuse') {
      const error = new RefusedError(decision.reason, decision.message, decision.remedy === undefined ? undefined : { remedy: decision.remedy });
      this.#failed(entry, error);
      await this.#send(FrameType.Decision, { id: entry.id, action: 'refuse', reason: decision.reason, message: boundedText(decision.message) } satisfies Decision);
      await this.#settle();
      return;
    }
    if (decision.action === 'skip') {
      this.#counts.unchanged += 1;
      this.#counts.bytesSkipped += entry.size ?? 0;
      this.#lastPath = decision.path;
      this.#options.onProgress?.(this.#progress());
      await this.#send(FrameType.Decision, { id: entry.id, action: 'skip' } satisfies Decision);
      this.#options.onEntry?.({ path: entry.path, type: 'file', outcome: 'skipped', storedAs: decision.relative, bytes: 0 });
      await this.#settle();
      return;
    }
    if (decision.type === 'dir') {
      await this.#send(FrameType.Decision, { id: entry.id, action: 'store', offset: 0 } satisfies Decision);
      this.#counts.folders += 1;
      this.#options.onEntry?.({ path: entry.path, type: 'dir', outcome: 'stored', storedAs: decision.relative, bytes: 0 });
      await this.#settle();
      return;
    }
    const pending: PendingFile = { entry, path: decision.path, request: decision.request, relative: decision.relative, data: undefined };
    this.#pending.push(pending);
    // Large files are staged now, as protocol 1 does before its Accept: a folder that cannot
    // be written fails here, before the data (small ones are written whole at their end).
    // Only the file: its buffers (up to 2 x 4 MiB) wait for its data, or 64 large files
    // decided ahead would hold half a GiB.
    let offset = 0;
    if (decision.path !== undefined && !(entry.size !== null && entry.size <= SMALL_FILE_BYTES)) {
      const stage = await this.#stage(entry, decision.path);
      const staged = stage.staged;
      offset = stage.offset;
      pending.staged = staged;
      if (pending.request) pending.request.bytesWritten = () => staged.bytesWritten;
      if (offset > 0) pending.offer = { offset };
      this.#startOffer();
    }
    await this.#send(FrameType.Decision, { id: entry.id, action: 'store', offset } satisfies Decision);
    if (this.#open.entries === 1) this.#options.onFile?.({ name: entry.path, path: decision.path ?? decision.relative, size: entry.size ?? 0 });
  }

  /**
   * The staged file for a large file: with a sender that resumes, its kept partial when
   * there is a usable one (reopened at its durable bytes), else a new resumable one; a
   * partial that cannot be used (the file changed, it expired) is replaced, and said so.
   */
  async #stage(entry: Entry, path: string): Promise<{ staged: StagedFile; offset: number }> {
    if (!this.#open.resume || entry.size === null) {
      // A sender that starts over (--no-resume, or one that cannot resume): what an earlier attempt of its kept is of no more use.
      const paths = partialPaths(path, this.#options.identity ?? null);
      if (lockPartial(paths)) {
        removePartial(paths);
        unlockPartial(paths);
      }
      return { staged: await StagedFile.create(path, entry.mode), offset: 0 };
    }
    const lookup = this.#lookUp(path, entry);
    this.#lookup = undefined;
    // Another transfer (of this process or another) is writing that name's partial right
    // now: this one gets a temporary file of its own, and leaves that one alone.
    if (!lockPartial(lookup.paths)) return { staged: await StagedFile.create(path, entry.mode), offset: 0 };
    // The lock is ours from here: the staged file gives it back when it is done; if none is made, we do.
    try {
      if (lookup.kind === 'usable') {
        try {
          return { staged: await StagedFile.reopen(path, lookup.paths, lookup.record, lookup.offset), offset: lookup.offset };
        } catch (error) {
          this.#options.onResume?.({ path: entry.path, size: entry.size, offset: 0, resumed: false, why: `its partial file could not be reopened (${error instanceof Error ? error.message : String(error)})` });
        }
      } else if (lookup.kind === 'unusable') {
        this.#options.onResume?.({ path: entry.path, size: entry.size, offset: 0, resumed: false, why: lookup.why });
      }
      const file = { target: basename(path), size: entry.size, mtime: entry.mtime ?? null, hash: this.#open.hash, identity: this.#options.identity ?? null };
      return { staged: await StagedFile.createResumable(path, entry.mode ?? 0o666, lookup.paths, file), offset: 0 };
    } catch (error) {
      unlockPartial(lookup.paths);
      throw error;
    }
  }

  /** The partial for `path` and this entry: looked up once for its space check and its staging (the same entry asks both). */
  #lookUp(path: string, entry: Entry): PartialLookup {
    if (this.#lookup?.path === path && this.#lookup.entry === entry.id) return this.#lookup.result;
    const maxAgeMs = this.#options.partialMaxAgeMs ?? DEFAULT_PARTIAL_MAX_AGE_MS;
    const result = lookUpPartial(path, { size: entry.size ?? 0, mtime: entry.mtime ?? null, identity: this.#options.identity ?? null }, maxAgeMs);
    this.#lookup = { path, entry: entry.id, result };
    return result;
  }

  /** Bytes of `path` a usable partial holds: they need no free space. */
  #heldBytes(path: string, entry: Entry): number {
    if (!this.#open.resume || entry.size === null || entry.size <= SMALL_FILE_BYTES) return 0;
    const lookup = this.#lookUp(path, entry);
    return lookup.kind === 'usable' && !partialLocked(lookup.paths) ? lookup.offset : 0;
  }

  /**
   * The sender's digest of its first bytes, against ours read back from disk: equal, the
   * data goes on from the offer; else (a damaged partial, a file changed in place, a
   * sender that sends it whole) the partial is emptied and the file comes whole.
   */
  /**
   * The next file's offer: reads its partial back (while the sender reads its own, both
   * prefixes are hashed at once), and sets when the sender's Prefix is due: its idle
   * timeout, plus the time to read the prefix at 10 MiB/s (a slow disk).
   */
  #startOffer(): void {
    const offer = this.#pending[0]?.offer;
    const staged = this.#pending[0]?.staged;
    if (!offer || offer.ours || !staged) return;
    offer.ours = hashOwnPrefix(staged.tempPath, offer.offset, this.#open.hash, this.#stopReads.signal, this.#options.fileBufferBytes);
    offer.ours.catch(() => {}); // Awaited when the sender's Prefix comes (or dropped with the session).
    offer.allowedMs = this.#options.idleTimeoutMs + (offer.offset / PREFIX_READ_FLOOR) * 1000;
    offer.until = performance.now() + offer.allowedMs;
  }

  /** A frame while the sender reads its prefix: the rate floor waits, the offer's deadline does not. */
  async #readWithin(offer: { until?: number | undefined; allowedMs?: number | undefined }): Promise<Frame | null> {
    const frame = await within(this.#channel.readFrame(), Math.max(0, (offer.until ?? 0) - performance.now()), () => 'timed out' as const);
    if (frame === 'timed out') {
      throw new TimeoutError(`${this.#channel.peerRole} did not answer the offer to resume its file within ${Math.round((offer.allowedMs ?? 0) / 1000)} s`);
    }
    return frame;
  }

  async #onPrefix(frame: Frame): Promise<void> {
    const prefix = decodePrefix(frame);
    const current = this.#pending[0];
    const offer = current?.offer;
    if (!current || !offer || prefix.id !== current.entry.id) throw new ProtocolError(`${this.#channel.peerRole} sent a prefix for entry ${prefix.id}, which was offered none`);
    if (prefix.offset !== 0 && prefix.offset !== offer.offset) throw new ProtocolError(`${this.#channel.peerRole} sent a prefix of ${prefix.offset} bytes where ${offer.offset} were offered`);
    if (prefix.hash !== this.#open.hash) throw new ProtocolError(`${this.#channel.peerRole} changed digest midway (${prefix.hash}, the session's is ${this.#open.hash})`);
    current.offer = undefined;
    const entry = current.entry;
    const size = entry.size ?? 0;
    const ours = await withKeepAlives(this.#channel, this.#options.idleTimeoutMs, () => offer.ours ?? Promise.reject(new Error('not read'))).catch(() => undefined);
    if (prefix.offset === offer.offset && ours !== undefined && ours.snapshot() === prefix.digest) {
      current.startAt = { offset: offer.offset, hasher: ours };
      this.#counts.bytesSkipped += offer.offset;
      await this.#send(FrameType.Resume, { id: entry.id, offset: offer.offset } satisfies Resume);
      this.#options.onResume?.({ path: entry.path, size, offset: offer.offset, resumed: true });
      return;
    }
    const why =
      prefix.offset === 0
        ? 'the sender sends it whole'
        : ours === undefined
          ? 'the receiver could not read back its partial file'
          : "the receiver's partial file does not match the sender's file (it was damaged, or the file was changed in place)";
    await (current.staged as StagedFile).restart();
    await this.#send(FrameType.Resume, { id: entry.id, offset: 0, message: boundedText(why) } satisfies Resume);
    this.#options.onResume?.({ path: entry.path, size, offset: 0, resumed: false, why });
  }

  async #decide(entry: Entry): Promise<EntryDecision | { action: 'store'; type: 'file'; path: string | undefined; relative: string; request: TransferRequest | undefined }> {
    if (this.#targets) return this.#targets.decide(entry);
    const target = this.#target;
    if (target.kind === 'folder') throw new Error('a folder target decides through EntryTargets');
    const one = target.kind === 'file' ? `stores one file (at ${quoteName(basename(target.path))})` : 'writes one file to its standard output';
    if (entry.type !== 'file') return { action: 'refuse', reason: 'unsupported', message: `the receiver ${one}, not a folder; to receive folders, give the receiver a folder` };
    if (entry.id !== 1) return { action: 'refuse', reason: 'unsupported', message: `the receiver ${one}; to receive several files, give the receiver a folder` };
    if (target.kind === 'stream') {
      if (this.#options.maxSize !== undefined && entry.size !== null && entry.size > this.#options.maxSize) {
        return { action: 'refuse', reason: 'too-large', message: `${formatBytes(entry.size)} is more than the ${formatBytes(this.#options.maxSize)} this receiver takes` };
      }
      return { action: 'store', type: 'file', path: undefined, relative: target.label, request: undefined };
    }
    if (this.#open.resume) {
      const existing = lstatSync(target.path, { throwIfNoEntry: false });
      if (existing?.isFile() && isUnchanged(existing, entry)) return { action: 'skip', type: 'file', path: target.path, relative: basename(target.path) };
    }
    try {
      const refuse = (reason: RefusalReason, message: string, remedy?: Remedy): Promise<never> => {
        throw new RefusedError(reason, message, remedy === undefined ? undefined : { remedy });
      };
      const heldBytes = (path: string) => this.#heldBytes(path, entry);
      const request = await decideTarget({ name: basename(entry.path), size: entry.size ?? 0 }, this.#peer, { ...this.#options, target: target.path, heldBytes }, this.#policy, refuse);
      return { action: 'store', type: 'file', path: request.path, relative: basename(request.path), request };
    } catch (error) {
      if (error instanceof RefusedError) return { action: 'refuse', reason: error.reason, message: error.message, ...(error.remedy ? { remedy: error.remedy } : {}) };
      throw error;
    }
  }

  async #onData(length: number): Promise<void> {
    const current = this.#pending[0];
    if (!current) throw new ProtocolError(`${this.#channel.peerRole} sent data with no stored entry to go to`);
    if (current.offer) throw new ProtocolError(`${this.#channel.peerRole} sent data for ${quoteName(current.entry.path)} before answering the offer to resume it`);
    const size = current.entry.size;
    const data = (current.data ??= await this.#openData(current));
    const received = data.kind === 'small' ? data.filled : data.incoming.received;
    if (size !== null && received + length > size) {
      throw new ProtocolError(`${this.#channel.peerRole} sent more than the ${size} bytes it announced for ${quoteName(current.entry.path)}`);
    }
    // A stream's size is known only at its end: its limits hold as its bytes arrive.
    const maxSize = Math.min(this.#options.maxSize ?? Number.POSITIVE_INFINITY, this.#options.streamLimit?.bytes ?? Number.POSITIVE_INFINITY);
    if (size === null && received + length > maxSize) {
      // Into a folder or a file nothing is kept; what went to an output stream is out already.
      const kept = current.path === undefined ? `the first ${formatBytes(received)} of it are already written to the output` : 'nothing of it was kept';
      const reason = this.#options.streamLimit && maxSize === this.#options.streamLimit.bytes ? this.#options.streamLimit.why : `the ${formatBytes(maxSize)} this receiver takes`;
      throw new RefusedError(this.#options.streamLimit && maxSize === this.#options.streamLimit.bytes ? 'no-space' : 'too-large', `${quoteName(current.entry.path)} grew past ${reason}; ${kept}`);
    }
    if (data.kind === 'small') {
      await this.#channel.readDataInto(length, bufferSink(data), this.#watch);
      this.#bytes += length;
      this.#options.onProgress?.(this.#progress());
    } else {
      await data.incoming.take(this.#channel, length, this.#watch);
    }
  }

  async #openData(file: PendingFile): Promise<FileData> {
    const size = file.entry.size;
    if (file.path !== undefined && size !== null && size <= SMALL_FILE_BYTES) return { kind: 'small', buffer: Buffer.allocUnsafe(size), filled: 0 };
    // This file's bytes are added as they come: other files' bytes may arrive between
    // its staging (at its Entry) and its data. A resumed file's count starts at its offset.
    let counted = file.startAt?.offset ?? 0;
    const progress = {
      startAt: file.startAt,
      bufferBytes: this.#options.fileBufferBytes,
      onProgress: (bytes: number) => {
        this.#bytes += bytes - counted;
        counted = bytes;
        this.#options.onProgress?.(this.#progress());
      },
    };
    if (file.path === undefined) {
      const target = this.#target as Extract<SessionTarget, { kind: 'stream' }>;
      // Small buffers: a pipe's reader wants bytes as they come, not in 4 MiB lumps.
      return { kind: 'staged', staged: undefined, incoming: await IncomingData.open(streamWriter(target.output, target.label), this.#open.hash, 256 * 1024, progress) };
    }
    const staged = file.staged ?? (await StagedFile.create(file.path, file.entry.mode));
    file.staged = staged;
    if (file.request) file.request.bytesWritten = () => staged.bytesWritten;
    return { kind: 'staged', staged, incoming: await IncomingData.open(staged, this.#open.hash, size ?? undefined, progress) };
  }

  async #onTrailer(frame: Frame): Promise<void> {
    const trailer = decodeEntryTrailer(frame);
    const current = this.#pending[0];
    // Checked before it leaves the queue: a failed session discards what is still queued.
    if (!current || trailer.id !== current.entry.id || current.offer) throw new ProtocolError(`${this.#channel.peerRole} sent the trailer of entry ${trailer.id} out of turn`);
    this.#pending.shift();
    this.#startOffer();
    const entry = current.entry;
    try {
      const data = (current.data ??= await this.#openData(current));
      const received = data.kind === 'small' ? data.filled : data.incoming.received;
      if (trailer.bytes !== received || (entry.size !== null && received !== entry.size)) {
        throw new ProtocolError(`${this.#channel.peerRole} sent ${received} bytes for ${quoteName(entry.path)}, announced ${entry.size ?? trailer.bytes}`);
      }
      if (trailer.hash !== this.#open.hash) throw new ProtocolError(`${this.#channel.peerRole} changed digest midway (${trailer.hash}, the session's is ${this.#open.hash})`);
      const digest = data.kind === 'small' ? await digestOfBytes(this.#open.hash, data.buffer) : await data.incoming.finish(this.#channel);
      if (digest !== trailer.digest) {
        const error = new IntegrityError(
          `the data received for ${quoteName(entry.path)} does not match the sender's ${trailer.hash} (${trailer.digest.slice(0, 12)}… vs ${digest.slice(0, 12)}…); nothing of it was saved, send it again`,
        );
        await this.#discard(current);
        await this.#result({ id: entry.id, ok: false, code: error.code, message: boundedText(error.message) });
        this.#failed(entry, error);
        return;
      }
      const stored = await this.#commit(current, data);
      if (stored === undefined) return;
      this.#counts.files += 1;
      this.#lastDigest = digest;
      await this.#result({ id: entry.id, ok: true, path: stored, digest });
      this.#options.onEntry?.({ path: entry.path, type: 'file', outcome: 'stored', storedAs: stored, bytes: received });
    } catch (error) {
      await this.#discard(current);
      throw error;
    } finally {
      if (current.request) this.#policy.release(current.request);
      await this.#settle();
    }
  }

  /** Durable under its final name; returns that name relative to the target, or undefined if the name was refused. */
  async #commit(file: PendingFile, data: FileData): Promise<string | undefined> {
    const entry = file.entry;
    if (file.path === undefined) {
      this.#lastPath = file.relative;
      return file.relative;
    }
    const onConflict = this.#options.onConflict;
    if (data.kind === 'staged') {
      const staged = data.staged as StagedFile;
      try {
        // A single file keeps version 1's folder fsync; a folder's is done once, when it is finished.
        const path = await withKeepAlives(this.#channel, this.#options.idleTimeoutMs, () =>
          commitTarget(staged, file.request as TransferRequest, { onConflict, mtimeMs: entry.mtime, syncFolder: this.#targets === undefined }, this.#policy),
        );
        this.#lastPath = path;
        return joinRelative(file.relative, path);
      } catch (error) {
        if (error instanceof RefusedError) {
          // The name was taken meanwhile: the data (a partial too, and its lock) goes.
          await staged.discard();
          return this.#refusedAfterData(entry, error);
        }
        throw error;
      }
    }
    const temp = writeSmallFile(file.path, data.buffer, { mode: entry.mode, mtimeMs: entry.mtime });
    let path = file.path;
    for (let pick = 1; ; pick++) {
      try {
        placeSmallFile(temp, path, onConflict === 'overwrite');
        if (file.request) file.request.committed = true;
        this.#lastPath = path;
        return joinRelative(file.relative, path);
      } catch (error) {
        if (!isNameTaken(error)) throw error;
        const free = onConflict === 'rename' && pick < 4 ? await pickFreeName(file.path, (candidate) => this.#policy.isInFlight?.(candidate) ?? false) : undefined;
        if (free === undefined) {
          discardSmallFile(temp);
          return this.#refusedAfterData(entry, new RefusedError('exists', `a file named ${quoteName(entry.path)} appeared on the receiver while it was being received`, { remedy: 'rename' }));
        }
        path = free;
      }
    }
  }

  async #refusedAfterData(entry: Entry, error: RefusedError): Promise<undefined> {
    await this.#result({ id: entry.id, ok: false, code: error.code, reason: error.reason, message: boundedText(error.message) });
    this.#failed(entry, error);
    return undefined;
  }

  async #onEnd(frame: Frame): Promise<ReceivedSession> {
    const end = decodeEnd(frame);
    if (this.#pending.length > 0) throw new ProtocolError(`${this.#channel.peerRole} ended the session with ${this.#pending.length} stored entries still owed their data`);
    if (end.entries !== this.#counts.entries) throw new ProtocolError(`${this.#channel.peerRole} ended the session after ${this.#counts.entries} entries, saying ${end.entries}`);
    await this.#targets?.finish();
    const counts = this.#counts;
    const summary: Summary = { entries: counts.entries, stored: counts.files + counts.folders, skipped: counts.unchanged, failed: counts.failed, bytes: this.#bytes };
    await this.#send(FrameType.Summary, summary);
    await this.#flush();
    const single = counts.entries === 1 && (counts.files === 1 || counts.unchanged === 1);
    const target = this.#target;
    const where = target.kind === 'folder' ? target.root : target.kind === 'file' ? target.path : target.label;
    return { ...counts, path: single ? this.#lastPath : where, bytes: this.#bytes, hash: this.#open.hash, digest: single ? this.#lastDigest : '' };
  }

  /** Bytes accounted for, for progress against the Open's total: those received, and those the sender did not need to send. */
  #progress(): number {
    return this.#bytes + this.#counts.bytesSkipped;
  }

  /** Entries are done in order: finishes the folders every entry of which is done. */
  async #settle(): Promise<void> {
    const first = this.#pending[0];
    await this.#targets?.settle(first ? first.entry.id - 1 : this.#counts.entries);
  }

  #failed(entry: Entry, error: FtxError): void {
    this.#counts.failed += 1;
    if (this.#counts.failures.length < MAX_LISTED_FAILURES) {
      this.#counts.failures.push({
        path: entry.path,
        code: error.code,
        reason: error instanceof RefusedError ? error.reason : undefined,
        message: error.message,
        ...(error.remedy ? { remedy: error.remedy } : {}),
      });
    }
    this.#options.onEntry?.({ path: entry.path, type: entry.type, outcome: error instanceof RefusedError ? 'refused' : 'failed', bytes: 0, error });
  }

  async #discard(file: PendingFile): Promise<void> {
    const data = file.data;
    if (data?.kind === 'staged') await data.incoming.settle();
    await file.staged?.discard();
  }

  /** A failed session: what was on its way in is kept to resume (a resumable file) or removed; claims released. */
  async #abandonPending(): Promise<void> {
    this.#stopReads.abort();
    for (const file of this.#pending.splice(0)) {
      await this.#keepOrDiscard(file).catch(() => {});
      if (file.request) this.#policy.release(file.request);
    }
  }

  async #keepOrDiscard(file: PendingFile): Promise<void> {
    const staged = file.staged;
    if (!staged?.resumable) return this.#discard(file);
    if (file.data?.kind === 'staged') await file.data.incoming.settleKeeping();
    const kept = await staged.keep();
    if (kept > 0) this.#options.onPartialKept?.({ path: file.entry.path, bytes: kept, size: file.entry.size ?? 0 });
  }

  #result(result: Result): Promise<void> {
    return this.#send(FrameType.Result, result);
  }

  /**
   * Queues a frame for the sender. Decisions and Results are many small frames (two per
   * file): sent one write each, they cost a session of 10,000 small files 20,000 socket
   * writes. They go together when this side is about to wait for the sender (the
   * channel's beforeWaiting), or once 64 KiB have gathered.
   */
  #send(type: (typeof FrameType)[keyof typeof FrameType], body: object): Promise<void> {
    const frame = jsonFrame(type, body);
    this.#outbox.push(frame);
    this.#outboxBytes += frame.length;
    return this.#outboxBytes >= OUTBOX_BYTES ? this.#flush() : Promise.resolve();
  }

  /** Writes what is queued; resolves once it is handed to the socket. */
  #flush(): Promise<void> {
    if (this.#outbox.length === 0) return Promise.resolve();
    const bytes = this.#outbox.length === 1 ? (this.#outbox[0] as Buffer) : Buffer.concat(this.#outbox, this.#outboxBytes);
    this.#outbox.length = 0;
    this.#outboxBytes = 0;
    return this.#channel.write(bytes);
  }
}

/** A sender reading its prefix is given at least this rate (bytes/s) to answer an offer. */
const PREFIX_READ_FLOOR = 10 * 1024 * 1024;

/** The digest state of a partial's first `offset` bytes, read back from disk (the bytes the record vouches for). */
async function hashOwnPrefix(path: string, offset: number, algorithm: DigestName, signal: AbortSignal, chunkBytes: number | undefined): Promise<Hasher> {
  const hasher = await createHasher(algorithm);
  const read = await readFilePrefix(path, offset, (chunk) => hasher.update(chunk), { signal, chunkBytes });
  if (read !== offset) throw new Error(`the partial file holds ${read} bytes, not ${offset}`);
  return hasher;
}

/** Data into one buffer the size of the file. */
function bufferSink(data: { buffer: Buffer; filled: number }): DataSink {
  return {
    region: (limit) => data.buffer.subarray(data.filled, data.filled + limit),
    filled: (bytes) => {
      data.filled += bytes.length;
      return true;
    },
    room: () => Promise.resolve(),
  };
}


/** The stored path relative to the target: the entry's folder, and the name it got (maybe "name-N"). */
function joinRelative(relative: string, path: string): string {
  const slash = relative.lastIndexOf('/');
  return slash === -1 ? basename(path) : `${relative.slice(0, slash + 1)}${basename(path)}`;
}
