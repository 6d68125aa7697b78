/**
 * A file to send, opened so that its size and content stay consistent while it is read
 * (the handle, not the path, is read from).
 */
import { constants, type Stats } from 'node:fs';
import { open, stat, type FileHandle } from 'node:fs/promises';
import { basename } from 'node:path';
import { LocalIoError, localIoError } from '../errors.js';
import { problemWithName } from './names.js';

export interface SourceFile {
  path: string;
  /** The name announced to the receiver. */
  name: string;
  size: number;
  mode: number;
  mtimeMs: number;
  handle: FileHandle;
}

/**
 * Opens and stats the file to send; the caller closes `handle`.
 *
 * Only a regular file has a size to announce. Opening a FIFO for reading blocks until
 * a writer turns up (in a thread-pool thread that not even process.exit() can take
 * back), so the type is checked on the path first, the file is opened with O_NONBLOCK
 * in case it was swapped for a FIFO in between, and checked again on the handle.
 */
export async function openSource(path: string, nameOverride?: string): Promise<SourceFile> {
  const name = nameOverride ?? basename(path);
  const problem = problemWithName(name);
  if (problem) throw new LocalIoError(`cannot send under the name ${JSON.stringify(name)}: ${problem}`, { remedy: 'rename' });
  let handle: FileHandle;
  try {
    requireRegularFile(await stat(path), path);
    handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (error) {
    throw error instanceof LocalIoError ? error : localIoError(error, 'read', path);
  }
  try {
    const stats = await handle.stat();
    requireRegularFile(stats, path);
    return { path, name, size: stats.size, mode: stats.mode & 0o7777, mtimeMs: stats.mtimeMs, handle };
  } catch (error) {
    await handle.close();
    throw error;
  }
}

function requireRegularFile(stats: Stats, path: string): void {
  if (stats.isFile()) return;
  if (stats.isDirectory()) throw new LocalIoError(`cannot send ${path} as one file: it is a folder (send it as a folder: without a name of its own)`);
  const kind = stats.isFIFO()
    ? 'a named pipe (FIFO)'
    : stats.isCharacterDevice()
      ? 'a character device'
      : stats.isBlockDevice()
        ? 'a block device'
        : stats.isSocket()
          ? 'a socket'
          : 'not a regular file';
  // What a pipe carries can still go, as a stream of unknown size.
  if (stats.isFIFO()) throw new LocalIoError(`cannot send ${path}: it is ${kind}, and ftx sends files and folders`, { remedy: 'send-as-stream' });
  throw new LocalIoError(`cannot send ${path}: it is ${kind}, and ftx sends files and folders`);
}
