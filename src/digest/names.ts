/** The digests ftx knows, by the names the protocol, the API and the CLI spell (registry.ts has the rest). */
export const DIGEST_NAMES = ['blake3', 'sha256', 'xxh128'] as const;

/** A digest's name. */
export type DigestName = (typeof DIGEST_NAMES)[number];

/**
 * The digest used when none is asked for: BLAKE3, cryptographic and what `b3sum` prints,
 * at about 3x SHA-256's speed natively (5.8 vs 1.8 GB/s on one core of the build machine).
 */
export const DEFAULT_DIGEST: DigestName = 'blake3';

/**
 * What a peer that does not list its digests (ftx 0.1, protocol 1 without `digests` in its
 * Greeting) is known to accept.
 */
export const LEGACY_DIGESTS: readonly DigestName[] = ['sha256', 'xxh128'];
