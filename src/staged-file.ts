/**
 * A file that only appears under its final name once it is complete and durable.
 *
 * Bytes go to a hidden temporary file beside the target (same folder, so the final
 * step is a rename within one file system). commit() fsyncs the data, moves it into
 * place and fsyncs the folder so the new name itself survives a power cut. Until then
 * the final name is untouched; discard() removes the temporary file.
 *
 * Without overwrite, the move is link() + unlink(): link fails with EEXIST if the
 * target appeared in the meantime, so an existing file is never clobbered even by a
 * race with another writer. rename() would silently replace it.
 */
import { randomBytes } from 'node:crypto';
import { constants, createWriteStream, type WriteStream } from 'node:fs';
import { link, open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { localIoError, RefusedError } from './errors.js';

/** Prefix and suffix of temporary files, so a leftover from a crash is easy to spot. */
export const TEMP_PREFIX = '.';
export const TEMP_SUFFIX = '.ftx-part';

/** Large writes keep the socket flowing: each write(2) costs a round trip to the thread pool. */
const WRITE_HIGH_WATER_MARK = 4 * 1024 * 1024;

/** Keeps temporary names under NAME_MAX (255 bytes) whatever the final name's length. */
const MAX_TEMP_STEM_BYTES = 200;

export function temporaryNameFor(finalPath: string): string {
  let stem = basename(finalPath);
  while (Buffer.byteLength(stem, 'utf8') > MAX_TEMP_STEM_BYTES) stem = stem.slice(0, -1);
  return join(dirname(finalPath), `${TEMP_PREFIX}${stem}.${randomBytes(4).toString('hex')}${TEMP_SUFFIX}`);
}

export function isTemporaryName(name: string): boolean {
  return name.startsWith(TEMP_PREFIX) && name.endsWith(TEMP_SUFFIX);
}

export class StagedFile {
  readonly finalPath: string;
  readonly tempPath: string;
  #handle: FileHandle | undefined;
  #state: 'open' | 'committed' | 'discarded' = 'open';

  private constructor(finalPath: string, tempPath: string, handle: FileHandle) {
    this.finalPath = finalPath;
    this.tempPath = tempPath;
    this.#handle = handle;
  }

  static async create(finalPath: string): Promise<StagedFile> {
    const tempPath = temporaryNameFor(finalPath);
    let handle: FileHandle;
    try {
      // O_EXCL: never reuse or follow anything already at the temporary name.
      handle = await open(tempPath, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o666);
    } catch (error) {
      throw localIoError(error, 'create a file in', dirname(finalPath));
    }
    return new StagedFile(finalPath, tempPath, handle);
  }

  /** A stream that writes into the temporary file; it does not close the file. */
  createWriteStream(): WriteStream {
    const handle = this.#requireOpen();
    // The numeric fd, not the FileHandle: a WriteStream given the FileHandle itself
    // leaves it unusable afterwards (handle.sync() never settles, seen on Node 20).
    return createWriteStream('', { fd: handle.fd, autoClose: false, highWaterMark: WRITE_HIGH_WATER_MARK });
  }

  /**
   * Makes the data durable and gives it its final name. Throws RefusedError('exists')
   * if the target exists and overwrite is false; the temporary file is then removed.
   */
  async commit(options: { overwrite: boolean }): Promise<void> {
    const handle = this.#requireOpen();
    try {
      await handle.sync();
      await handle.close();
      this.#handle = undefined;
      if (options.overwrite) {
        await rename(this.tempPath, this.finalPath);
      } else {
        await link(this.tempPath, this.finalPath);
        await unlink(this.tempPath);
      }
      this.#state = 'committed';
    } catch (error) {
      await this.discard();
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
        throw new RefusedError('exists', `${this.finalPath} appeared while the file was being received; it was left untouched`);
      }
      throw localIoError(error, 'store', this.finalPath);
    }
    await syncFolder(dirname(this.finalPath));
  }

  /** Removes the temporary file. Safe to call more than once, and after commit. */
  async discard(): Promise<void> {
    if (this.#state !== 'open') return;
    this.#state = 'discarded';
    const handle = this.#handle;
    this.#handle = undefined;
    await handle?.close().catch(() => {});
    await unlink(this.tempPath).catch(() => {});
  }

  #requireOpen(): FileHandle {
    if (this.#state !== 'open' || !this.#handle) throw new Error(`staged file ${this.tempPath} is ${this.#state}`);
    return this.#handle;
  }
}

/**
 * fsync on the folder makes the rename durable. Some file systems refuse to open or
 * sync folders (EISDIR, EINVAL on some network mounts); the data is synced anyway.
 */
async function syncFolder(folder: string): Promise<void> {
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
