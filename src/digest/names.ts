/** The digests ftx knows, by the names the protocol, the API and the CLI spell (registry.ts has the rest). */
export const DIGEST_NAMES = ['sha256', 'xxh128'] as const;

/** A digest's name. */
export type DigestName = (typeof DIGEST_NAMES)[number];

/** The digest used when none is asked for. */
export const DEFAULT_DIGEST: DigestName = 'sha256';
