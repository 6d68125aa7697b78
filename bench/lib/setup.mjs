/**
 * What the benchmark needs before it can measure anything: tools (installed with apt
 * when missing and we are root), random data files (generated once, reused), and the
 * free space to hold them.
 */
import { createHash, randomFillSync } from 'node:crypto';
import { accessSync, closeSync, constants, createReadStream, existsSync, mkdirSync, openSync, readFileSync, renameSync, statSync, statfsSync, writeFileSync, writeSync } from 'node:fs';
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

function findOnPath(name) {
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
 * Returns { path, size, sha256 }; the digest is cached beside the file.
 */
export async function ensureDataFile(dataDir, size, log) {
  return ensureRandomFile(join(dataDir, `random-${sizeLabel(size)}.bin`), size, log);
}

/**
 * The many-senders scenario's inputs: `count` distinct random files of `size` bytes each,
 * bench/data/serve-<size>/part-NNN.bin (the same folder serves any count; missing parts are
 * added). Distinct contents, so a file stored under another sender's name fails its digest.
 * Returns [{ path, name, size, sha256 }].
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
  const stats = statSync(path);
  const digestPath = `${path}.sha256`;
  const stamp = `${stats.size} ${stats.mtimeMs}`;
  if (existsSync(digestPath)) {
    const [cachedStamp, digest] = readFileSync(digestPath, 'utf8').trim().split('\n');
    if (cachedStamp === stamp && digest) return { path, size, sha256: digest };
  }
  // Hashing also pulls the file into the page cache, so the first round is not the odd one out.
  const digest = await sha256File(path);
  writeFileSync(digestPath, `${stamp}\n${digest}\n`);
  return { path, size, sha256: digest };
}

export async function sha256File(path) {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path, { highWaterMark: 4 * MIB }), hash);
  return hash.digest('hex');
}

/** Pulls a file into the page cache so every peer reads it from memory. */
export async function warmCache(path) {
  for await (const _chunk of createReadStream(path, { highWaterMark: 4 * MIB }));
}
