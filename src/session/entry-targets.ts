/**
 * Where each entry of a session goes on the receiver, decided as its Entry frame arrives,
 * before any of its data: the path checked as untrusted input, its folders created by
 * the session itself or checked to be plain folders (never a symbolic link: a link
 * planted in the target must not redirect a write outside it, node-tar's advisories being
 * the model), the conflict policy applied, the name and space claimed from the owner.
 *
 * Entries arrive depth first, a folder before its contents (fs/walk.ts sends them so). A
 * stack of the folders the current entry is in, bounded by the path depth limit, is the
 * state kept: a folder leaves the stack when an entry outside it arrives. It is then
 * finished (the sender's mode and time, then an fsync so the names in it are durable)
 * once every entry before that one is done: entries are decided ahead of their data
 * (pipelining), so the files still to come into it must land first. The folders waiting
 * for that are few (those closed within the sender's lookahead), so memory stays flat
 * however many entries.
 *
 * Conflicts, per entry: 'refuse' refuses a file whose name is taken, and merges into a
 * folder that exists; 'overwrite' replaces files and merges folders; 'rename' gives an
 * entry at the top of the session whose name is taken a free "name-N" (a folder too, so
 * a session's folder lands whole beside the one already there), and does the same for a
 * file inside a folder that was merged.
 *
 * Synchronous lstat and mkdir: a session of 10,000 small files makes one call per entry,
 * and a thread-pool round trip each cost more than the rest of the entry's work (see
 * fs/walk.ts for the figures). In a folder the session created, a file's name cannot be
 * taken by anything but the session itself, so it is not even looked up: the no-clobber
 * commit catches a duplicate.
 */
import { chmodSync, lstatSync, mkdirSync, readdirSync, utimesSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { RefusalReason, Remedy } from '../errors.js';
import { caseFoldKey, MAX_NAME_BYTES } from '../fs/names.js';
import { isDotFileAtTop, splitEntryPath } from '../fs/entry-paths.js';
import { pickFreeName, syncFolder, type ConflictPolicy } from '../fs/staged-file.js';
import type { Entry } from '../protocol/messages.js';
import { formatBytes } from '../util/units.js';
import type { ConnectionPolicy, TransferRequest } from './policy.js';
import { freeBytesIn, quoteName } from './target.js';

export interface EntryTargetOptions {
  /** The folder the session lands in. */
  root: string;
  onConflict: ConflictPolicy;
  maxSize?: number | undefined;
  allowDotFiles?: boolean | undefined;
  /** Whether the root's file system treats names differing only by case as one (fs/case-folding.ts). */
  foldsCase?: boolean | undefined;
  /**
   * The sender resumes (its Open says so): a file already there with the size and
   * modification time the sender announces is skipped, not refused or sent again.
   */
  skipUnchanged?: boolean | undefined;
  /** Bytes of `path` a kept partial already holds (they need no free space); 0 if none. */
  heldBytes?: ((path: string, entry: Entry) => number) | undefined;
}

export type EntryDecision =
  | { action: 'store'; type: 'file'; path: string; relative: string; request: TransferRequest }
  /** The receiver has this file already (same size and modification time): no data moves. */
  | { action: 'skip'; type: 'file'; path: string; relative: string }
  | { action: 'store'; type: 'dir'; path: string; relative: string }
  | { action: 'refuse'; reason: RefusalReason; message: string; remedy?: Remedy };

/** A folder the current entries are in. */
interface OpenFolder {
  /** The path the sender gave it (canonical components joined by '/'). */
  sent: string;
  /** Where it is on disk. */
  disk: string;
  /** Relative to the root, as stored (differs from `sent` after a rename). */
  relative: string;
  /** Made by this session: it gets the sender's mode and time once its contents are in. */
  created: boolean;
  mode: number | undefined;
  mtime: number | undefined;
  /** Refused: every entry inside it is refused too. */
  refused: boolean;
}

/** A folder no entry goes into any more, finished once the entries up to `after` are done. */
interface ClosingFolder {
  folder: OpenFolder;
  after: number;
}

/** Files at least this large get a free-space check of their own (smaller ones fail with ENOSPC). */
const SPACE_CHECK_BYTES = 1024 * 1024;

const ROOT_SENT = '';

export class EntryTargets {
  readonly #options: EntryTargetOptions;
  readonly #policy: ConnectionPolicy;
  readonly #stack: OpenFolder[];
  readonly #closing: ClosingFolder[] = [];

  constructor(options: EntryTargetOptions, policy: ConnectionPolicy) {
    this.#options = options;
    this.#policy = policy;
    this.#stack = [{ sent: ROOT_SENT, disk: options.root, relative: '', created: false, mode: undefined, mtime: undefined, refused: false }];
  }

  /**
   * Decides an entry. Folders it is not in any more are closed: finished by
   * settle() once the entries before this one are done.
   */
  async decide(entry: Entry): Promise<EntryDecision> {
    const split = splitEntryPath(entry.path);
    if ('problem' in split) return refuse('bad-name', `cannot store ${quoteName(entry.path)}: ${split.problem}`, 'rename');
    const components = split.components;
    const parentSent = components.slice(0, -1).join('/');
    const name = components[components.length - 1] as string;
    this.#closeUntil(parentSent, entry.id - 1);
    const parent = this.#stack[this.#stack.length - 1] as OpenFolder;
    const quoted = quoteName(components.join('/'));
    if (parent.sent !== parentSent) return refuse('bad-name', `cannot store ${quoted}: the folder it is in was not sent before it`);
    if (parent.refused) return refuse('bad-name', `not storing ${quoted}: the folder it is in was refused`);
    if (this.#stack.length === 1 && isDotFileAtTop(components) && !this.#options.allowDotFiles) {
      return this.#refuseFolder(entry, components, refuse('bad-name', `cannot store ${quoted}: this receiver refuses names that start with a dot (hidden files such as .bashrc)`, 'allow-dotfiles'));
    }
    if (entry.type === 'dir') return this.#openFolder(entry, components, parent, name, quoted);
    return this.#placeFile(entry, parent, name, quoted);
  }

  /** Finishes the closed folders whose entries are all done (every entry up to `doneThrough`). */
  async settle(doneThrough: number): Promise<void> {
    while (this.#closing.length > 0 && (this.#closing[0] as ClosingFolder).after <= doneThrough) {
      await finishFolder((this.#closing.shift() as ClosingFolder).folder);
    }
  }

  /** The session's end, every entry done: finishes every folder, innermost first, then the root. */
  async finish(): Promise<void> {
    this.#closeUntil(ROOT_SENT, 0);
    await this.settle(Number.MAX_SAFE_INTEGER);
    await syncFolder(this.#options.root);
  }

  async #openFolder(entry: Entry, components: string[], parent: OpenFolder, name: string, quoted: string): Promise<EntryDecision> {
    let disk = join(parent.disk, name);
    let relative = join(parent.relative, name);
    const existing = lstatSync(disk, { throwIfNoEntry: false });
    let created = false;
    if (existing && (this.#options.onConflict === 'rename' && (this.#stack.length === 1 || !parent.created))) {
      // Beside what is there, whole: the first free "name-N".
      const free = await pickFreeName(disk, () => false);
      if (!free || Buffer.byteLength(basename(free), 'utf8') > MAX_NAME_BYTES) return this.#refuseFolder(entry, components, refuse('exists', `a folder named ${quoted} and too many numbered copies of it exist on the receiver`, 'rename'));
      disk = free;
      relative = join(parent.relative, basename(free));
      mkdirSync(disk, { mode: 0o700 });
      created = true;
    } else if (!existing) {
      // 0700 until finished: nobody else writes into it meanwhile, and a read-only mode
      // from the sender would stop the session's own writes.
      mkdirSync(disk, { mode: 0o700 });
      created = true;
    } else if (existing.isSymbolicLink()) {
      return this.#refuseFolder(entry, components, refuse('exists', `${quoted} is a symbolic link on the receiver, which is never followed`, 'rename'));
    } else if (!existing.isDirectory()) {
      return this.#refuseFolder(entry, components, refuse('exists', `${quoted} is a file on the receiver, not a folder`, 'rename'));
    } else if (this.#options.foldsCase && !hasExactName(parent.disk, name)) {
      return this.#refuseFolder(entry, components, refuse('exists', `${quoted} differs only in case from a folder on the receiver, whose file system does not tell them apart`, 'rename'));
    }
    this.#stack.push({ sent: components.join('/'), disk, relative, created, mode: entry.mode, mtime: entry.mtime, refused: false });
    return { action: 'store', type: 'dir', path: disk, relative };
  }

  async #placeFile(entry: Entry, parent: OpenFolder, name: string, quoted: string): Promise<EntryDecision> {
    const size = entry.size;
    if (this.#options.maxSize !== undefined && size !== null && size > this.#options.maxSize) {
      return refuse('too-large', `${quoted} (${formatBytes(size)}) is more than the ${formatBytes(this.#options.maxSize)} this receiver takes`);
    }
    let path = join(parent.disk, name);
    const existing = parent.created && !this.#options.foldsCase ? undefined : lstatSync(path, { throwIfNoEntry: false });
    if (existing?.isDirectory()) return refuse('exists', `${quoted} is a folder on the receiver`, 'rename');
    if (existing && this.#options.foldsCase && !hasExactName(parent.disk, name)) {
      return refuse('exists', `${quoted} differs only in case from a file on the receiver, whose file system does not tell them apart`, 'rename');
    }
    if (existing && this.#options.skipUnchanged && existing.isFile() && isUnchanged(existing, entry) && (!this.#options.foldsCase || hasExactName(parent.disk, name))) {
      return { action: 'skip', type: 'file', path, relative: join(parent.relative, name) };
    }
    if (existing && this.#options.onConflict === 'refuse') return refuse('exists', `a file named ${quoted} already exists on the receiver`, 'rename');
    const freeBytes = size === null || size < SPACE_CHECK_BYTES ? undefined : await freeBytesIn(parent.disk);
    const needed = size === null ? 0 : size - (this.#options.heldBytes?.(path, entry) ?? 0);
    if (freeBytes !== undefined && needed > freeBytes) return refuse('no-space', `not enough free space on the receiver for ${quoted} (${formatBytes(size ?? 0)})`);
    const wanted = path;
    for (let pick = 1; pick <= 4; pick++) {
      if (existing && this.#options.onConflict === 'rename') {
        const free = await pickFreeName(wanted, (candidate) => this.#policy.isInFlight?.(candidate) ?? false);
        if (!free || Buffer.byteLength(basename(free), 'utf8') > MAX_NAME_BYTES) return refuse('exists', `${quoted} and too many numbered copies of it exist on the receiver`, 'rename');
        path = free;
      }
      const held = this.#options.heldBytes?.(path, entry) ?? 0;
      const request: TransferRequest = { path, size: size ?? 0, freeBytes, peer: '', held, bytesWritten: () => held };
      const refusal = this.#policy.claim(request);
      if (!refusal) return { action: 'store', type: 'file', path, relative: join(parent.relative, basename(path)), request };
      if (!(refusal.reason === 'exists' && this.#options.onConflict === 'rename')) return refuse(refusal.reason, refusal.message);
    }
    return refuse('exists', `a file named ${quoted} is being received right now`, 'rename');
  }

  /** A refused folder still goes on the stack, so what is inside it is refused with it. */
  #refuseFolder(entry: Entry, components: string[], decision: EntryDecision): EntryDecision {
    if (entry.type === 'dir') this.#stack.push({ sent: components.join('/'), disk: '', relative: '', created: false, mode: undefined, mtime: undefined, refused: true });
    return decision;
  }

  /** Closes folders until `sent` is the innermost open one (or the root, if it is not open). */
  #closeUntil(sent: string, after: number): void {
    const within = (folder: OpenFolder) => folder.sent === ROOT_SENT || sent === folder.sent || sent.startsWith(`${folder.sent}/`);
    while (this.#stack.length > 1 && !within(this.#stack[this.#stack.length - 1] as OpenFolder)) {
      const folder = this.#stack.pop() as OpenFolder;
      if (!folder.refused) this.#closing.push({ folder, after });
    }
  }
}

/**
 * The sender's time and mode come last: writing into the folder would change the time,
 * and a read-only mode would stop those writes. Then the fsync that makes its names durable.
 */
async function finishFolder(folder: OpenFolder): Promise<void> {
  if (folder.created) {
    try {
      if (folder.mtime !== undefined) utimesSync(folder.disk, Date.now() / 1000, folder.mtime / 1000);
      // As files get theirs through open(): under the umask, so a receiver that keeps what
      // it stores private (umask 077) gets private folders too.
      if (folder.mode !== undefined) chmodSync(folder.disk, folder.mode & 0o777 & ~processUmask());
    } catch {
      // Metadata is best effort (a file system without modes); the data is what counts.
    }
  }
  await syncFolder(folder.disk);
}

let umask: number | undefined;

/** The process's umask, read once (reading it has no side effect; nothing here sets it). */
function processUmask(): number {
  umask ??= process.umask();
  return umask;
}

/** What the sender announces matches the file there: same size, same modification time (as rsync's quick check). */
export function isUnchanged(stats: { size: number; mtimeMs: number }, entry: Pick<Entry, 'size' | 'mtime'>): boolean {
  return entry.size !== null && entry.mtime !== undefined && stats.size === entry.size && Math.abs(stats.mtimeMs - entry.mtime) < 0.001;
}

function refuse(reason: RefusalReason, message: string, remedy?: Remedy): EntryDecision {
  return remedy === undefined ? { action: 'refuse', reason, message } : { action: 'refuse', reason, message, remedy };
}

/** Whether `folder` holds an entry spelled exactly `name` (where case folds, lstat finds any spelling). */
function hasExactName(folder: string, name: string): boolean {
  const key = caseFoldKey(name);
  for (const entry of readdirSync(folder)) if (caseFoldKey(entry) === key && entry.normalize('NFC') === name) return true;
  return false;
}
