/**
 * Pre-shared keys: who may write to a receiver, and how a sender proves it is one of
 * them. A key is 32 random bytes; its identity names the sender (in logs, results, and
 * serve mode's folder for it). On disk, one per line, as `ftx keygen` prints it:
 *
 *     web1:Q2hhbmdlIHRoaXMga2V5IGJ5IHJ1bm5pbmcgZnR4IGtleWdlbiAgIA
 *
 * A receiver's key file lists its senders; a sender's holds its own line. Blank lines and
 * lines starting with '#' are ignored.
 *
 * A one-shot receiver can instead make a code a person reads aloud (newCode): 16 symbols
 * of Crockford's base32 (80 bits), from which both ends derive the key (keyFromCode).
 * 80 bits are enough because a guess cannot be tested offline cheaply: the key is
 * stretched by scrypt (N = 2^15, ~0.1 s and 32 MiB a guess), and the TLS 1.3 handshake
 * an eavesdropper records only lets it test guesses against the derived key; 2^80
 * guesses at a million a second would take 38 billion years, and the code is valid for
 * one receiver run.
 */
import { createHash, hkdf, randomBytes, randomInt, scrypt } from 'node:crypto';
import { open } from 'node:fs/promises';
import { AuthError, LocalIoError, localIoError, UsageError } from '../errors.js';
import { caseFoldKey, problemWithName } from '../fs/names.js';
import { parseByteSize } from '../util/units.js';

/** A sender's secret: its identity and the 32-byte key. */
export interface SenderKey {
  identity: string;
  key: Buffer;
  /** On a receiver's list: the most bytes this identity may have stored (`quota=SIZE` on its line). */
  quota?: number | undefined;
}

/** Bytes of every key. */
export const KEY_BYTES = 32;

/** Longest identity, in UTF-8 bytes: it travels in the TLS ClientHello (Node allows 256 there). */
export const MAX_IDENTITY_BYTES = 128;

/** The identity a code's key goes under: there is one code per receiver run. */
export const CODE_IDENTITY = 'code';

/** A new key line for `identity`: what `ftx keygen --id` prints. */
export function generateKey(identity: string): string {
  const problem = problemWithIdentity(identity);
  if (problem) throw new UsageError(`cannot make a key for ${JSON.stringify(identity)}: ${problem}`);
  return `${identity}:${randomBytes(KEY_BYTES).toString('base64url')}`;
}

/** Why `identity` cannot name a sender, or undefined if it can. */
export function problemWithIdentity(identity: string): string | undefined {
  if (identity.length === 0) return 'the identity is empty';
  if (Buffer.byteLength(identity, 'utf8') > MAX_IDENTITY_BYTES) return `the identity is longer than ${MAX_IDENTITY_BYTES} bytes`;
  if (identity.includes(':')) return 'the identity contains ":"';
  if (identity !== identity.normalize('NFC')) return 'the identity is not in Unicode NFC';
  if (identity.startsWith('.')) return 'the identity starts with a dot';
  if (identity === CODE_IDENTITY) return `"${CODE_IDENTITY}" is what codes are called; give the sender another name`;
  // It names the sender's folder on a serving receiver: the rules of a file name hold.
  const nameProblem = problemWithName(identity);
  return nameProblem === undefined ? undefined : `the identity cannot be a folder name (${nameProblem})`;
}

/**
 * What a key is called on the wire (the TLS PSK identity): the identity and a short
 * fingerprint of the key (64 bits of its SHA-256, which say nothing about it), so that
 * one identity may have two keys while it changes over from one to the other.
 */
export function wireIdentity(key: SenderKey): string {
  return `${key.identity}:${createHash('sha256').update(key.key).digest('hex').slice(0, 16)}`;
}

/** The keys a receiver takes, by wire identity. */
export type KeyRing = Map<string, SenderKey>;

/**
 * The keys in a key file's text. `source` names the file in errors. Every line is
 * checked: a malformed one is an error, never skipped (a typo must not lock a sender out
 * silently, nor let one in). An identity may be listed with two keys (a change-over).
 */
export function parseKeys(text: string, source: string): KeyRing {
  const keys: KeyRing = new Map();
  /** Identities by case fold: "web1" and "Web1" would share a folder where names fold case. */
  const folded = new Map<string, string>();
  const lines = text.split(/\r?\n/);
  for (const [index, raw] of lines.entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const where = `${source}, line ${index + 1}`;
    // IDENTITY:KEY, then options: quota=SIZE.
    const [keyPart = '', ...options] = line.split(/\s+/);
    const colon = keyPart.lastIndexOf(':');
    if (colon <= 0) throw new UsageError(`${where} is not a key line (IDENTITY:KEY, as ftx keygen prints it)`);
    const identity = keyPart.slice(0, colon);
    const problem = problemWithIdentity(identity);
    if (problem) throw new UsageError(`${where}: ${problem}`);
    let quota: number | undefined;
    for (const option of options) {
      const match = /^quota=(.+)$/.exec(option);
      quota = match ? parseByteSize(match[1] as string) : undefined;
      if (quota === undefined) throw new UsageError(`${where}: ${JSON.stringify(option)} is not an option of a key line (quota=SIZE, e.g. quota=50G)`);
    }
    const encoded = keyPart.slice(colon + 1);
    const key = Buffer.from(encoded, 'base64url');
    if (!/^[A-Za-z0-9_-]+$/.test(encoded) || key.length !== KEY_BYTES) {
      throw new UsageError(`${where}: the key of ${JSON.stringify(identity)} is not ${KEY_BYTES} bytes of base64url (make one with ftx keygen)`);
    }
    const twin = folded.get(caseFoldKey(identity));
    if (twin !== undefined && twin !== identity) throw new UsageError(`${where}: ${JSON.stringify(identity)} and ${JSON.stringify(twin)} differ only in case, and would share a folder where names fold case; rename one`);
    folded.set(caseFoldKey(identity), identity);
    const entry: SenderKey = quota === undefined ? { identity, key } : { identity, key, quota };
    const wire = wireIdentity(entry);
    if (keys.has(wire)) throw new UsageError(`${where}: this key of ${JSON.stringify(identity)} is listed twice`);
    keys.set(wire, entry);
  }
  if (keys.size === 0) throw new UsageError(`${source} holds no key (make one with ftx keygen)`);
  return keys;
}

/** The one key of a sender's key text. */
export function parseSenderKey(text: string, source: string): SenderKey {
  const keys = parseKeys(text, source);
  if (keys.size !== 1) throw new UsageError(`${source} holds ${keys.size} keys; a sender uses one (its own line)`);
  return [...keys.values()][0] as SenderKey;
}

/**
 * Reads a key file, refusing one that others can read: a key is a password, and ssh
 * refuses private keys readable by group or others for the same reason.
 */
export async function readKeyFile(path: string): Promise<string> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (error) {
    throw localIoError(error, 'read', path);
  }
  try {
    const stats = await handle.stat();
    if (!stats.isFile()) throw new LocalIoError(`cannot read keys from ${path}: it is not a regular file`);
    if ((stats.mode & 0o077) !== 0) {
      throw new AuthError(`${path} can be read by other users (mode ${(stats.mode & 0o777).toString(8).padStart(3, '0')}); keys must be private: chmod 600 ${path}`);
    }
    if (stats.size > 1024 * 1024) throw new LocalIoError(`${path} is larger than 1 MiB: not a key file`);
    return await handle.readFile('utf8');
  } finally {
    await handle.close();
  }
}

// ---- codes -------------------------------------------------------------------------------

/** Crockford's base32 in lower case: no i, l, o or u (they read as 1, 1, 0, or make words). */
const CODE_ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz';
const CODE_SYMBOLS = 16;

/** A fresh code, four groups of four: "7h3k-9xq2-mm4d-p8rt" (80 bits). */
export function newCode(): string {
  const symbols = Array.from({ length: CODE_SYMBOLS }, () => CODE_ALPHABET[randomInt(CODE_ALPHABET.length)]).join('');
  return (symbols.match(/.{4}/g) as string[]).join('-');
}

/**
 * The code's 16 symbols, or undefined if `input` is not a code. Forgiving as people
 * type: any case, spaces or dashes anywhere, O for 0, I and L for 1.
 */
export function canonicalCode(input: string): string | undefined {
  const symbols = input.normalize('NFKC').toLowerCase().replace(/[\s\-_.]/g, '').replace(/o/g, '0').replace(/[il]/g, '1');
  if (symbols.length !== CODE_SYMBOLS || [...symbols].some((symbol) => !CODE_ALPHABET.includes(symbol))) return undefined;
  return symbols;
}

const CODE_SALT = Buffer.from('ftx code v1');
const SCRYPT_COST = 2 ** 15;

/** The key both ends derive from a code: scrypt (to make guessing slow), then HKDF (to bind it to this use). */
export async function keyFromCode(code: string): Promise<SenderKey> {
  const symbols = canonicalCode(code);
  if (symbols === undefined) throw new UsageError(`${JSON.stringify(code)} is not an ftx code (16 letters and digits, as the receiver printed it: 7h3k-9xq2-mm4d-p8rt)`);
  const stretched = await new Promise<Buffer>((resolve, reject) => {
    scrypt(symbols, CODE_SALT, KEY_BYTES, { N: SCRYPT_COST, r: 8, p: 1, maxmem: 64 * 1024 * 1024 }, (error, key) => (error ? reject(error) : resolve(key)));
  });
  const key = await new Promise<ArrayBuffer>((resolve, reject) => {
    hkdf('sha256', stretched, CODE_SALT, 'ftx tls 1.3 external psk', KEY_BYTES, (error, derived) => (error ? reject(error) : resolve(derived)));
  });
  return { identity: CODE_IDENTITY, key: Buffer.from(key) };
}
