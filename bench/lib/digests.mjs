/**
 * Each digest's rate on this machine, in this process, on one core: `totalBytes` of random
 * data in memory fed as `chunkBytes` updates (1 MiB, the size ftx hashes at), for:
 *   - blake3 native   ftx's registry (dist/index.js DIGESTS.blake3), when blake3Engine() says native
 *   - blake3 wasm     hash-wasm createBLAKE3 directly: ftx's fallback where the native module cannot load
 *   - sha256          DIGESTS.sha256 (node:crypto)
 *   - xxh128          DIGESTS.xxh128 (hash-wasm)
 * at two working sets: "hot" (one 1 MiB buffer over and over: in L2, like a chunk hashed
 * right after the kernel copied it in) and "cold" (64 distinct 1 MiB buffers, 64 MiB: beyond
 * the caches, like hashing a buffer long after it arrived). Each round runs every digest once
 * per working set, in an order rotated each round; medians are reported.
 *
 * CPU is process.cpuUsage() around the loop; CPU / wall near 1.0 says it ran on one core.
 * All of them hash the same byte sequence, so native and wasm BLAKE3 must print the same digest.
 */
import { randomFillSync } from 'node:crypto';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { summarize } from './stats.mjs';

const GIB = 1024 ** 3;
const COLD_BUFFERS = 64;

export async function measureDigestRates({ root, totalBytes, chunkBytes = 1024 * 1024, rounds, log }) {
  const registry = await import(pathToFileURL(join(root, 'dist', 'index.js')).href);
  const { createBLAKE3 } = await import('hash-wasm');
  const engine = registry.blake3Engine();
  const fromRegistry = (name) => () => registry.DIGESTS[name].create();
  const candidates = [
    {
      id: 'blake3 native',
      implementation: '@napi-rs/blake-hash via ftx DIGESTS.blake3',
      create: fromRegistry('blake3'),
      skip: engine.kind === 'native' ? undefined : `ftx's native BLAKE3 did not load here (${engine.reason ?? 'no reason given'}); ftx uses the wasm row`,
    },
    {
      id: 'blake3 wasm',
      implementation: "hash-wasm createBLAKE3 (ftx's fallback)",
      create: async () => {
        const hash = await createBLAKE3();
        hash.init();
        return { update: (chunk) => hash.update(chunk), digest: () => hash.digest('hex') };
      },
    },
    { id: 'sha256', implementation: 'node:crypto via ftx DIGESTS.sha256', create: fromRegistry('sha256') },
    { id: 'xxh128', implementation: 'hash-wasm via ftx DIGESTS.xxh128', create: fromRegistry('xxh128') },
  ];
  const active = candidates.filter((candidate) => !candidate.skip);
  const updates = Math.max(1, Math.round(totalBytes / chunkBytes));
  const bytes = updates * chunkBytes;
  const pools = {
    hot: [randomFillSync(Buffer.allocUnsafeSlow(chunkBytes))],
    cold: Array.from({ length: COLD_BUFFERS }, () => randomFillSync(Buffer.allocUnsafeSlow(chunkBytes))),
  };
  const samples = new Map(active.flatMap((candidate) => Object.keys(pools).map((set) => [`${candidate.id}|${set}`, []])));
  const digests = new Map();

  for (let round = 0; round < rounds; round++) {
    const order = active.map((_, index) => active[(index + round) % active.length]);
    for (const set of Object.keys(pools)) {
      const pool = pools[set];
      for (const candidate of order) {
        // Warm-up on a throwaway hasher: module load, wasm instantiation, JIT.
        const warm = await candidate.create();
        for (let i = 0; i < 4; i++) warm.update(pool[i % pool.length]);
        warm.digest();
        const hasher = await candidate.create();
        const cpu0 = process.cpuUsage();
        const t0 = performance.now();
        for (let i = 0; i < updates; i++) hasher.update(pool[i % pool.length]);
        const digest = hasher.digest();
        const seconds = (performance.now() - t0) / 1000;
        const cpu = process.cpuUsage(cpu0);
        const cpuSeconds = (cpu.user + cpu.system) / 1e6;
        samples.get(`${candidate.id}|${set}`).push({ gbps: bytes / seconds / 1e9, cpuPerGiB: cpuSeconds / (bytes / GIB), cpuOverWall: cpuSeconds / seconds });
        digests.set(`${candidate.id}|${set}`, digest);
      }
    }
    log?.(`digests ${round + 1}/${rounds} done`);
  }

  const rows = candidates.map((candidate) => {
    if (candidate.skip) return { id: candidate.id, implementation: candidate.implementation, skipped: candidate.skip };
    const row = { id: candidate.id, implementation: candidate.implementation };
    for (const set of Object.keys(pools)) {
      const mine = samples.get(`${candidate.id}|${set}`);
      row[set] = {
        gbps: summarize(mine.map((sample) => sample.gbps)),
        cpuPerGiB: summarize(mine.map((sample) => sample.cpuPerGiB)),
        cpuOverWall: summarize(mine.map((sample) => sample.cpuOverWall)),
        samples: mine,
      };
    }
    return row;
  });
  // Same bytes, same order: the two BLAKE3 implementations must agree.
  let blake3Agree = null;
  if (!candidates[0].skip) blake3Agree = Object.keys(pools).every((set) => digests.get(`blake3 native|${set}`) === digests.get(`blake3 wasm|${set}`));
  return {
    bytes,
    chunkBytes,
    rounds,
    workingSets: { hot: `1 buffer of ${chunkBytes / 1024 / 1024} MiB`, cold: `${COLD_BUFFERS} buffers of ${chunkBytes / 1024 / 1024} MiB` },
    engine,
    rows,
    blake3Agree,
  };
}
