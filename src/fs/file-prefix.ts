/**
 * Reads the first bytes of a file through a callback, a buffer at a time: what both ends
 * of a resumed transfer hash to prove they hold the same prefix (the sender its source,
 * the receiver its partial file). Asynchronous reads, so the event loop stays free for
 * the connection (KeepAlives, the peer's frames) however long the prefix.
 */
import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { localIoError } from '../errors.js';

const PREFIX_CHUNK_BYTES = 1024 * 1024;

/**
 * Passes the first `length` bytes of `handle` to `onChunk`, in order; resolves with the
 * count read (less than `length` only if the file is shorter). `onChunk` sees a view of a
 * reused buffer: it must use the bytes before returning.
 */
export async function readPrefix(handle: FileHandle, length: number, onChunk: (chunk: Buffer) => void, path: string): Promise<number> {
  const buffer = Buffer.allocUnsafeSlow(Math.min(PREFIX_CHUNK_BYTES, Math.max(1, length)));
  let position = 0;
  while (position < length) {
    let bytesRead: number;
    try {
      ({ bytesRead } = await handle.read(buffer, 0, Math.min(buffer.length, length - position), position));
    } catch (error) {
      throw localIoError(error, 'read', path);
    }
    if (bytesRead === 0) break;
    onChunk(buffer.subarray(0, bytesRead));
    position += bytesRead;
  }
  return position;
}

/** readPrefix on a file opened (and closed) for the purpose; never follows a link. */
export async function readFilePrefix(path: string, length: number, onChunk: (chunk: Buffer) => void): Promise<number> {
  let handle: FileHandle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (error) {
    throw localIoError(error, 'read', path);
  }
  try {
    return await readPrefix(handle, length, onChunk, path);
  } finally {
    await handle.close().catch(() => {});
  }
}
