/**
 * Where an incoming file goes, and whether to take it: decided before the Accept, from
 * the sender's name and size, the target, the free space and the caller's policy; and
 * the commit after the data, which never clobbers a name taken meanwhile.
 *
 * Refusals say what the sender needs to know (the name it sent, the size that does not
 * fit), never the receiver's layout (its absolute paths, its free space).
 */
import { lstat, stat, statfs } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { RefusedError, type RefusalReason, type Remedy } from '../errors.js';
import { canonicalName, isDotFile, MAX_NAME_BYTES, problemWithName } from '../fs/names.js';
import { isNameTaken, pickFreeName, type ConflictPolicy, type StagedFile } from '../fs/staged-file.js';
import { formatBytes } from '../util/units.js';
import type { ConnectionPolicy, TransferRequest } from './policy.js';

/** Longest path the receiver will create (PATH_MAX is 4096 bytes, with its NUL). */
const MAX_PATH_BYTES = 4095;

/** How many times a name taken meanwhile is picked again under 'rename'. */
const MAX_NAME_PICKS = 4;

export interface TargetOptions {
  /** A file path, or an existing folder where the file is stored under the sender's name. */
  target: string;
  onConflict: ConflictPolicy;
  /** Refuse files larger than this many bytes. */
  maxSize?: number | undefined;
  /** Store names starting with a dot at the top of a target folder. */
  allowDotFiles?: boolean | undefined;
  /** Bytes of `path` a kept partial already holds (they need no free space); 0 if none. */
  heldBytes?: ((path: string) => number) | undefined;
}

export interface IncomingFile {
  /** The name the sender gave (classic senders give none: the receiver makes one up). */
  name: string;
  size: number;
}

/** Tells the sender why not, in its protocol, and throws the RefusedError. */
export type Refuse = (reason: RefusalReason, message: string, remedy?: Remedy) => Promise<never>;

/** A sender's name as messages quote it: JSON-escaped and cut short. */
export function quoteName(name: string): string {
  return JSON.stringify(name.length > 80 ? `${name.slice(0, 80)}…` : name);
}

/**
 * Decides where the file goes and whether to take it; `refuse` tells the sender why
 * not (in its protocol) and throws. On success the policy's claim is held: the caller
 * must release it.
 */
export async function decideTarget(incoming: IncomingFile, peer: string, options: TargetOptions, policy: ConnectionPolicy, refuse: Refuse): Promise<TransferRequest> {
  const targetIsFolder = await isFolder(options.target);
  const quoted = quoteName(incoming.name);
  let path = options.target;
  if (targetIsFolder) {
    // NFC: a Mac's decomposed "café" and everyone else's composed one are one name (names.ts).
    const name = canonicalName(incoming.name);
    const problem = problemWithName(name);
    if (problem) await refuse('bad-name', `cannot store a file named ${quoted}: ${problem}`, 'rename');
    if (isDotFile(name) && !options.allowDotFiles) {
      await refuse('bad-name', `cannot store ${quoted}: this receiver refuses names that start with a dot (hidden files such as .bashrc)`, 'allow-dotfiles');
    }
    path = join(options.target, name);
    if (Buffer.byteLength(path, 'utf8') > MAX_PATH_BYTES) await refuse('bad-name', `cannot store ${quoted}: the name is too long for the receiver's folder`, 'rename');
  }
  const what = targetIsFolder ? `a file named ${quoted}` : "the receiver's target file";

  if (options.maxSize !== undefined && incoming.size > options.maxSize) {
    await refuse('too-large', `${formatBytes(incoming.size)} is more than the ${formatBytes(options.maxSize)} this receiver takes`);
  }

  const existing = await lstat(path).catch(() => undefined);
  if (existing?.isDirectory()) await refuse('exists', `${what} is a folder on the receiver`, 'rename');
  if (existing && options.onConflict === 'refuse') await refuse('exists', `${what} already exists on the receiver`, 'rename');

  const freeBytes = await freeBytesIn(dirname(path));
  if (freeBytes !== undefined && incoming.size - (options.heldBytes?.(path) ?? 0) > freeBytes) {
    await refuse('no-space', `not enough free space on the receiver for ${formatBytes(incoming.size)}`);
  }

  // Under 'rename' the free name is chosen now, before the Accept, so a name that cannot
  // be had is a refusal the sender hears before it sends a byte.
  const wanted = path;
  for (let pick = 1; ; pick++) {
    if (options.onConflict === 'rename') {
      const free = await pickFreeName(wanted, (candidate) => policy.isInFlight?.(candidate) ?? false);
      if (!free) await refuse('exists', `${what} and too many numbered copies of it exist on the receiver`, 'rename');
      path = free as string;
      if (Buffer.byteLength(basename(path), 'utf8') > MAX_NAME_BYTES) {
        await refuse('bad-name', `${what} exists on the receiver, and its numbered copy ${quoteName(basename(path))} would be longer than ${MAX_NAME_BYTES} bytes`, 'rename');
      }
    }
    const held = options.heldBytes?.(path) ?? 0;
    const request: TransferRequest = { path, size: incoming.size, freeBytes, peer, held, bytesWritten: () => held };
    const refusal = policy.claim(request);
    if (!refusal) return request;
    // Another transfer claimed the name we picked while we looked: pick again.
    if (refusal.reason === 'exists' && options.onConflict === 'rename' && pick < MAX_NAME_PICKS) continue;
    await refuse(refusal.reason, refusal.message);
  }
}

/**
 * Seals the data and gives it its final name, which it returns. A name taken meanwhile
 * (another program created it) is never clobbered: under 'rename' another free name is
 * picked, a few times at most; under 'refuse' it is a refusal.
 */
export async function commitTarget(staged: StagedFile, request: TransferRequest, options: { onConflict: ConflictPolicy; mtimeMs?: number | undefined; syncFolder?: boolean }, policy: ConnectionPolicy): Promise<string> {
  await staged.seal(options.mtimeMs === undefined ? {} : { mtimeMs: options.mtimeMs });
  let path = request.path;
  for (let pick = 1; ; pick++) {
    try {
      await staged.place(path, { replace: options.onConflict === 'overwrite', syncFolder: options.syncFolder ?? true });
      request.committed = true;
      return path;
    } catch (error) {
      if (!isNameTaken(error)) throw error;
      const again =
        options.onConflict === 'rename' && pick < MAX_NAME_PICKS
          ? await pickFreeName(request.path, (candidate) => candidate !== request.path && (policy.isInFlight?.(candidate) ?? false))
          : undefined;
      if (!again) {
        throw new RefusedError(
          'exists',
          `a file named ${quoteName(basename(path))} appeared on the receiver while this one was being received; it was left untouched and this one was not stored`,
          { remedy: 'rename' },
        );
      }
      path = again;
    }
  }
}

async function isFolder(path: string): Promise<boolean> {
  const stats = await lstat(path).catch(() => undefined);
  if (stats?.isSymbolicLink()) {
    // A target given by the user may be a link to a folder; follow it once, on purpose.
    return (await stat(path).catch(() => undefined))?.isDirectory() ?? false;
  }
  return stats?.isDirectory() ?? false;
}

export async function freeBytesIn(folder: string): Promise<number | undefined> {
  try {
    const stats = await statfs(folder);
    return stats.bavail * stats.bsize;
  } catch {
    return undefined; // Not every file system answers; the write will tell.
  }
}
