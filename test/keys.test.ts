/**
 * Keys, codes and the throttle on failed key checks (src/transport/keys.ts,
 * src/transport/auth-throttle.ts): pure parts, no network. The TLS transfers themselves
 * are in trust.test.ts.
 */
import { chmod, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AuthError, UsageError } from '../src/errors.js';
import { AuthThrottle, FAILURES_ALLOWED, FIRST_BLOCK_MS, MAX_BLOCK_MS, WINDOW_MS } from '../src/transport/auth-throttle.js';
import { canonicalCode, generateKey, keyFromCode, newCode, parseKeys, parseSenderKey, readKeyFile, wireIdentity } from '../src/transport/keys.js';
import { tempFolder } from './helpers/files.js';

describe('key lines', () => {
  it('generateKey makes IDENTITY:KEY with 32 random bytes in base64url, different each time', () => {
    const line = generateKey('web1');
    expect(line).toMatch(/^web1:[A-Za-z0-9_-]{43}$/);
    expect(generateKey('web1')).not.toBe(line);
    expect(parseSenderKey(line, 'k').key).toHaveLength(32);
  });

  it('refuses identities that cannot name a sender or its folder', () => {
    for (const bad of ['', 'a:b', '..', 'a/b', '.hidden', 'x'.repeat(129), 'caf\u0065\u0301']) {
      expect(() => generateKey(bad), JSON.stringify(bad)).toThrow(UsageError);
    }
  });

  it('parses a key file: comments and blank lines ignored, every bad line an error naming its line', () => {
    const a = generateKey('web1');
    const b = generateKey('web2');
    const ring = parseKeys(`# senders\n\n${a}\n  ${b}  \n`, 'senders.keys');
    expect([...ring.values()].map((key) => key.identity).sort()).toEqual(['web1', 'web2']);
    expect(() => parseKeys(`${a}\nweb3:short\n`, 'senders.keys')).toThrow(/senders\.keys, line 2: the key of "web3" is not 32 bytes/);
    expect(() => parseKeys('no colon here', 'f')).toThrow(/f, line 1 is not a key line/);
    expect(() => parseKeys(`${a}\n${a}\n`, 'f')).toThrow(/line 2: this key of "web1" is listed twice/);
    expect(() => parseKeys('# nothing\n', 'f')).toThrow(/holds no key/);
  });

  it('one identity may have two keys during a change-over: each is its own wire identity', () => {
    const old = generateKey('web1');
    const fresh = generateKey('web1');
    const ring = parseKeys(`${old}\n${fresh}\n`, 'f');
    expect(ring.size).toBe(2);
    const oldKey = parseSenderKey(old, 'old');
    const freshKey = parseSenderKey(fresh, 'fresh');
    expect(ring.get(wireIdentity(oldKey))?.key.equals(oldKey.key)).toBe(true);
    expect(ring.get(wireIdentity(freshKey))?.key.equals(freshKey.key)).toBe(true);
    expect(wireIdentity(oldKey)).toMatch(/^web1:[0-9a-f]{16}$/);
  });

  it('refuses two identities that differ only in case (they would share a folder where names fold case), and the name "code"', () => {
    expect(() => parseKeys(`${generateKey('web1')}\n${generateKey('Web1')}\n`, 'f')).toThrow(/line 2: "Web1" and "web1" differ only in case/);
    expect(() => generateKey('code')).toThrow(/what codes are called/);
  });

  it('a sender key file holds exactly one key', () => {
    expect(() => parseSenderKey(`${generateKey('a')}\n${generateKey('b')}`, 'mine.key')).toThrow(/holds 2 keys; a sender uses one/);
  });

  it('readKeyFile refuses a file others can read, with the chmod to run', async () => {
    const path = join(await tempFolder(), 'web1.key');
    await writeFile(path, `${generateKey('web1')}\n`);
    await chmod(path, 0o644);
    await expect(readKeyFile(path)).rejects.toSatisfy((error: unknown) => error instanceof AuthError && /mode 644\); keys must be private: chmod 600 /.test(error.message));
    await chmod(path, 0o600);
    await expect(readKeyFile(path)).resolves.toMatch(/^web1:/);
    await chmod(path, 0o400);
    await expect(readKeyFile(path)).resolves.toMatch(/^web1:/);
  });
});

describe('codes', () => {
  it('newCode: four groups of four Crockford base32 symbols (80 bits), different each time', () => {
    const code = newCode();
    expect(code).toMatch(/^[0-9a-hjkmnp-tv-z]{4}(-[0-9a-hjkmnp-tv-z]{4}){3}$/);
    expect(newCode()).not.toBe(code);
  });

  it('reads a code as people type it: any case, spaces, O for 0, I and L for 1', () => {
    expect(canonicalCode('7h3k-9xq2-mm4d-p8rt')).toBe('7h3k9xq2mm4dp8rt');
    expect(canonicalCode(' 7H3K 9XQ2 MM4D P8RT ')).toBe('7h3k9xq2mm4dp8rt');
    expect(canonicalCode('o0il-0000-0000-0000')).toBe('0011000000000000');
    expect(canonicalCode('7h3k-9xq2-mm4d')).toBeUndefined();
    expect(canonicalCode('uuuu-0000-0000-0000')).toBeUndefined();
  });

  it('both ends derive the same key from a code, and another code gives another key', async () => {
    const code = newCode();
    const a = await keyFromCode(code);
    const b = await keyFromCode(code.toUpperCase());
    expect(a.identity).toBe('code');
    expect(a.key.equals(b.key)).toBe(true);
    expect((await keyFromCode(newCode())).key.equals(a.key)).toBe(false);
    await expect(keyFromCode('not a code')).rejects.toThrow(UsageError);
  });
});

describe('the throttle on failed key checks', () => {
  it(`lets ${FAILURES_ALLOWED - 1} failures a minute through, blocks at the ${FAILURES_ALLOWED}th, doubling each time, and forgets on success`, () => {
    let now = 0;
    const throttle = new AuthThrottle(() => now);
    for (let i = 1; i < FAILURES_ALLOWED; i++) throttle.failed('10.0.0.1');
    expect(throttle.blockedFor('10.0.0.1')).toBe(0);
    throttle.failed('10.0.0.1');
    expect(throttle.blockedFor('10.0.0.1')).toBe(FIRST_BLOCK_MS);
    expect(throttle.blockedFor('10.0.0.2')).toBe(0);
    now += FIRST_BLOCK_MS;
    expect(throttle.blockedFor('10.0.0.1')).toBe(0);
    for (let i = 0; i < FAILURES_ALLOWED; i++) throttle.failed('10.0.0.1');
    expect(throttle.blockedFor('10.0.0.1')).toBe(2 * FIRST_BLOCK_MS);
    for (let round = 0; round < 10; round++) {
      now += MAX_BLOCK_MS;
      for (let i = 0; i < FAILURES_ALLOWED; i++) throttle.failed('10.0.0.1');
    }
    expect(throttle.blockedFor('10.0.0.1')).toBe(MAX_BLOCK_MS);
    throttle.succeeded('10.0.0.1');
    expect(throttle.blockedFor('10.0.0.1')).toBe(0);
  });

  it('failures spread wider than the window do not add up', () => {
    let now = 0;
    const throttle = new AuthThrottle(() => now);
    for (let i = 0; i < 3 * FAILURES_ALLOWED; i++) {
      throttle.failed('10.0.0.1');
      now += WINDOW_MS / (FAILURES_ALLOWED - 1) + 1;
      if (i % FAILURES_ALLOWED === FAILURES_ALLOWED - 2) now += WINDOW_MS;
    }
    expect(throttle.blockedFor('10.0.0.1')).toBe(0);
  });
});
