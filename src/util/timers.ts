/**
 * Waiting with a limit, and listening for an abort, without leaking: every timer is
 * cleared and every listener removed however the wait ends.
 */

/** What `promise` settles to, or `onTimeout()` once `ms` have passed; the timer never outlives the wait. */
export async function within<T, F>(promise: Promise<T>, ms: number, onTimeout: () => F): Promise<T | F> {
  let timer: NodeJS.Timeout | undefined;
  const timeUp = new Promise<F>((resolve) => {
    timer = setTimeout(() => resolve(onTimeout()), ms);
  });
  try {
    return await Promise.race([promise, timeUp]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Runs `onAbort` once when `signal` aborts, at once if it already has. Returns the
 * function that stops listening (call it in a finally).
 */
export function whenAborted(signal: AbortSignal | undefined, onAbort: () => void): () => void {
  if (!signal) return () => {};
  if (signal.aborted) {
    onAbort();
    return () => {};
  }
  signal.addEventListener('abort', onAbort, { once: true });
  return () => signal.removeEventListener('abort', onAbort);
}
