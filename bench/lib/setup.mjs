/**
 * What the benchmark needs before it can measure anything: tools (installed with apt
 * when missing and we are root), random data files (generated once, reused), and the
 * free space to hold them.
 */
import { createHash, randomFillSync } from 'node:crypto';
import { accessSync, closeSync, constants, createReadStream, existsSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, statfsSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { runQuiet } from './proc.mjs';

const MIB = 1024 * 1024;
const GIB = 1024 * MIB;

/** "256M", "1G", "4GiB", "65536" -> bytes (binary units, as ftx's own --max-size). */
export function parseSize(text) {
  const match = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$/i.exec(String(text).trim());
  if (!match) throw new Error(`"${text}" is not a size; write e.g. 256M or 1G`);
  const power = ' kmgt'.indexOf(match[2].toLowerCase() || ' ');
  return Math.round(Number(match[1]) * 1024 ** power);
}

/** 1073741824 -> "1G", 67108864 -> "64M": for file names and labels. */
export function sizeLabel(bytes) {
  if (bytes % GIB === 0) return `${bytes / GIB}G`;
  if (bytes % MIB === 0) return `${bytes / MIB}M`;
  return `${bytes}B`;
}

export function findOnPath(name) {
  for (const folder of (process.env.PATH ?? '').split(':')) {
    if (!folder) continue;
    try {
      accessSync(join(folder, name), constants.X_OK);
      return join(folder, name);
    } catch {
      // Not in this folder.
    }
  }
  return undefined;
}

let aptUpdated = false;

/**
 * Returns the path of `binary`, installing Debian `aptPackage` if it is missing and we
 * can (root, apt-get present). `accept(path)` may reject a wrong variant (traditional
 * netcat has no -N). Returns { path } or { skip: reason }.
 */
export async function ensureTool(binary, aptPackage, log, accept = async () => true) {
  let path = findOnPath(binary);
  if (path && (await accept(path))) return { path };
  const canApt = process.getuid?.() === 0 && findOnPath('apt-get');
  if (!canApt) {
    return { skip: `${binary} (Debian package ${aptPackage}) is ${path ? 'the wrong variant' : 'not installed'} and this is not root with apt-get; install it to include it` };
  }
  log(`installing ${aptPackage} (apt-get)...`);
  let result = await runQuiet('apt-get', ['install', '-y', '--no-install-recommends', aptPackage], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  if (result.code !== 0 && !aptUpdated) {
    aptUpdated = true;
    await runQuiet('apt-get', ['update'], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
    result = await runQuiet('apt-get', ['install', '-y', '--no-install-recommends', aptPackage], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  }
  path = findOnPath(binary);
  if (result.code !== 0 || !path || !(await accept(path))) {
    return { skip: `could not install ${aptPackage}: ${(result.stderr || result.stdout).trim().split('\n').at(-1) ?? 'unknown error'}` };
  }
  return { path };
}

/** OpenBSD netcat says so in its usage text and knows -N; the traditional one does not. */
export async function isOpenbsdNetcat(path) {
  const { stdout, stderr } = await runQuiet(path, ['-h']);
  return /OpenBSD netcat/i.test(stdout + stderr);
}

/** GNU time understands -f/-o; busybox or the shell keyword would not. */
export async function isGnuTime(path) {
  const { code } = await runQuiet(path, ['-f', '%M', '-o', '/dev/null', 'true']);
  return code === 0;
}

export function freeBytes(folder) {
  const stats = statfsSync(folder);
  return stats.bavail * stats.bsize;
}

/** tmpfs pages are RAM: a file on /dev/shm needs free memory as well as free space. */
export function availableMemoryBytes() {
  try {
    const match = /MemAvailable:\s+(\d+) kB/.exec(readFileSync('/proc/meminfo', 'utf8'));
    return match ? Number(match[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * bench/data/random-<size>.bin, generated once from crypto random bytes (incompressible,
 * nothing for a fast path to shortcut). Written under a temporary name and renamed, so an
 * interrupted run never leaves a short file that a later run would trust.
 * Returns { path, size, sha256, digests, digestTools } (see ensureDigests).
 */
export async function ensureDataFile(dataDir, size, log) {
  return ensureRandomFile(join(dataDir, `random-${sizeLabel(size)}.bin`), size, log);
}

/**
 * The many-senders scenario's inputs: `count` distinct random files of `size` bytes each,
 * bench/data/serve-<size>/part-NNN.bin (the same folder serves any count; missing parts are
 * added). Distinct contents, so a file stored under another sender's name fails its digest.
 * Returns [{ path, name, size, sha256, digests, digestTools }].
 */
export async function ensureServeFiles(dataDir, count, size, log) {
  mkdirSync(join(dataDir, `serve-${sizeLabel(size)}`), { recursive: true });
  const files = [];
  for (const { name, path } of serveParts(dataDir, count, size)) files.push({ name, ...(await ensureRandomFile(path, size, log)) });
  return files;
}

/** Bytes that ensureServeFiles would still have to write (for the free-space check). */
export function missingServeBytes(dataDir, count, size) {
  return serveParts(dataDir, count, size).filter(({ path }) => !existsSync(path) || statSync(path).size !== size).length * size;
}

function serveParts(dataDir, count, size) {
  const folder = join(dataDir, `serve-${sizeLabel(size)}`);
  return Array.from({ length: count }, (_, index) => {
    const name = `part-${String(index + 1).padStart(3, '0')}.bin`;
    return { name, path: join(folder, name) };
  });
}

async function ensureRandomFile(path, size, log) {
  if (!existsSync(path) || statSync(path).size !== size) {
    log(`generating ${path} (${sizeLabel(size)} random bytes, once)...`);
    const partial = `${path}.partial`;
    const fd = openSync(partial, 'w');
    const block = Buffer.allocUnsafe(4 * MIB);
    try {
      for (let written = 0; written < size; ) {
        const length = Math.min(block.length, size - written);
        randomFillSync(block, 0, length);
        written += writeSync(fd, block, 0, length);
      }
    } finally {
      closeSync(fd);
    }
    renameSync(partial, path);
  }
  return { path, size, ...(await ensureDigests(path, log)) };
}

/**
 * The file's digests in every algorithm ftx speaks, computed by the bench, not by ftx, and
 * cached beside the file (`<file>.digests.json`, keyed by size and mtime):
 * - sha256: node:crypto;
 * - blake3: `b3sum` (the reference Rust implementation) when it is on PATH, else hash-wasm;
 *   ftx's native BLAKE3 is @napi-rs/blake-hash, so either way it is another implementation;
 * - xxh128: hash-wasm (the library ftx uses for it; `cmp` is the independent check).
 * Returns { sha256, digests: { sha256, blake3, xxh128 }, digestTools }.
 */
export async function ensureDigests(path, log) {
  const stats = statSync(path);
  const stamp = `${stats.size} ${stats.mtimeMs}`;
  const cachePath = `${path}.digests.json`;
  try {
    const cached = JSON.parse(readFileSync(cachePath, 'utf8'));
    if (cached.stamp === stamp && DIGEST_NAMES.every((name) => typeof cached.digests?.[name] === 'string')) {
      return { sha256: cached.digests.sha256, digests: cached.digests, digestTools: cached.tools };
    }
  } catch {
    // No cache yet, or unreadable: compute.
  }
  if (stats.size >= 256 * MIB) log?.(`hashing ${path} (sha256, blake3, xxh128; once)...`);
  const b3sum = findOnPath('b3sum');
  const { createXXHash128, createBLAKE3 } = await import('hash-wasm');
  const sha256 = createHash('sha256');
  const xxh128 = await createXXHash128();
  xxh128.init();
  const wasmBlake3 = b3sum ? undefined : await createBLAKE3();
  wasmBlake3?.init();
  // b3sum reads the file in its own process while this one reads it for the other two.
  const b3 = b3sum ? runQuiet(b3sum, ['--no-names', path]) : undefined;
  // One read pass; it also pulls the file into the page cache.
  for await (const chunk of createReadStream(path, { highWaterMark: 4 * MIB })) {
    sha256.update(chunk);
    xxh128.update(chunk);
    wasmBlake3?.update(chunk);
  }
  let blake3;
  if (b3) {
    const result = await b3;
    blake3 = result.stdout.trim();
    if (result.code !== 0 || !/^[0-9a-f]{64}$/.test(blake3)) throw new Error(`b3sum ${path} failed: ${(result.stderr || result.stdout).trim()}`);
  } else {
    blake3 = wasmBlake3.digest('hex');
  }
  const digests = { sha256: sha256.digest('hex'), blake3, xxh128: xxh128.digest('hex') };
  const tools = { sha256: 'node:crypto', blake3: b3sum ? `b3sum (${b3sum})` : 'hash-wasm', xxh128: 'hash-wasm' };
  writeFileSync(cachePath, `${JSON.stringify({ stamp, digests, tools })}\n`);
  rmSync(`${path}.sha256`, { force: true }); // The cache of earlier bench versions.
  return { sha256: digests.sha256, digests, digestTools: tools };
}

/** The digest names ftx speaks (the bench computes each independently, see ensureDigests). */
export const DIGEST_NAMES = ['blake3', 'sha256', 'xxh128'];

export async function sha256File(path) {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path, { highWaterMark: 4 * MIB }), hash);
  return hash.digest('hex');
}

/** Pulls a file into the page cache so every peer reads it from memory. */
export async function warmCache(path) {
  for await (const _chunk of createReadStream(path, { highWaterMark: 4 * MIB }));
}
