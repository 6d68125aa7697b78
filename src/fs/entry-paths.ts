/**
 * Entry paths: what a session sends for each file or folder it carries, relative to the
 * folder the receiver stores the session in, with '/' between the parts
 * ("photos/2024/IMG_1.jpg"). On the receiver a path is untrusted input, exactly as a
 * single name is (names.ts): it is accepted as it is or refused with the reason, never
 * "fixed" ("./a" is refused rather than read as "a", "a//b" rather than read as "a/b"),
 * because a fix can land a file somewhere nobody asked for.
 *
 * A path is accepted only if it is relative, has at least one part, no empty part, no
 * "." or ".." part, no backslash, is at most MAX_PATH_DEPTH parts deep and
 * MAX_ENTRY_PATH_BYTES long, and every part passes the name rules (problemWithName).
 * The parts come back in canonical form (NFC), which is what the receiver stores.
 *
 * The checks run in order of cost, so hostile input is turned away cheaply: a path
 * 4,096 levels deep is refused after MAX_PATH_DEPTH searches for '/',
 * before anything is split or normalised.
 *
 * Speed: a receiver checks every entry of a session, a million of them for a million
 * empty files. A session's entries come folder by folder, so consecutive paths share
 * their leading parts: the folder of the last accepted path is remembered, and the
 * parts it shares with the next path are not checked again (checking one name costs
 * ~1.5 µs, most of a path's cost). That memory is a cache of a pure function: what
 * splitEntryPath returns never depends on it, and the arrays it returns are the caller's.
 *
 * Pure: no file system, no network.
 */
import { canonicalName, isDotFile, problemWithName } from './names.js';

/**
 * Most parts (folders and the final name) an entry path may have.
 *
 * The receiver's work per entry grows with depth (each intermediate folder is made or
 * checked on its own, never through a symbolic link), and node-tar's advisories show what
 * unbounded depth costs: CVE-2024-28863, a tarball of deeply nested folders that
 * exhausted memory and CPU, answered with a maxDepth of 1,024. Real trees are far
 * shallower (a deep node_modules, the usual worst case, is ~20); 64 leaves room to spare
 * while keeping a hostile 4,096-deep path a cheap refusal.
 */
export const MAX_PATH_DEPTH = 64;

/**
 * Longest entry path, in UTF-8 bytes: PATH_MAX on Linux (4,096, including the final
 * NUL), the longest path most system calls take. The receiver puts the path below its
 * own folder, so a path near the limit may still be too long there: that entry fails
 * with ENAMETOOLONG, on its own, rather than the limit depending on where it lands.
 */
export const MAX_ENTRY_PATH_BYTES = 4096;

export type SplitEntryPath = { components: string[] } | { problem: string };

/**
 * A Windows drive: "C:\\x" is absolute and "C:x" relative to that drive's current folder,
 * so both leave the target folder on a Windows receiver (node-tar's CVE-2021-37713 was
 * "C:../x" getting past its ".." check).
 */
const WINDOWS_DRIVE = /^[A-Za-z]:/;

/**
 * The folder part of the last accepted path (all but its last part), already checked:
 * as sent, in canonical form, and as text with its trailing '/' (see "Speed" above).
 */
let folderSent: string[] = [];
let folderCanonical: string[] = [];
let folderText = '';
let folderChanged = false;

/**
 * The parts of an entry path in canonical form (NFC), or why the path is refused.
 * A part's problem names the part and the path: `the name "CON" in "a/CON/b" is a
 * reserved device name`.
 */
export function splitEntryPath(path: string): SplitEntryPath {
  if (path.length === 0) return { problem: 'the path is empty' };
  if (path.startsWith('/')) return { problem: 'the path is absolute (it starts with "/")' };
  if (path.startsWith('\\\\')) return { problem: 'the path is a Windows network path (it starts with "\\\\")' };
  if (WINDOWS_DRIVE.test(path)) return { problem: `the path starts with a Windows drive ("${path.slice(0, 2)}"), which would put it outside the folder it is stored in` };
  // Bounded by the limit, not by the path: a 4,096-deep path costs 64 searches.
  for (let parts = 1, at = path.indexOf('/'); at !== -1; at = path.indexOf('/', at + 1)) {
    if (++parts > MAX_PATH_DEPTH) return { problem: `the path is more than ${MAX_PATH_DEPTH} levels deep` };
  }
  // A string of more UTF-16 units than the limit has more UTF-8 bytes too: no need to count them.
  if (path.length > MAX_ENTRY_PATH_BYTES || Buffer.byteLength(path, 'utf8') > MAX_ENTRY_PATH_BYTES) {
    return { problem: `the path is longer than ${MAX_ENTRY_PATH_BYTES} bytes` };
  }
  if (path.includes('\\')) return { problem: 'the path contains "\\", a path separator on Windows' };

  const lastSlash = path.lastIndexOf('/');
  let sent = folderSent;
  let canonical = folderCanonical;
  let changed = folderChanged;
  // The common case, a file in the same folder as the entry before: only its name is new.
  const sameFolder = lastSlash + 1 === folderText.length && path.startsWith(folderText);
  if (!sameFolder) {
    sent = lastSlash === -1 ? [] : path.slice(0, lastSlash).split('/');
    canonical = new Array<string>(sent.length);
    changed = false;
    let reused = true;
    for (let index = 0; index < sent.length; index++) {
      const part = sent[index] as string;
      // Checked already if the folder before had the same leading parts.
      if (reused && part === folderSent[index]) {
        canonical[index] = folderCanonical[index] as string;
      } else {
        reused = false;
        const problem = problemWithPart(part, false, path);
        if (problem !== undefined) return { problem };
        canonical[index] = canonicalName(part);
      }
      if (canonical[index] !== part) changed = true;
    }
  }
  const name = path.slice(lastSlash + 1);
  const problem = problemWithPart(name, true, path);
  if (problem !== undefined) return { problem };
  const canonicalLast = canonicalName(name);
  const components = canonical.concat(canonicalLast);
  // NFC makes a few characters longer ("\u0958" becomes two), so the stored path can be.
  if ((changed || canonicalLast !== name) && Buffer.byteLength(joinEntryPath(components), 'utf8') > MAX_ENTRY_PATH_BYTES) {
    return { problem: `the path is longer than ${MAX_ENTRY_PATH_BYTES} bytes in canonical (NFC) form` };
  }
  if (!sameFolder) {
    folderSent = sent;
    folderCanonical = canonical;
    folderText = path.slice(0, lastSlash + 1);
    folderChanged = changed;
  }
  return { components };
}

function problemWithPart(part: string, last: boolean, path: string): string | undefined {
  if (part.length === 0) return last ? 'the path ends with "/"' : 'the path has an empty part ("//")';
  if (part === '.') return 'the path has a "." part';
  if (part === '..') return 'the path has a ".." part, which would climb out of the folder it is stored in';
  // The part as sent: problemWithName checks its canonical form and the sent bytes both.
  const problem = problemWithName(part);
  if (problem === undefined) return undefined;
  const where = `the name ${JSON.stringify(part)} in ${JSON.stringify(path)}`;
  return problem.startsWith('the name ') ? `${where} ${problem.slice('the name '.length)}` : `${where}: ${problem}`;
}

/** A path accepted so far, for building paths one name at a time (see extendEntryPath). */
export interface EntryPathSoFar {
  path: string;
  /** Parts in it. */
  depth: number;
  /** UTF-8 bytes as sent, and in canonical (NFC) form. */
  bytes: number;
  canonicalBytes: number;
}

/**
 * For a walker that builds paths a name at a time (the sender's walk, which must send
 * only paths a receiver accepts): `parent`/`name` with its measures, or why it is
 * refused; the same answer as splitEntryPath on the joined path, at the cost of one name
 * check rather than a split. `parent` is undefined for the first part.
 */
export function extendEntryPath(parent: EntryPathSoFar | undefined, name: string): EntryPathSoFar | { problem: string } {
  if (parent === undefined) {
    const split = splitEntryPath(name);
    if ('problem' in split) return split;
    return { path: name, depth: split.components.length, bytes: Buffer.byteLength(name, 'utf8'), canonicalBytes: Buffer.byteLength(joinEntryPath(split.components), 'utf8') };
  }
  const path = `${parent.path}/${name}`;
  // In splitEntryPath's order, so that a path with several problems gets the same answer.
  if (parent.depth + 1 + countSlashes(name) > MAX_PATH_DEPTH) return { problem: `the path is more than ${MAX_PATH_DEPTH} levels deep` };
  const bytes = parent.bytes + 1 + Buffer.byteLength(name, 'utf8');
  if (bytes > MAX_ENTRY_PATH_BYTES) return { problem: `the path is longer than ${MAX_ENTRY_PATH_BYTES} bytes` };
  if (name.includes('\\')) return { problem: 'the path contains "\\", a path separator on Windows' };
  if (name.includes('/')) {
    // Not one name: let splitEntryPath say which part is wrong, if any.
    const split = splitEntryPath(path);
    if ('problem' in split) return split;
    return { path, depth: split.components.length, bytes, canonicalBytes: Buffer.byteLength(joinEntryPath(split.components), 'utf8') };
  }
  const problem = problemWithPart(name, true, path);
  if (problem !== undefined) return { problem };
  const canonical = canonicalName(name);
  const canonicalBytes = parent.canonicalBytes + 1 + (canonical === name ? bytes - parent.bytes - 1 : Buffer.byteLength(canonical, 'utf8'));
  if (canonicalBytes > MAX_ENTRY_PATH_BYTES) return { problem: `the path is longer than ${MAX_ENTRY_PATH_BYTES} bytes in canonical (NFC) form` };
  return { path, depth: parent.depth + 1, bytes, canonicalBytes };
}

function countSlashes(text: string): number {
  let count = 0;
  for (let at = text.indexOf('/'); at !== -1; at = text.indexOf('/', at + 1)) count++;
  return count;
}

/** The path for parts that splitEntryPath returned (or names problemWithName accepted). */
export function joinEntryPath(components: readonly string[]): string {
  return components.join('/');
}

/**
 * True when the entry's first part is a dot-file (".ssh/authorized_keys", ".bashrc").
 * A receiver's rule on dot-files applies only at the top of its folder, where they
 * configure programs; inside a sent folder (".git" in a project) they are ordinary.
 */
export function isDotFileAtTop(components: readonly string[]): boolean {
  const top = components[0];
  return top !== undefined && isDotFile(top);
}
