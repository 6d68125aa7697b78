/**
 * A small file stored whole, in a handful of synchronous calls, with the same safety as
 * StagedFile: a hidden temporary file beside the target (O_EXCL, O_NOFOLLOW), the data
 * fsync'd, then a no-clobber move to the final name (link + unlink) unless replacing.
 *
 * Why synchronous: a session of 10,000 files of 4 KiB makes seven calls per file, and
 * through the thread pool each is a round trip and a promise (~20-50 µs on this class of
 * machine), several times the work itself on tmpfs. A synchronous call blocks the event
 * loop for its duration, which is what bounds this to small files: their fsync is the
 * longest call (~0.3 ms on ext4). Large files go through StagedFile, whose writes
 * overlap the network.
 */
import { closeSync, constants, futimesSync, fsyncSync, linkSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { localIoError } from '../errors.js';
import { temporaryNameFor } from './staged-file.js';

/** Largest file stored this way: larger ones are staged and written as their data arrives. */
export const SMALL_FILE_BYTES = 256 * 1024;

/** What link() fails with where the file system has no hard links. */
const NO_HARD_LINKS = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS']);

/**
 * Writes `bytes` to a new temporary file beside `finalPath` and makes them durable;
 * returns its path, for placeSmallFile(). Nothing is left behind on failure.
 */
export function writeSmallFile(finalPath: string, bytes: Buffer, options: { mode?: number | undefined; mtimeMs?: number | undefined }): string {
  const tempPath = temporaryNameFor(finalPath);
  let fd: number;
  try {
    fd = openSync(tempPath, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, (options.mode ?? 0o666) & 0o777);
  } catch (error) {
    throw localIoError(error, 'create a file in', dirname(finalPath));
  }
  try {
    for (let offset = 0; offset < bytes.length; ) {
      const written = writeSync(fd, bytes, offset, bytes.length - offset, offset);
      if (written === 0) throw Object.assign(new Error('no space left on device'), { code: 'ENOSPC' });
      offset += written;
    }
    if (options.mtimeMs !== undefined) futimesSync(fd, Date.now() / 1000, options.mtimeMs / 1000);
    fsyncSync(fd);
    closeSync(fd);
  } catch (error) {
    try {
      closeSync(fd);
    } catch {
      // Already closed (the close itself failed).
    }
    discardSmallFile(tempPath);
    throw localIoError(error, 'write', finalPath);
  }
  return tempPath;
}

/**
 * Moves the temporary file to `finalPath`. Without `replace`, a taken name throws an
 * error with code EEXIST (isNameTaken) and the temporary file stays, for another name;
 * any other failure removes it. The folder is not fsync'd here: a session does that
 * once per folder (session/entry-targets.ts).
 */
export function placeSmallFile(tempPath: string, finalPath: string, replace: boolean): void {
  try {
    if (replace) {
      renameSync(tempPath, finalPath);
      return;
    }
    try {
      linkSync(tempPath, finalPath);
    } catch (error) {
      if (!NO_HARD_LINKS.has((error as NodeJS.ErrnoException).code ?? '')) throw error;
      // No hard links (FAT, some SMB shares): claim the name with an exclusive placeholder.
      closeSync(openSync(finalPath, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600));
      renameSync(tempPath, finalPath);
      return;
    }
    unlinkSync(tempPath);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') throw error;
    discardSmallFile(tempPath);
    throw localIoError(error, 'store', finalPath);
  }
}

export function discardSmallFile(tempPath: string): void {
  try {
    unlinkSync(tempPath);
  } catch {
    // Gone already.
  }
}
