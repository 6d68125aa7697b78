/**
 * Calling the caller's callbacks: what a callback throws is the caller's bug, not a
 * failed transfer, and must never crash the process (an exception in an event handler,
 * or a rejection nobody handles). It is logged (log.error) and the work goes on.
 */
import type { Log } from '../util/log.js';

/** Wraps an optional callback so that whatever it throws is logged instead. */
export function guarded<A extends unknown[]>(log: Log, name: string, callback: ((...args: A) => void) | undefined): ((...args: A) => void) | undefined {
  if (!callback) return undefined;
  return (...args: A) => {
    try {
      callback(...args);
    } catch (error) {
      log.error({ event: 'callback-error', callback: name, cause: String(error) }, `the ${name} callback failed: ${error instanceof Error ? error.message : String(error)}`);
    }
  };
}
