/**
 * A file that only appears under its final name once it is complete and durable.
 *
 * Bytes go to a hidden temporary file beside the target (same folder, so the final
 * step is a rename within one file system). seal() fsyncs the data, place() moves it
 * into place and fsyncs the folder so the new name itself survives a power cut. Until then
 * the final name is untouched; discard() removes the temporary file.
 *
 * Unless asked to overwrite, the move is link() + unlink(): link fails with EEXIST if
 * the target appeared in the meantime, so an existing file is never clobbered even by
 * a race with another writer (rename() would silently replace it). Two receivers of
 * the same name never interleave bytes: each has its own temporary file.
 *
 * File systems without hard links (FAT, exFAT, some SMB shares: link() fails with
 * EPERM or ENOTSUP) get the next best thing: the final name is claimed with an
 * O_CREAT|O_EXCL placeholder, which fails if the name is taken, and the data is renamed
 * over that placeholder, which is ours. Only a writer that deletes our placeholder in
 * the instant between the two steps could be overwritten.
 */
import { randomBytes } from 'node:crypto';
import { constants, type Dirent } from 'node:fs';
import { link, lstat, open, readdir, rename, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { localIoError } from '../errors.js';
import { encodeRecord, nextRecordPath, partialFileLocked, removePartial, unlockPartial, type PartialPaths, type PartialRecord } from './partial.js';
import { CASE_PROBE_PREFIX, isTemporaryName, RESUME_LOCK_SUFFIX, RESUME_RECORD_SUFFIX, stemOf, TEMP_PREFIX, TEMP_SUFFIX } from './temp-names.js';



/** Keeps temporary names under NAME_MAX (255 bytes) whatever the final name's length. */
const MAX_TEMP_STEM_BYTES = 200;

/** What to do when the final name is taken. */
export const CONFLICT_POLICIES = ['refuse', 'rename', 'overwrite'] as const;
export type ConflictPolicy = (typeof CONFLICT_POLICIES)[number];

/** What link() fails with where the file system has no hard links. */
const NO_HARD_LINKS = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS']);

/** "db.dump" -> "db-3.dump"; "backup.tar.gz" -> "backup-3.tar.gz"; ".profile" -> ".profile-3". */
export function numberedName(path: string, n: number): string {
  const name = basename(path);
  const firstDot = name.indexOf('.', 1);
  const stem = firstDot === -1 ? name : name.slice(0, firstDot);
  const extension = firstDot === -1 ? '' : name.slice(firstDot);
  return join(dirname(path), `${stem}-${n}${extension}`);
}

/** Past this number, give up looking for a free "stem-N" name (2^40 numbered copies). */
const MAX_NUMBER = 2 ** 40;

/**
 * The first free name among `path`, "stem-1.ext", "stem-2.ext", …, in O(log n) probes:
 * doubling until a free number, then bisecting back to a free number right after a
 * taken one. Numbered copies pile up in order (a nightly backup under --on-conflict
 * rename), so the taken numbers are nearly always 1..k and this finds k+1 in about
 * 2·log2(k) probes, where trying each number in turn took a thousand link() calls for a
 * thousand copies. With holes it finds some free number after a taken one. `isTaken`
 * adds the names the caller knows are spoken for (transfers in flight).
 */
export async function pickFreeName(path: string, isTaken: (candidate: string) => boolean): Promise<string | undefined> {
  const candidate = (n: number) => (n === 0 ? path : numberedName(path, n));
  const taken = async (n: number) => isTaken(candidate(n)) || (await lstat(candidate(n)).then(() => true, () => false));
  if (!(await taken(0))) return path;
  let low = 0;
  let high = 1;
  while (await taken(high)) {
    low = high;
    high *= 2;
    if (high > MAX_NUMBER) return undefined;
  }
  while (high - low > 1) {
    const middle = Math.floor((low + high) / 2);
    if (await taken(middle)) low = middle;
    else high = middle;
  }
  return candidate(high);
}

export function temporaryNameFor(finalPath: string): string {
  const stem = stemOf(basename(finalPath), MAX_TEMP_STEM_BYTES);
  return join(dirname(finalPath), `${TEMP_PREFIX}${stem}.${randomTag()}${TEMP_SUFFIX}`);
}

/** Random bytes for temporary names, drawn 1 KiB at a time: one call per file cost a session of small files ~5% of its time. */
let tagPool = Buffer.alloc(0);
let tagAt = 0;

/** 8 hex digits: the temporary name's unguessable part (O_EXCL makes a clash an error, never a reuse). */
function randomTag(): string {
  if (tagAt + 4 > tagPool.length) {
    tagPool = randomBytes(1024);
    tagAt = 0;
  }
  tagAt += 4;
  return tagPool.toString('hex', tagAt - 4, tagAt);
}

/**
 * A temporary file found in a folder: left by a transfer that never finished (its
 * receiver was killed, or the machine lost power), or one another receiver is writing
 * right now. A live receiver removes its own; others are removed only once untouched for
 * a while (removeStaleLeftovers), since another receiver may own a young one.
 */
export interface Leftover {
  path: string;
  bytes: number;
  modified: Date;
}

/** How deep a recursive sweep looks (a serving receiver's folder: identities, sent folders). */
const MAX_SWEEP_DEPTH = 64;

/**
 * The temporary files in `folder`; with `recursive`, in the folders under it too (never
 * through a symbolic link), so partials left inside a sent folder or an identity's
 * folder are found as well.
 */
export async function findLeftovers(folder: string, options: { recursive?: boolean } = {}): Promise<Leftover[]> {
  const leftovers: Leftover[] = [];
  const folders = [{ path: folder, depth: 0 }];
  for (let next = folders.pop(); next !== undefined; next = folders.pop()) {
    let entries: Dirent[];
    try {
      entries = await readdir(next.path, { withFileTypes: true });
    } catch {
      continue;
    }
    for (const entry of entries) {
      const path = join(next.path, entry.name);
      if (entry.isDirectory()) {
        if (options.recursive && next.depth < MAX_SWEEP_DEPTH) folders.push({ path, depth: next.depth + 1 });
      } else if (entry.isFile() && isTemporaryName(entry.name)) {
        const stats = await lstat(path).catch(() => undefined);
        if (stats?.isFile()) leftovers.push({ path, bytes: stats.size, modified: stats.mtime });
      }
    }
  }
  return leftovers;
}

/**
 * Removes temporary files in `folder` that nothing has written to for `maxAgeMs`: a
 * transfer in progress touches its file every few seconds at most (slower ones are cut
 * by the minimum rate and the idle timeout), so a file that old belongs to a transfer
 * that died with its receiver (kill -9, a power cut). Returns what it removed and what
 * it left (younger files, which another live receiver may own).
 */
export async function removeStaleLeftovers(folder: string, maxAgeMs: number, options: { recursive?: boolean; now?: number } = {}): Promise<{ removed: Leftover[]; kept: Leftover[] }> {
  const now = options.now ?? Date.now();
  const removed: Leftover[] = [];
  const kept: Leftover[] = [];
  for (const leftover of await findLeftovers(folder, options)) {
    // A partial a live transfer holds is never old, however long since its last write.
    if (now - leftover.modified.getTime() < maxAgeMs || partialFileLocked(leftover.path)) {
      // A young case probe is a receiver starting up right now, not a cut transfer; a
      // record and a lock go with their partial, which is what is reported.
      const name = basename(leftover.path);
      if (!name.startsWith(CASE_PROBE_PREFIX) && !name.endsWith(RESUME_RECORD_SUFFIX) && !name.endsWith(RESUME_LOCK_SUFFIX)) kept.push(leftover);
      continue;
    }
    // Its age looked at again right before (the lock was, just above): a walk of a large
    // folder takes a while, and a partial may have been kept or resumed meanwhile.
    const fresh = await lstat(leftover.path).catch(() => undefined);
    if (!fresh?.isFile() || Date.now() - fresh.mtimeMs < maxAgeMs) continue;
    try {
      await unlink(leftover.path);
      removed.push(leftover);
    } catch {
      // Gone already, or not ours to remove (permissions): leave it.
    }
  }
  return { removed, kept };
}

/** How often a resumable file's durable prefix is brought up to date while data arrives. */
export const CHECKPOINT_EVERY_MS = 1000;

/** What a resumable staged file records about itself (fs/partial.ts), besides its durable bytes. */
export type ResumableFile = Omit<PartialRecord, 'version' | 'durable' | 'created'> & { created?: string };

export class StagedFile {
  readonly finalPath: string;
  readonly tempPath: string;
  #handle: FileHandle | undefined;
  #state: 'open' | 'sealed' | 'committed' | 'discarded' | 'kept' = 'open';
  #bytesWritten = 0;
  /** Resumable files only: their record, where it goes, and what it last said was durable. */
  readonly #resumable: { record: PartialRecord; paths: PartialPaths } | undefined;
  /** Start positions of the writes in flight: the bytes before the lowest are all written. */
  readonly #writing = new Set<number>();
  /** End of the furthest write completed. */
  #writtenTo = 0;
  /** Where a write failed: nothing from there on is counted as written through. */
  #failedAt = Number.POSITIVE_INFINITY;
  /**
   * The sealed file's identity (device, inode, change time to the nanosecond: an inode
   * number alone is soon reused): placing it checks the name still leads to it.
   */
  #identity: { dev: bigint; ino: bigint; ctimeNs: bigint } | undefined;
  #checkpoint: Promise<void> | undefined;
  #checkpointAt = 0;

  private constructor(finalPath: string, tempPath: string, handle: FileHandle, resumable?: { record: PartialRecord; paths: PartialPaths }, offset = 0) {
    this.finalPath = finalPath;
    this.tempPath = tempPath;
    this.#handle = handle;
    this.#resumable = resumable;
    this.#bytesWritten = offset;
    this.#writtenTo = offset;
    this.#checkpointAt = performance.now();
  }

  /**
   * A staged file that outlives a cut transfer: written under the partial name fixed by
   * `paths` (fs/partial.ts), with its record brought up to date as its data becomes
   * durable, and kept (keep()) rather than removed when the transfer fails. The caller
   * holds the partial's lock (lockPartial), which this file gives back when it is done;
   * whatever is at those names is replaced: the caller has decided it is not resumable.
   */
  static async createResumable(finalPath: string, mode: number, paths: PartialPaths, file: ResumableFile): Promise<StagedFile> {
    removePartial(paths);
    let handle: FileHandle;
    try {
      handle = await open(paths.data, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode & 0o777);
    } catch (error) {
      throw localIoError(error, 'create a file in', dirname(finalPath));
    }
    const record: PartialRecord = { version: 1, ...file, created: file.created ?? new Date().toISOString(), durable: 0 };
    return new StagedFile(finalPath, paths.data, handle, { record, paths });
  }

  /**
   * A kept partial, reopened to go on from `offset` (its durable bytes): anything beyond
   * is cut off, since no record vouches for it. The caller holds the partial's lock, as
   * for createResumable; if this fails, the lock is still the caller's.
   */
  static async reopen(finalPath: string, paths: PartialPaths, record: PartialRecord, offset: number): Promise<StagedFile> {
    let handle: FileHandle | undefined;
    try {
      handle = await open(paths.data, constants.O_WRONLY | constants.O_NOFOLLOW);
      const stats = await handle.stat();
      if (!stats.isFile() || stats.nlink !== 1 || stats.size < offset) throw Object.assign(new Error('the partial file is not what its record says'), { code: 'EINVAL' });
      await handle.truncate(offset);
    } catch (error) {
      await handle?.close().catch(() => {});
      throw localIoError(error, 'resume', finalPath);
    }
    return new StagedFile(finalPath, paths.data, handle, { record: { ...record, durable: offset }, paths }, offset);
  }

  /** Whether a failed transfer keeps this file for resume (keep()) instead of removing it. */
  get resumable(): boolean {
    return this.#resumable !== undefined;
  }

  /** Bytes at the start of the file that every write has reached (what a checkpoint may record). */
  get writtenThrough(): number {
    let lowest = Math.min(this.#writtenTo, this.#failedAt);
    for (const start of this.#writing) lowest = Math.min(lowest, start);
    return lowest;
  }

  /** Bytes the record says are durable (0 for a file that is not resumable). */
  get durableBytes(): number {
    return this.#resumable?.record.durable ?? 0;
  }

  /**
   * Starts the file over from its first byte (a resumed prefix that did not match): the
   * old bytes and what the record said of them are dropped.
   */
  async restart(): Promise<void> {
    const handle = this.#requireOpen();
    await this.#checkpoint;
    await handle.truncate(0);
    this.#bytesWritten = 0;
    this.#writtenTo = 0;
    if (this.#resumable) {
      this.#resumable.record.durable = 0;
      await this.#writeRecord();
    }
  }

  /**
   * Makes the bytes written so far durable, then records them: fdatasync first, the
   * record after, so the record never counts a byte the disk may not have. One at a time.
   */
  checkpoint(): Promise<void> {
    this.#checkpoint ??= this.#syncAndRecord().finally(() => {
      this.#checkpoint = undefined;
      this.#checkpointAt = performance.now();
    });
    return this.#checkpoint;
  }

  async #syncAndRecord(): Promise<void> {
    const resumable = this.#resumable;
    const handle = this.#handle;
    if (!resumable || !handle) return;
    const through = this.writtenThrough;
    if (through <= resumable.record.durable) return;
    await handle.datasync();
    resumable.record.durable = through;
    await this.#writeRecord();
  }

  async #writeRecord(): Promise<void> {
    const resumable = this.#resumable as { record: PartialRecord; paths: PartialPaths };
    // Written beside, then renamed over the record: a crash between leaves the last whole
    // record, never a torn one. No fsync of its own: whichever version survives a power cut
    // counts only bytes synced before it was written.
    const next = nextRecordPath(resumable.paths);
    const record = await open(next, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW, 0o600);
    try {
      await record.write(encodeRecord(resumable.record), 0, undefined, 0);
    } finally {
      await record.close();
    }
    await rename(next, resumable.paths.record);
  }

  /**
   * A cut transfer: keeps what is written for the next attempt (fdatasync, then the
   * record), and closes. Returns the bytes kept. A file that is not resumable, or whose
   * bytes cannot be made durable, is removed instead (0 kept).
   */
  async keep(): Promise<number> {
    if (this.#state !== 'open' || !this.#resumable) {
      await this.discard();
      return 0;
    }
    try {
      await this.#checkpoint;
      await this.checkpoint();
      await (this.#handle as FileHandle).close();
      this.#handle = undefined;
      this.#state = 'kept';
    } catch {
      await this.discard();
      return 0;
    }
    if (this.#resumable.record.durable === 0) removePartial(this.#resumable.paths);
    unlockPartial(this.#resumable.paths);
    return this.#resumable.record.durable;
  }

  /**
   * `mode` is the sender's permission bits: the file is created with them as `cp` and
   * `scp` do, so the umask applies and a private file (0600) stays private. Only the
   * rwx bits are used: setuid, setgid and sticky from a remote peer are dropped.
   */
  static async create(finalPath: string, mode = 0o666): Promise<StagedFile> {
    const tempPath = temporaryNameFor(finalPath);
    let handle: FileHandle;
    try {
      // O_EXCL: never reuse or follow anything already at the temporary name.
      handle = await open(tempPath, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode & 0o777);
    } catch (error) {
      throw localIoError(error, 'create a file in', dirname(finalPath));
    }
    return new StagedFile(finalPath, tempPath, handle);
  }

  /** Bytes written to the temporary file so far (what a space reservation no longer needs). */
  get bytesWritten(): number {
    return this.#bytesWritten;
  }

  /**
   * Writes `bytes` at `position` of the temporary file, all of them (a write may be short:
   * a signal, a nearly full disk). Writes at explicit positions, so several may be in
   * flight at once without landing out of order.
   */
  async writeAt(bytes: Buffer, position: number): Promise<void> {
    const handle = this.#requireOpen();
    this.#writing.add(position);
    let offset = 0;
    try {
      while (offset < bytes.length) {
        const { bytesWritten } = await handle.write(bytes, offset, bytes.length - offset, position + offset);
        if (bytesWritten === 0) throw Object.assign(new Error('no space left on device'), { code: 'ENOSPC' });
        offset += bytesWritten;
        this.#bytesWritten += bytesWritten;
      }
    } catch (error) {
      // A failed write leaves a hole: nothing past it is counted as written through.
      this.#failedAt = Math.min(this.#failedAt, position + offset);
      throw error;
    } finally {
      this.#writing.delete(position);
    }
    this.#writtenTo = Math.max(this.#writtenTo, position + offset);
    if (this.#resumable && performance.now() - this.#checkpointAt >= CHECKPOINT_EVERY_MS) {
      // In the background: a checkpoint's failure only means the record stays behind.
      this.checkpoint().catch(() => {});
    }
  }

  /**
   * Makes the data durable under its temporary name: sets the modification time (the
   * sender's, so a backup keeps the date of what it copies), fsyncs, closes. Then
   * place() gives it a final name. On failure the temporary file is removed.
   */
  async seal(options: { mtimeMs?: number } = {}): Promise<void> {
    const handle = this.#requireOpen();
    try {
      await this.#checkpoint;
      if (options.mtimeMs !== undefined) await handle.utimes(Date.now() / 1000, options.mtimeMs / 1000);
      await handle.sync();
      if (this.#resumable) {
        const stats = await handle.stat({ bigint: true });
        this.#identity = { dev: stats.dev, ino: stats.ino, ctimeNs: stats.ctimeNs };
      }
      await handle.close();
      this.#handle = undefined;
      this.#state = 'sealed';
    } catch (error) {
      await this.discard();
      throw localIoError(error, 'store', this.finalPath);
    }
  }

  /**
   * Gives the sealed data the name `finalPath` (in the same folder as the target) and
   * fsyncs the folder. Without `replace`, a name that is taken fails with an error whose
   * code is EEXIST (see isNameTaken) and the data stays staged, so the caller may try
   * another name; any other failure removes it.
   */
  async place(finalPath: string, options: { replace: boolean; syncFolder?: boolean }): Promise<void> {
    if (this.#state !== 'sealed') throw new Error(`staged file ${this.tempPath} is ${this.#state}, not sealed`);
    try {
      // A partial's name is fixed, not random: if another writer replaced it (a second
      // process that took over a lock it thought stale), the name leads to that writer's
      // file, which must never be given the final name in place of this one.
      if (this.#identity) {
        const there = await lstat(this.tempPath, { bigint: true }).catch(() => undefined);
        if (there?.ino !== this.#identity.ino || there.dev !== this.#identity.dev || there.ctimeNs !== this.#identity.ctimeNs) {
          throw Object.assign(new Error('its partial file was replaced by another writer while it was received'), { code: 'ESTALE' });
        }
      }
      if (options.replace) await rename(this.tempPath, finalPath);
      else await placeWithoutClobbering(this.tempPath, finalPath);
      this.#state = 'committed';
      // The file is whole under its name: its record describes nothing any more.
      if (this.#resumable) {
        await unlink(this.#resumable.paths.record).catch(() => {});
        unlockPartial(this.#resumable.paths);
      }
    } catch (error) {
      if (isNameTaken(error)) throw error;
      await this.discard();
      throw localIoError(error, 'store', finalPath);
    }
    // A session fsyncs each folder once, when its entries are done (session/entry-targets.ts).
    if (options.syncFolder !== false) await syncFolder(dirname(finalPath));
  }

  /** Removes the temporary file. Safe to call more than once, and after commit. */
  async discard(): Promise<void> {
    if (this.#state === 'committed' || this.#state === 'discarded' || this.#state === 'kept') return;
    this.#state = 'discarded';
    const handle = this.#handle;
    this.#handle = undefined;
    await this.#checkpoint?.catch(() => {});
    await handle?.close().catch(() => {});
    if (this.#resumable) await unlink(this.#resumable.paths.record).catch(() => {});
    await unlink(this.tempPath).catch(() => {});
    if (this.#resumable) unlockPartial(this.#resumable.paths);
  }

  #requireOpen(): FileHandle {
    if (this.#state !== 'open' || !this.#handle) throw new Error(`staged file ${this.tempPath} is ${this.#state}`);
    return this.#handle;
  }
}

/** True for the error place() throws when the final name is taken. */
export function isNameTaken(error: unknown): boolean {
  return (error as NodeJS.ErrnoException | undefined)?.code === 'EEXIST';
}

/** link + unlink, or on file systems without hard links, an exclusive placeholder + rename. */
async function placeWithoutClobbering(tempPath: string, finalPath: string): Promise<void> {
  try {
    await link(tempPath, finalPath);
  } catch (error) {
    if (!NO_HARD_LINKS.has((error as NodeJS.ErrnoException).code ?? '')) throw error;
    const placeholder = await open(finalPath, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    await placeholder.close();
    try {
      await rename(tempPath, finalPath);
    } catch (renameError) {
      await unlink(finalPath).catch(() => {});
      throw renameError;
    }
    return;
  }
  await unlink(tempPath);
}

/**
 * fsync on the folder makes the rename durable. Some file systems refuse to open or
 * sync folders (EISDIR, EINVAL on some network mounts); the data is synced anyway.
 */
export async function syncFolder(folder: string): Promise<void> {
  let handle: FileHandle | undefined;
  try {
    handle = await open(folder, constants.O_RDONLY | constants.O_DIRECTORY);
    await handle.sync();
  } catch {
    // Best effort: see above.
  } finally {
    await handle?.close().catch(() => {});
  }
}
