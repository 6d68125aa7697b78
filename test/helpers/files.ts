import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterEach } from 'vitest';
import { partialPaths } from '../../src/fs/partial.js';

const folders: string[] = [];

/** A fresh temp folder, removed after the current test. */
export async function tempFolder(prefix = 'ftx-test-'): Promise<string> {
  const folder = await mkdtemp(join(tmpdir(), prefix));
  folders.push(folder);
  return folder;
}

afterEach(async () => {
  await Promise.all(folders.splice(0).map((folder) => rm(folder, { recursive: true, force: true })));
});

/** Writes `size` random bytes (from a fixed pattern when size is large, for speed). */
export async function randomFile(folder: string, name: string, size: number): Promise<string> {
  const path = join(folder, name);
  await writeFile(path, randomBytes(size));
  return path;
}

export async function sha256Of(path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex');
}

/**
 * BLAKE3 of a file, from hash-wasm: an implementation independent of the native module
 * ftx uses by default, so a test that compares the two checks ftx rather than itself.
 */
export async function blake3Of(path: string): Promise<string> {
  const { blake3 } = await import('hash-wasm');
  return blake3(await readFile(path));
}

/** Every entry in a folder, hidden ones (temporary files) included. */
export async function listFolder(folder: string): Promise<string[]> {
  return (await readdir(folder)).sort();
}

/**
 * Asserts two files hold the same bytes. (Comparing large Buffers with toEqual is
 * element-by-element and takes seconds per MiB, so compare sizes and digests.)
 */
export async function expectSameFile(actualPath: string, expectedPath: string): Promise<void> {
  const [actual, expected] = await Promise.all([readFile(actualPath), readFile(expectedPath)]);
  const { expect } = await import('vitest');
  expect(actual.length, `size of ${actualPath}`).toBe(expected.length);
  expect(actual.equals(expected), `bytes of ${actualPath} equal ${expectedPath}`).toBe(true);
}

/**
 * The names a cut transfer of `target` leaves for resume (fs/partial.ts): its hidden
 * partial file and record, sorted as listFolder sorts; with `lock`, also the lock a
 * killed receiver could not give back. Never the target's own name.
 */
export function keptPartialNames(target: string, identity: string | null = null, options: { lock?: boolean } = {}): string[] {
  const paths = partialPaths(target, identity);
  return [basename(paths.data), basename(paths.record), ...(options.lock ? [basename(paths.lock)] : [])].sort();
}
