/** Human-readable sizes for messages: binary units, as ls -h and df -h print them. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(value < 10 ? 2 : 1)} ${units[unit]}`;
}

/** Parses "500", "64K", "1.5G", "2TiB" into bytes; undefined if it is not a size. */
export function parseByteSize(text: string): number | undefined {
  const match = /^(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?$/i.exec(text.trim());
  if (!match) return undefined;
  const power = ' kmgtp'.indexOf((match[2] || ' ').toLowerCase());
  const bytes = Math.floor(Number(match[1]) * 1024 ** power);
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

/**
 * A rate for people, in the same binary units as formatBytes and the progress bar:
 * "183.5 MiB/s". (Scripts get bytesPerSecond in the --json summary instead.)
 */
export function formatRate(bytes: number, seconds: number): string {
  return `${formatBytes(bytesPerSecond(bytes, seconds))}/s`;
}

/** Whole bytes per second; a transfer too short to time counts as taking 1 µs. */
export function bytesPerSecond(bytes: number, seconds: number): number {
  return Math.round(bytes / Math.max(seconds, 1e-6));
}

/** "1 file", "2 files", "0 files": a count and its noun, in the right number. */
export function plural(count: number, noun: string, nounPlural = `${noun}s`): string {
  return `${count} ${count === 1 ? noun : nounPlural}`;
}

/** "120 MiB of 200 MiB (60%)": how far a transfer got; the percentage is rounded down. */
export function formatProgress(done: number, total: number): string {
  const percent = total > 0 ? Math.floor((done / total) * 100) : 100;
  return `${formatBytes(done)} of ${formatBytes(total)} (${percent}%)`;
}

/** Parses a duration: "90" or "90s" (seconds), "30m", "36h", "7d"; undefined if it is not one. */
export function parseDuration(text: string): number | undefined {
  const match = /^(\d+(?:\.\d+)?)\s*([smhd]?)$/i.exec(text.trim());
  if (!match) return undefined;
  const unitSeconds = { '': 1, s: 1, m: 60, h: 3600, d: 86400 }[(match[2] ?? '').toLowerCase()] ?? 1;
  const ms = Math.round(Number(match[1]) * unitSeconds * 1000);
  return Number.isSafeInteger(ms) ? ms : undefined;
}
