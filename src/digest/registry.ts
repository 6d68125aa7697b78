/**
 * The digests both ends compute over the data: one registry, the only place that knows
 * each algorithm's name, the length of its hex digest, and how to make a hasher.
 *
 * - blake3 (the default): cryptographic, what `b3sum` prints. Native code from
 *   @napi-rs/blake-hash (prebuilt per platform, an optional dependency) at ~5.8 GB/s on
 *   one core here; where that binary cannot load (a platform without one, an install
 *   that skipped optional dependencies), the same digest from hash-wasm's WebAssembly at
 *   ~0.6 GB/s: slower, never wrong. Which one runs is reported (blake3Engine()).
 * - sha256 (node:crypto): what `sha256sum` prints; ~1.8 GB/s here (SHA-NI).
 * - xxh128 (hash-wasm): a non-cryptographic checksum, as rsync and croc use; it catches
 *   corruption as surely, not tampering.
 */
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { DIGEST_NAMES, type DigestName } from './names.js';

export { DEFAULT_DIGEST, DIGEST_NAMES, LEGACY_DIGESTS, type DigestName } from './names.js';

export interface Hasher {
  update(chunk: Buffer): void;
  /** Lowercase hex. */
  digest(): string;
  /**
   * The digest of the bytes so far, without ending the hash: more may be added after it.
   * Resuming needs both the digest of a file's first N bytes (the prefix both ends prove
   * they share) and the hash of the whole file, from one pass over the prefix.
   */
  snapshot(): string;
}

export interface DigestAlgorithm {
  /** Hex digits of a digest: what a peer's digest is checked against. */
  readonly hexLength: number;
  /** What it is, for people (--help, docs). */
  readonly description: string;
  create(): Promise<Hasher>;
}

/** Which code computes BLAKE3 in this process: native, or the WebAssembly fallback (and why). */
export interface Blake3Engine {
  kind: 'native' | 'wasm';
  /** Why the native module could not be used (wasm only). */
  reason?: string;
}

interface NativeBlake3 {
  /** digest() does not end the hash (BLAKE3's finalize is non-destructive): more may follow. */
  Blake3Hasher: new () => { update(input: Uint8Array): unknown; digest(format: 'hex'): string };
  blake3(input: Buffer): Buffer;
}

let engine: { native: NativeBlake3 | undefined; info: Blake3Engine } | undefined;

/** Loads the native BLAKE3 module once; remembers why not when it cannot. */
function blake3Native(): NativeBlake3 | undefined {
  if (!engine) {
    try {
      // CommonJS with a prebuilt .node per platform: require, not import.
      const native = createRequire(import.meta.url)('@napi-rs/blake-hash') as NativeBlake3;
      engine = { native, info: { kind: 'native' } };
    } catch (error) {
      const cause = (error as Error & { cause?: unknown }).cause;
      const reason = `${error instanceof Error ? error.message.split('\n')[0] : String(error)}${cause instanceof Error ? ` (${cause.message.split('\n')[0]})` : ''}`;
      engine = { native: undefined, info: { kind: 'wasm', reason } };
    }
  }
  return engine.native;
}

/** Which BLAKE3 implementation this process uses (loading it if it has not yet). */
export function blake3Engine(): Blake3Engine {
  blake3Native();
  return (engine as { info: Blake3Engine }).info;
}

export const DIGESTS = {
  blake3: {
    hexLength: 64,
    description: 'BLAKE3, what b3sum prints (the default)',
    create: async () => {
      const native = blake3Native();
      if (native) {
        const hash = new native.Blake3Hasher();
        return { update: (chunk) => hash.update(chunk), digest: () => hash.digest('hex'), snapshot: () => hash.digest('hex') };
      }
      const { createBLAKE3 } = await import('hash-wasm');
      return wasmHasher(await createBLAKE3());
    },
  },
  sha256: {
    hexLength: 64,
    description: 'SHA-256, what sha256sum prints',
    create: async () => {
      const hash = createHash('sha256');
      return { update: (chunk) => hash.update(chunk), digest: () => hash.digest('hex'), snapshot: () => hash.copy().digest('hex') };
    },
  },
  xxh128: {
    hexLength: 32,
    description: 'XXH3-128, a fast non-cryptographic checksum (xxhsum -H2)',
    create: async () => {
      const { createXXHash128 } = await import('hash-wasm');
      return wasmHasher(await createXXHash128());
    },
  },
} as const satisfies Record<DigestName, DigestAlgorithm>;

/** A hash-wasm hasher: its state is saved and restored around a snapshot's digest (which ends it). */
function wasmHasher(hash: { init(): unknown; update(data: Uint8Array): unknown; digest(format: 'hex'): string; save(): Uint8Array; load(state: Uint8Array): unknown }): Hasher {
  hash.init();
  return {
    update: (chunk) => hash.update(chunk),
    digest: () => hash.digest('hex'),
    snapshot: () => {
      const state = hash.save();
      const digest = hash.digest('hex');
      hash.load(state);
      return digest;
    },
  };
}

export function isDigestName(name: unknown): name is DigestName {
  return (DIGEST_NAMES as readonly unknown[]).includes(name);
}

export function createHasher(name: DigestName): Promise<Hasher> {
  return DIGESTS[name].create();
}

/**
 * The digest of bytes held whole (a small file of a session): native BLAKE3 in one call,
 * without a hasher object per file; the others through their hasher.
 */
export async function digestOfBytes(name: DigestName, bytes: Buffer): Promise<string> {
  if (name === 'blake3') {
    const native = blake3Native();
    if (native) return native.blake3(bytes).toString('hex');
  }
  const hash = await createHasher(name);
  hash.update(bytes);
  return hash.digest();
}
