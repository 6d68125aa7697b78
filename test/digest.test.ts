/**
 * The digest registry (src/digest/): every algorithm gives the digest an independent
 * implementation gives, however the data is cut into updates; BLAKE3 matches `b3sum`
 * (when installed); and a sender picks a digest the receiver knows. What happens when
 * the native BLAKE3 module cannot load is in package.test.ts (an install without
 * optional dependencies: the real way it goes missing).
 */
import { execFile, execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { blake3Engine, createHasher, DEFAULT_DIGEST, DIGESTS } from '../src/digest/registry.js';
import { FrameType } from '../src/framing.js';
import { jsonFrame } from '../src/protocol/messages.js';
import { runCli, summaryOf } from './helpers/cli.js';
import { tempFolder } from './helpers/files.js';
import { fakeReceiver } from './helpers/fake-receiver.js';

const run = promisify(execFile);
const FIXTURE_JPEG = new URL('./fixtures/06.jpg', import.meta.url).pathname;

/** Independent implementations: hash-wasm's BLAKE3 (not the native module), node:crypto, hash-wasm's xxh128. */
async function reference(name: keyof typeof DIGESTS, data: Buffer): Promise<string> {
  const wasm = await import('hash-wasm');
  if (name === 'blake3') return wasm.blake3(data);
  if (name === 'xxh128') return wasm.xxhash128(data);
  return createHash('sha256').update(data).digest('hex');
}

function hasB3sum(): boolean {
  try {
    execFileSync('b3sum', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

describe('the digest registry', () => {
  it('BLAKE3 is the default, computed by the native module on this machine', () => {
    expect(DEFAULT_DIGEST).toBe('blake3');
    expect(blake3Engine()).toEqual({ kind: 'native' });
  });

  for (const name of Object.keys(DIGESTS) as Array<keyof typeof DIGESTS>) {
    it(`${name}: the same digest as an independent implementation, for any cut into updates`, async () => {
      const data = randomBytes(3 * 1024 * 1024 + 17);
      const expected = await reference(name, data);
      expect(expected).toHaveLength(DIGESTS[name].hexLength);
      for (const cut of [1, 7, 4096, 65_536, 1024 * 1024, data.length]) {
        const hasher = await createHasher(name);
        for (let offset = 0; offset < data.length; offset += cut) hasher.update(data.subarray(offset, Math.min(offset + cut, data.length)));
        expect(hasher.digest(), `${name} in updates of ${cut} bytes`).toBe(expected);
      }
    });
  }

  it.skipIf(!hasB3sum())('BLAKE3 prints what b3sum prints, so a stored file can be checked by hand', async () => {
    const folder = await tempFolder();
    const path = join(folder, 'data.bin');
    const data = randomBytes(1_000_003);
    await writeFile(path, data);
    const { stdout } = await run('b3sum', ['--no-names', path]);
    const hasher = await createHasher('blake3');
    hasher.update(data);
    expect(hasher.digest()).toBe(stdout.trim());
  });
});

describe('choosing a digest the receiver knows', () => {
  // A receiver of ftx 0.1 greets without "digests" and takes sha256 and xxh128 only.
  async function legacyReceiver() {
    const headers: Array<Record<string, unknown>> = [];
    const receiver = await fakeReceiver((connection) => {
      headers.push(connection.opening.body);
      connection.socket.end(jsonFrame(FrameType.Refuse, { reason: 'busy', message: 'only looking' }));
    });
    return { receiver, headers };
  }

  it('a receiver that does not list its digests (ftx 0.1) gets SHA-256 by default', async () => {
    const { receiver, headers } = await legacyReceiver();
    try {
      const sent = runCli(['send', FIXTURE_JPEG, `127.0.0.1:${receiver.port}`, '--json', '--timeout', '5']);
      expect(await sent.exit).toBe(5);
      expect(headers[0]).toMatchObject({ hash: 'sha256' });
    } finally {
      await receiver.close();
    }
  });

  it('asking such a receiver for BLAKE3 fails before any data moves, naming what it takes', async () => {
    const { receiver, headers } = await legacyReceiver();
    try {
      const sent = runCli(['send', FIXTURE_JPEG, `127.0.0.1:${receiver.port}`, '--json', '--timeout', '5', '--hash', 'blake3']);
      expect(await sent.exit).toBe(4);
      expect(summaryOf(sent)).toMatchObject({ error: { code: 'FTX_ERR_PROTOCOL', message: 'the receiver (fake-receiver) does not know the digest blake3; it takes sha256, xxh128: choose one of those' } });
      expect(headers).toEqual([]);
    } finally {
      await receiver.close();
    }
  });
});
