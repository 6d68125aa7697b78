/**
 * Reads a V8 .cpuprofile (from `node --cpu-prof`) and ranks functions by self time.
 *
 * A profile is a call tree (`nodes`) plus a list of sampled node ids (`samples`) and the
 * microseconds between consecutive samples (`timeDeltas`). As in Chrome DevTools, the
 * interval after sample i is charged to sample i's node. Only the main thread is
 * sampled: fs reads and writes run on libuv's thread pool and show up here only as the
 * main thread's idle time, so "(idle)" is part of the story.
 */
import { readFileSync } from 'node:fs';

export function summarizeProfile(path, top = 15) {
  const profile = JSON.parse(readFileSync(path, 'utf8'));
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfMicros = new Map();
  const { samples, timeDeltas } = profile;
  for (let i = 0; i < samples.length; i++) {
    const micros = timeDeltas[i + 1] ?? 0;
    selfMicros.set(samples[i], (selfMicros.get(samples[i]) ?? 0) + micros);
  }
  const byFunction = new Map();
  let totalMicros = 0;
  for (const [id, micros] of selfMicros) {
    totalMicros += micros;
    const { callFrame } = byId.get(id);
    const where = callFrame.url ? `${shortUrl(callFrame.url)}:${callFrame.lineNumber + 1}` : '';
    const key = `${callFrame.functionName || '(anonymous)'}\u0000${where}`;
    byFunction.set(key, (byFunction.get(key) ?? 0) + micros);
  }
  const ranked = [...byFunction.entries()]
    .map(([key, micros]) => {
      const [name, where] = key.split('\u0000');
      return { function: name, where, selfMs: micros / 1000, share: totalMicros ? micros / totalMicros : 0 };
    })
    .sort((a, b) => b.selfMs - a.selfMs);
  return { path, totalMs: totalMicros / 1000, top: ranked.slice(0, top) };
}

function shortUrl(url) {
  const text = url.replace(/^file:\/\//, '');
  const marker = text.lastIndexOf('/node_modules/');
  if (marker !== -1) return text.slice(marker + 1);
  const dist = text.lastIndexOf('/dist/');
  if (dist !== -1) return text.slice(dist + 1);
  return text.replace(/^.*\//, '');
}
