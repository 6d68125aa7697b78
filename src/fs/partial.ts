/**
 * Partial files kept for resume: what a cut transfer leaves on the receiver so the next
 * attempt sends only the rest.
 *
 * A resumable transfer writes to a hidden file beside its target whose name is fixed by
 * the target's name and the sender's identity (so the next attempt finds it, and another
 * identity never does): `.NAME.KEY.ftx-part`, KEY being 12 hex digits of
 * SHA-256(identity, NUL, NAME). Beside it, a record `.NAME.KEY.ftx-resume` says what the
 * bytes are: the target's name, the size and mtime the sender announced, the digest,
 * the identity, when the partial was created, and how many bytes are durable.
 *
 * The record is honest by its order: it is written only after an fdatasync of the data
 * it counts, never before, so after kill -9 or a power cut it never claims a byte the
 * disk may not have. A record that is torn or missing is simply not a record: the
 * partial is then not resumable, and is removed. Nothing here trusts the bytes
 * themselves: the receiver hashes its prefix from disk and the sender proves it has the
 * same (session/receive-session.ts), so a damaged partial is caught before it is used.
 *
 * One writer at a time, whatever the process: a lock file `.NAME.KEY.ftx-lock` made with
 * O_EXCL holds the writer's process id. A lock whose process is gone (kill -9) is taken
 * over; one whose process lives means the partial is in use, and a second transfer of
 * the same name gets a temporary file of its own (not resumable) instead of touching it.
 *
 * Bookkeeping: naming, locking, reading and validating records. StagedFile writes them.
 */
import { createHash } from 'node:crypto';
import { closeSync, constants, fstatSync, lstatSync, openSync, readSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { isDigestName, type DigestName } from '../digest/registry.js';
import { RESUME_LOCK_SUFFIX, RESUME_RECORD_SUFFIX, stemOf, TEMP_PREFIX, TEMP_SUFFIX } from './temp-names.js';

/** Keeps partial names under NAME_MAX (255 bytes) whatever the final name's length. */
const MAX_STEM_BYTES = 200;

/** A record is a few hundred bytes; anything longer is not one of ours. */
const MAX_RECORD_BYTES = 4096;

export interface PartialRecord {
  version: 1;
  /** The target's name (its folder is where the partial is). */
  target: string;
  /** What the sender announced: a different size or mtime is a different file. */
  size: number;
  mtime: number | null;
  hash: DigestName;
  /** The sender's identity (TLS keys), or null for a sender without one. */
  identity: string | null;
  /** When the first attempt started (ISO 8601). */
  created: string;
  /** Bytes from the start of the file that were fdatasync'd before this record was written. */
  durable: number;
}

export interface PartialPaths {
  data: string;
  record: string;
  lock: string;
}

/** Where the partial of `finalPath` for `identity` lives. */
export function partialPaths(finalPath: string, identity: string | null): PartialPaths {
  const name = basename(finalPath);
  const stem = stemOf(name, MAX_STEM_BYTES);
  const key = createHash('sha256').update(`${identity ?? ''}\0${name}`).digest('hex').slice(0, 12);
  const base = join(dirname(finalPath), `${TEMP_PREFIX}${stem}.${key}`);
  return { data: `${base}${TEMP_SUFFIX}`, record: `${base}${RESUME_RECORD_SUFFIX}`, lock: `${base}${RESUME_LOCK_SUFFIX}` };
}

/** A lock this young with no process id in it yet is being written right now, not left by a crash. */
const UNWRITTEN_LOCK_MS = 10_000;

/**
 * Takes the partial's lock for this process: true when it is ours now, false when a live
 * process (this one included: another transfer) holds it. A lock left by a process that
 * is gone is taken over. Synchronous, so a caller that checks and takes it cannot be
 * overtaken by another transfer of this process in between.
 */
export function lockPartial(paths: PartialPaths): boolean {
  let fd: number;
  try {
    fd = openSync(paths.lock, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST' || lockHeld(paths.lock)) return false;
    return takeOverLock(paths);
  }
  try {
    writeSync(fd, `${process.pid}\n`);
  } finally {
    closeSync(fd);
  }
  return true;
}

/**
 * A dead writer's lock, replaced in one step: our own lock file is renamed over it, then
 * read back. Two processes taking over at once both rename; the lock then names the last,
 * and the other sees that and backs off (a place() that finds its partial replaced is the
 * last line of defence: staged-file.ts).
 */
function takeOverLock(paths: PartialPaths): boolean {
  const mine = `${paths.lock.slice(0, -RESUME_LOCK_SUFFIX.length)}.${process.pid}${RESUME_LOCK_SUFFIX}`;
  try {
    const fd = openSync(mine, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW, 0o600);
    try {
      writeSync(fd, `${process.pid}\n`);
    } finally {
      closeSync(fd);
    }
    renameSync(mine, paths.lock);
  } catch {
    try {
      unlinkSync(mine);
    } catch {
      // Never made.
    }
    return false;
  }
  return readLockHolder(paths.lock) === process.pid;
}

/** Gives the lock back (the transfer is done, kept, or discarded). */
export function unlockPartial(paths: PartialPaths): void {
  try {
    unlinkSync(paths.lock);
  } catch {
    // Gone already (a sweep, a hand).
  }
}

/** Whether a live process holds the partial's lock (a lock without a process id counts while it is young). */
export function partialLocked(paths: PartialPaths): boolean {
  return lockHeld(paths.lock);
}

function lockHeld(lock: string, now = Date.now()): boolean {
  const stats = lstatSync(lock, { throwIfNoEntry: false });
  if (!stats) return false;
  const holder = readLockHolder(lock);
  if (holder === undefined) return now - stats.mtimeMs < UNWRITTEN_LOCK_MS;
  return isAlive(holder);
}

function readLockHolder(path: string): number | undefined {
  const text = readSmallFile(path, 32)?.trim();
  return text !== undefined && /^[1-9]\d{0,9}$/.test(text) ? Number(text) : undefined;
}

/** The first `maxBytes` of a small regular file, as text; undefined when it is missing, a link, or unreadable. */
function readSmallFile(path: string, maxBytes: number): string | undefined {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch {
    return undefined;
  }
  try {
    if (!fstatSync(fd).isFile()) return undefined;
    const bytes = Buffer.alloc(maxBytes);
    return bytes.subarray(0, readSync(fd, bytes, 0, bytes.length, 0)).toString('utf8');
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}

/** Signal 0 asks whether the process exists; EPERM means it does (another user's). */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** What the receiver knows of an incoming file, to match a partial against. */
export interface PartialWanted {
  size: number;
  mtime: number | null;
  identity: string | null;
}

export type PartialLookup =
  /** Nothing there (or a partial with no record yet: not resumable). */
  | { kind: 'none'; paths: PartialPaths; leftover: boolean }
  /** A partial to resume from `offset`. */
  | { kind: 'usable'; paths: PartialPaths; record: PartialRecord; offset: number }
  /** A partial that must not be used, and why (it is removed before a new one is made). */
  | { kind: 'unusable'; paths: PartialPaths; why: string };

/**
 * Looks for the partial of `finalPath` and says whether it can be resumed. Synchronous:
 * two lstat calls and a read of a few hundred bytes, made once per large file.
 */
export function lookUpPartial(finalPath: string, wanted: PartialWanted, maxAgeMs: number, now = Date.now()): PartialLookup {
  const paths = partialPaths(finalPath, wanted.identity);
  const data = lstatSync(paths.data, { throwIfNoEntry: false });
  if (!data) return { kind: 'none', paths, leftover: lstatSync(paths.record, { throwIfNoEntry: false }) !== undefined };
  if (!data.isFile()) return { kind: 'unusable', paths, why: 'something other than a file is where its partial file would be' };
  const record = readRecord(paths.record);
  if (!record) return { kind: 'none', paths, leftover: true };
  if (maxAgeMs > 0 && now - data.mtimeMs >= maxAgeMs) return { kind: 'unusable', paths, why: 'its partial file has expired' };
  if (record.target !== basename(finalPath) || record.identity !== wanted.identity) return { kind: 'none', paths, leftover: true };
  if (record.size !== wanted.size || !sameTime(record.mtime, wanted.mtime)) {
    return { kind: 'unusable', paths, why: 'the file changed since the earlier attempt (its size or modification time differs)' };
  }
  // Every byte may be in (the cut came after the data, before the trailer): the sender then sends only its trailer.
  if (record.durable === 0) return { kind: 'none', paths, leftover: true };
  if (record.durable > data.size) return { kind: 'unusable', paths, why: 'its partial file is shorter than its record says' };
  return { kind: 'usable', paths, record, offset: record.durable };
}

/** Removes a partial and its record (either may be missing). */
export function removePartial(paths: PartialPaths): void {
  for (const path of [paths.record, nextRecordPath(paths), paths.data]) {
    try {
      unlinkSync(path);
    } catch {
      // Gone already.
    }
  }
}

/** Where a record's next version is written before it is renamed over the record (so a crash leaves the last whole one). */
export function nextRecordPath(paths: PartialPaths): string {
  return `${paths.record.slice(0, -RESUME_RECORD_SUFFIX.length)}.next${RESUME_RECORD_SUFFIX}`;
}

/**
 * For a file of a partial (its data, record, next record or lock), whether a live process
 * holds that partial's lock: a sweep must not remove a partial a transfer is writing,
 * however long it has gone without a write (a slow sender, a 4 MiB buffer).
 */
export function partialFileLocked(path: string): boolean {
  const match = /^(.*?)(\.next)?(\.ftx-part|\.ftx-resume|\.ftx-lock)$/.exec(path);
  if (!match) return false;
  return lockHeld(`${match[1]}${RESUME_LOCK_SUFFIX}`);
}

/** A record as JSON, one line. */
export function encodeRecord(record: PartialRecord): Buffer {
  return Buffer.from(`${JSON.stringify(record)}\n`, 'utf8');
}

/** Reads and checks a record; undefined when it is missing, torn, a link, or not one of ours. */
export function readRecord(path: string): PartialRecord | undefined {
  const text = readSmallFile(path, MAX_RECORD_BYTES);
  return text === undefined ? undefined : parseRecord(text);
}

export function parseRecord(text: string): PartialRecord | undefined {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof body !== 'object' || body === null) return undefined;
  const r = body as Record<string, unknown>;
  const count = (value: unknown) => typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
  if (r.version !== 1 || typeof r.target !== 'string' || !count(r.size) || !count(r.durable) || !isDigestName(r.hash) || typeof r.created !== 'string') return undefined;
  if (!(r.mtime === null || (typeof r.mtime === 'number' && Number.isFinite(r.mtime)))) return undefined;
  if (!(r.identity === null || typeof r.identity === 'string')) return undefined;
  if ((r.durable as number) > (r.size as number)) return undefined;
  return {
    version: 1,
    target: r.target,
    size: r.size as number,
    mtime: r.mtime as number | null,
    hash: r.hash,
    identity: r.identity as string | null,
    created: r.created,
    durable: r.durable as number,
  };
}

/**
 * Modification times as the sender announced them, in ms: equal within a microsecond
 * (a float's round trip through JSON and the file system may move the last digits).
 */
function sameTime(a: number | null, b: number | null): boolean {
  if (a === null || b === null) return a === b;
  return Math.abs(a - b) < 0.001;
}
