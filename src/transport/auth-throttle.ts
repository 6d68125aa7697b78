/**
 * Slows down an address that keeps failing to prove a key: after FAILURES_ALLOWED failed
 * handshakes within WINDOW_MS, its connections are turned away for a while, twice as
 * long each time it starts again (up to MAX_BLOCK_MS). A guess costs the guesser a
 * connection and the receiver a handshake; this bounds how many a minute one address
 * gets, and keeps the log from filling with them.
 *
 * Memory is bounded: at most MAX_TRACKED addresses, the oldest forgotten first (an
 * attacker with many addresses gains nothing by it: each is throttled on its own, and
 * the keys' 256 bits or the code's 80 do the rest).
 */
export const FAILURES_ALLOWED = 5;
export const WINDOW_MS = 60_000;
export const FIRST_BLOCK_MS = 30_000;
export const MAX_BLOCK_MS = 10 * 60_000;
const MAX_TRACKED = 4096;

interface Record {
  failures: number;
  windowStart: number;
  blockedUntil: number;
  /** The last block's length: the next one doubles it. */
  lastBlockMs: number;
}

export class AuthThrottle {
  readonly #records = new Map<string, Record>();
  readonly #now: () => number;

  constructor(now: () => number = () => performance.now()) {
    this.#now = now;
  }

  /** Milliseconds `address` must still wait, or 0 if it may try. */
  blockedFor(address: string): number {
    const record = this.#records.get(address);
    if (!record) return 0;
    return Math.max(0, record.blockedUntil - this.#now());
  }

  /** A handshake from `address` failed its key check. */
  failed(address: string): void {
    const now = this.#now();
    let record = this.#records.get(address);
    if (record) {
      this.#records.delete(address); // re-inserted below: the map's order is recency
    } else {
      record = { failures: 0, windowStart: now, blockedUntil: 0, lastBlockMs: 0 };
    }
    if (now - record.windowStart > WINDOW_MS) {
      record.failures = 0;
      record.windowStart = now;
    }
    record.failures += 1;
    if (record.failures >= FAILURES_ALLOWED) {
      record.lastBlockMs = Math.min(MAX_BLOCK_MS, record.lastBlockMs === 0 ? FIRST_BLOCK_MS : record.lastBlockMs * 2);
      record.blockedUntil = now + record.lastBlockMs;
      record.failures = 0;
      record.windowStart = now;
    }
    this.#records.set(address, record);
    if (this.#records.size > MAX_TRACKED) this.#records.delete(this.#records.keys().next().value as string);
  }

  /** A handshake from `address` proved its key: its slate is clean. */
  succeeded(address: string): void {
    this.#records.delete(address);
  }
}
