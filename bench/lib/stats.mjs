/** Small statistics for a noisy machine: medians and ranges, never means. */

export function median(values) {
  const sorted = values.filter((value) => typeof value === 'number' && Number.isFinite(value)).sort((a, b) => a - b);
  if (sorted.length === 0) return null;
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

export function range(values) {
  const finite = values.filter((value) => typeof value === 'number' && Number.isFinite(value));
  if (finite.length === 0) return null;
  return { min: Math.min(...finite), max: Math.max(...finite) };
}

export function summarize(values) {
  const spread = range(values);
  return { median: median(values), min: spread?.min ?? null, max: spread?.max ?? null, n: values.filter(Number.isFinite).length };
}

export const MB = 1e6;
