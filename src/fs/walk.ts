/**
 * What `ftx send a.txt ./photos host` sends: the roots in the order given, each folder
 * followed by its contents, depth first, as a lazy sequence of entries (and of things
 * skipped, with the reason), so that a tree of a million files costs the memory of the
 * folders on the current path, not of the tree.
 *
 * Order: a folder comes before its contents, and the entries of a folder are sorted by
 * the bytes of their UTF-8 names, so the same tree always gives the same sequence
 * (readdir's order depends on the file system and on the folder's history).
 *
 * Memory: one listing (the names, nothing else) per folder on the current path; a
 * folder's names are read whole because they are sorted. So memory is bounded by the
 * depth and the largest folder, whatever the number of entries.
 *
 * The roots are checked before the first entry comes out, so a mistake on the command
 * line (a missing root, two roots of the same name) fails before anything is sent.
 * Below the roots nothing throws: a folder that cannot be read, a symbolic link, a
 * device, a name the receiver would refuse, each comes out as a WalkSkip and the walk
 * goes on. Every path that comes out is one a receiver accepts (splitEntryPath): each is
 * built with extendEntryPath, so a name that would be refused there is skipped here,
 * with the same reason, before a byte is sent. A folder comes out only once it has been
 * listed, so an unreadable one is a skip rather than an empty folder. A file with two
 * hard links is sent under both names.
 *
 * Synchronous file system calls: the walk makes one lstat per entry and one readdir per
 * folder; through the thread pool each costs a round trip and a promise, and 10,000
 * small files took 190-410 ms (200 ms with a folder's lstats in parallel) against 40-65
 * ms with lstatSync/readdirSync on the build machine. The cost is that a slow disk blocks
 * the event loop for one call, so the walk yields to the event loop every few
 * milliseconds (BREATHE_MS), keeping timers, signals and the socket served.
 */
import { accessSync, constants, lstatSync, readdirSync, statSync, type Stats } from 'node:fs';
import { basename, resolve, sep } from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { LocalIoError, UsageError, localIoError } from '../errors.js';
import { canonicalName } from './names.js';
import { extendEntryPath, type EntryPathSoFar } from './entry-paths.js';

export interface WalkEntry {
  kind: 'file' | 'dir';
  /** Relative, '/'-separated, as found on disk (the receiver makes it canonical): what is sent. */
  path: string;
  /** Where to read it on this machine. */
  absolute: string;
  /** Bytes, for a file (0 for a folder). */
  size: number;
  /** Permission bits (mode & 0o7777). */
  mode: number;
  mtimeMs: number;
}

export interface WalkSkip {
  kind: 'skipped';
  path: string;
  absolute: string;
  /** Why it is not sent, as a phrase: "a named pipe (FIFO)", "unreadable: permission denied". */
  reason: string;
}

export interface WalkOptions {
  /** Send what a symbolic link points to, under the link's name, instead of skipping the link. */
  followSymlinks?: boolean;
}

export const SKIP_REASONS = {
  symlink: 'a symbolic link (not followed)',
  brokenSymlink: 'a symbolic link to nothing (its target does not exist)',
  fifo: 'a named pipe (FIFO)',
  device: 'a device',
  socket: 'a socket',
  loop: 'a loop back to an enclosing folder',
  unreadable: 'unreadable: permission denied',
  vanished: 'removed while the folder was being read',
  notUtf8: 'its name is not valid UTF-8, so it cannot be sent as text',
} as const;

/** How long the walk may run without letting the event loop turn. */
const BREATHE_MS = 8;

/** A folder on the current path: its sorted names and how far the walk has got. */
interface Frame {
  at: EntryPathSoFar;
  absolute: string;
  names: string[];
  next: number;
  /** dev:ino, to recognise a loop back to it. */
  key: string;
}

interface Root {
  given: string;
  at: EntryPathSoFar;
  absolute: string;
  stats: Stats;
}

/**
 * Everything to send for `roots`, in order (see the top of the file). Rejects, before
 * the first entry, with LocalIoError for a root that is missing, unreadable, not a file
 * or folder, or named so the receiver would refuse it, and with UsageError for two roots
 * of the same name.
 *
 * A root is followed if it is a symbolic link (as `cp -H` and `find -H` do): it was named
 * on purpose. `ftx send .` sends the current folder under its own name.
 */
export async function* walk(roots: readonly string[], options: WalkOptions = {}): AsyncGenerator<WalkEntry | WalkSkip> {
  const checked = checkRoots(roots);
  const readable = readabilityCheck();
  const follow = options.followSymlinks === true;
  let since = performance.now();

  for (const root of checked) {
    if (root.stats.isFile()) {
      yield fileEntry(root.at.path, root.absolute, root.stats);
      continue;
    }
    const first = openFolder(root.at, root.absolute, root.stats);
    if ('reason' in first) {
      yield first;
      continue;
    }
    yield dirEntry(root.at.path, root.absolute, root.stats);
    const stack: Frame[] = [first];
    const onPath = new Set([first.key]);
    yield* notUtf8Skips(first);

    while (stack.length > 0) {
      if (performance.now() - since > BREATHE_MS) {
        await nextTurn();
        since = performance.now();
      }
      const frame = stack[stack.length - 1] as Frame;
      const name = frame.names[frame.next++];
      if (name === undefined) {
        stack.pop();
        onPath.delete(frame.key);
        continue;
      }
      const absolute = `${frame.absolute}${sep}${name}`;
      // Only paths a receiver accepts (splitEntryPath) are sent.
      const at = extendEntryPath(frame.at, name);
      if ('problem' in at) {
        yield skip(`${frame.at.path}/${name}`, absolute, `not sendable: ${at.problem}`);
        continue;
      }
      const path = at.path;
      let stats: Stats | undefined;
      try {
        stats = lstatSync(absolute, { throwIfNoEntry: false });
        if (stats === undefined) {
          yield skip(path, absolute, SKIP_REASONS.vanished);
          continue;
        }
        if (stats.isSymbolicLink()) {
          if (!follow) {
            yield skip(path, absolute, SKIP_REASONS.symlink);
            continue;
          }
          stats = statSync(absolute, { throwIfNoEntry: false });
          if (stats === undefined) {
            yield skip(path, absolute, SKIP_REASONS.brokenSymlink);
            continue;
          }
        }
      } catch (error) {
        yield skip(path, absolute, unreadableReason(error));
        continue;
      }
      if (stats.isFile()) {
        yield readable(stats, absolute) ? fileEntry(path, absolute, stats) : skip(path, absolute, SKIP_REASONS.unreadable);
      } else if (stats.isDirectory()) {
        if (onPath.has(keyOf(stats))) {
          yield skip(path, absolute, SKIP_REASONS.loop);
          continue;
        }
        const opened = openFolder(at, absolute, stats);
        if ('reason' in opened) {
          yield opened;
          continue;
        }
        yield dirEntry(path, absolute, stats);
        stack.push(opened);
        onPath.add(opened.key);
        yield* notUtf8Skips(opened);
      } else {
        yield skip(path, absolute, specialFileReason(stats));
      }
    }
  }
}

export interface TreeTotals {
  files: number;
  folders: number;
  /** The files' sizes added up. */
  bytes: number;
  skipped: number;
}

/** The totals of walk(roots, options), for a progress display: the same walk, keeping only counts. */
export async function countTree(roots: readonly string[], options: WalkOptions = {}): Promise<TreeTotals> {
  const totals: TreeTotals = { files: 0, folders: 0, bytes: 0, skipped: 0 };
  for await (const entry of walk(roots, options)) {
    if (entry.kind === 'file') {
      totals.files++;
      totals.bytes += entry.size;
    } else if (entry.kind === 'dir') {
      totals.folders++;
    } else {
      totals.skipped++;
    }
  }
  return totals;
}

/** Every root's name and type, checked before anything is sent (see walk). */
function checkRoots(roots: readonly string[]): Root[] {
  const byName = new Map<string, string>();
  const checked: Root[] = [];
  for (const given of roots) {
    const absolute = resolve(given);
    const name = basename(absolute);
    if (name === '') throw new LocalIoError(`cannot send ${given}: the top folder has no name to send it under; send what is in it instead`);
    const at = extendEntryPath(undefined, name);
    if ('problem' in at) {
      // With one root the caller can send it under another name; with several, only the one alone.
      const advice = roots.length === 1 ? 'send it under another name' : 'rename it, or send it on its own under another name';
      throw new LocalIoError(`cannot send ${given} under the name ${JSON.stringify(name)}: ${at.problem}; ${advice}`, roots.length === 1 ? { remedy: 'rename' } : undefined);
    }
    // The receiver compares canonical names: "café" in NFC and in NFD would land on one file.
    const key = canonicalName(name);
    const earlier = byName.get(key);
    if (earlier !== undefined) {
      throw new UsageError(`two things to send are both named ${JSON.stringify(name)} (${earlier} and ${given}), and would land in the same place; send them separately, or rename one`);
    }
    byName.set(key, given);
    checked.push({ given, at, absolute, stats: statRoot(given, absolute) });
  }
  return checked;
}

function statRoot(given: string, absolute: string): Stats {
  let stats: Stats;
  try {
    stats = statSync(absolute);
  } catch (error) {
    throw localIoError(error, 'read', given);
  }
  if (!stats.isFile() && !stats.isDirectory()) {
    // What a pipe carries can still go, as a stream of unknown size.
    const remedy = stats.isFIFO() ? { remedy: 'send-as-stream' as const } : undefined;
    throw new LocalIoError(`cannot send ${given}: it is ${specialFileReason(stats)}, and ftx sends files and folders`, remedy);
  }
  try {
    accessSync(absolute, stats.isDirectory() ? constants.R_OK | constants.X_OK : constants.R_OK);
  } catch (error) {
    throw localIoError(error, 'read', given);
  }
  return stats;
}

/** A folder's names, sorted; or a skip if it cannot be listed. */
function openFolder(at: EntryPathSoFar, absolute: string, stats: Stats): Frame | WalkSkip {
  let names: string[];
  try {
    names = readdirSync(absolute);
  } catch (error) {
    return skip(at.path, absolute, unreadableReason(error));
  }
  return { at, absolute, names: sortByUtf8(names), next: 0, key: keyOf(stats) };
}

/**
 * Names that are not valid UTF-8 come out of readdir with U+FFFD in place of the bad
 * bytes, under which the file cannot be opened (or, worse, another file can). Only a
 * listing with U+FFFD in it is read again as bytes, to tell those apart; they are
 * skipped, and taken out of the frame so the walk never touches them.
 */
function* notUtf8Skips(frame: Frame): Generator<WalkSkip> {
  if (!frame.names.some((name) => name.includes('\uFFFD'))) return;
  let raw: Buffer[];
  try {
    raw = readdirSync(frame.absolute, { encoding: 'buffer' });
  } catch {
    return; // It was readable a moment ago; lstat will say what is wrong with each name.
  }
  const mangled = new Set<string>();
  const valid = new Set<string>();
  for (const bytes of raw) {
    const name = bytes.toString('utf8');
    if (Buffer.from(name, 'utf8').equals(bytes)) valid.add(name);
    else mangled.add(name);
  }
  if (mangled.size === 0) return;
  // A valid name equal to a mangled one ("\uFFFDa" beside "\xFFa") came twice: keep it once.
  frame.names = frame.names.filter((name, index, names) => valid.has(name) && names[index - 1] !== name);
  for (const name of sortByUtf8([...mangled])) yield skip(`${frame.at.path}/${name}`, `${frame.absolute}${sep}${name}`, SKIP_REASONS.notUtf8);
}

function fileEntry(path: string, absolute: string, stats: Stats): WalkEntry {
  return { kind: 'file', path, absolute, size: stats.size, mode: stats.mode & 0o7777, mtimeMs: stats.mtimeMs };
}

function dirEntry(path: string, absolute: string, stats: Stats): WalkEntry {
  return { kind: 'dir', path, absolute, size: 0, mode: stats.mode & 0o7777, mtimeMs: stats.mtimeMs };
}

function skip(path: string, absolute: string, reason: string): WalkSkip {
  return { kind: 'skipped', path, absolute, reason };
}

/** Identifies a folder on this machine (numbers: inodes past 2^53 could collide, and only cause a needless skip). */
function keyOf(stats: Stats): string {
  return `${stats.dev}:${stats.ino}`;
}

function specialFileReason(stats: Stats): string {
  if (stats.isFIFO()) return SKIP_REASONS.fifo;
  if (stats.isSocket()) return SKIP_REASONS.socket;
  if (stats.isCharacterDevice() || stats.isBlockDevice()) return SKIP_REASONS.device;
  if (stats.isSymbolicLink()) return SKIP_REASONS.symlink;
  return 'neither a file nor a folder';
}

function unreadableReason(error: unknown): string {
  switch ((error as NodeJS.ErrnoException | undefined)?.code) {
    case 'EACCES':
    case 'EPERM':
      return SKIP_REASONS.unreadable;
    case 'ENOENT':
      return SKIP_REASONS.vanished;
    case 'ELOOP':
      return 'a symbolic link that leads back to itself';
    default:
      return `unreadable: ${error instanceof Error ? error.message : String(error)}`;
  }
}

/**
 * Whether this process may read a file, judged from its mode bits (no system call), and
 * confirmed with access(2) only when the bits say no, since an ACL can grant what the
 * bits deny. A file the bits allow but an ACL denies fails when it is opened, as does
 * one whose mode changes after the walk: the reader handles that either way.
 */
function readabilityCheck(): (stats: Stats, absolute: string) => boolean {
  const uid = process.geteuid?.();
  if (uid === undefined || uid === 0) return () => true;
  const groups = new Set(process.getgroups?.() ?? []);
  const gid = process.getegid?.();
  if (gid !== undefined) groups.add(gid);
  return (stats, absolute) => {
    const bit = stats.uid === uid ? 0o400 : groups.has(stats.gid) ? 0o040 : 0o004;
    if ((stats.mode & bit) !== 0) return true;
    try {
      accessSync(absolute, constants.R_OK);
      return true;
    } catch {
      return false;
    }
  };
}

/** Code units at which UTF-16 order and code point order can differ (surrogates and U+E000-U+FFFF). */
const HIGH_UNIT = /[\uD800-\uFFFF]/;

/** Sorts names in place by their UTF-8 bytes, with the native sort when UTF-16 order is the same (names below U+D800). */
function sortByUtf8(names: string[]): string[] {
  return names.some((name) => HIGH_UNIT.test(name)) ? names.sort(compareUtf8) : names.sort();
}

/**
 * Orders strings by their UTF-8 bytes, which is code point order. JavaScript's `<`
 * compares UTF-16 units, which puts U+E000-U+FFFF after the surrogates of U+10000 and
 * above; moving each unit into code point order fixes that at the first difference.
 */
export function compareUtf8(a: string, b: string): number {
  const length = Math.min(a.length, b.length);
  for (let index = 0; index < length; index++) {
    const x = a.charCodeAt(index);
    const y = b.charCodeAt(index);
    if (x !== y) return codePointRank(x) - codePointRank(y);
  }
  return a.length - b.length;
}

function codePointRank(unit: number): number {
  if (unit < 0xd800) return unit;
  return unit >= 0xe000 ? unit - 0x800 : unit + 0x2000;
}
