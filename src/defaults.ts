/**
 * Every default of the library and the CLI, in one place: the API's TSDoc and the CLI's
 * --help quote these, and loading this file costs nothing (no imports).
 */

/** TCP port a receiver listens on and a sender connects to. */
export const DEFAULT_PORT = 9999;

/** Give up on a peer that sends nothing for this long, and on connecting (ms). */
export const DEFAULT_TIMEOUT_MS = 30_000;

/**
 * From connect to a complete header (or ping, or classic size), ms. A sender sends its
 * header the moment it reads the greeting, so one round trip is all it needs. Fixed, not
 * reset by traffic: a peer dribbling a byte every few seconds is cut all the same.
 */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 5_000;

/**
 * After the Accept, the sender must average at least this many bytes per second over
 * every idle-timeout window spent waiting for it (1 KiB/s: any real link does far more).
 */
export const DEFAULT_MIN_BYTES_PER_SECOND = 1024;

/** Serve mode: transfers in flight at once; more senders are refused as busy. */
export const DEFAULT_MAX_TRANSFERS = 64;

/** Connections at once from one host (an IPv4 address, an IPv6 /64), handshaking or transferring. */
export const DEFAULT_PER_HOST_CONNECTIONS = 16;

/** Serve mode: transfers in flight at once from one host. */
export const DEFAULT_PER_HOST_TRANSFERS = 8;

/** Connections still in their handshake, all hosts together; beyond it the oldest of the busiest host is dropped. */
export const DEFAULT_MAX_PENDING = 128;

/**
 * Partial files kept to resume (and temporary files of transfers that died with their
 * receiver) untouched this long are removed, and never resumed (ms): a week, so a nightly
 * backup cut on Friday still resumes on Monday.
 */
export const DEFAULT_PARTIAL_MAX_AGE_MS = 7 * 24 * 60 * 60 * 1000;

/** Serve mode: how long close() lets transfers in flight finish before cutting them (ms). */
export const DEFAULT_GRACE_MS = 30_000;
