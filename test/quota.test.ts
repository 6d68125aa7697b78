/**
 * Quotas on key lines (`IDENTITY:KEY quota=SIZE`): a serving receiver keeps each identity
 * within its quota, counting what is stored in its folder and what is on its way.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PartialError, RefusedError, serve, send, UsageError } from '../src/index.js';
import { generateKey, parseKeys } from '../src/transport/keys.js';
import { listFolder, randomFile, tempFolder } from './helpers/files.js';

const HOST = '127.0.0.1';

describe('quotas on key lines', () => {
  it('parses quota=SIZE after the key, and refuses any other option', () => {
    const line = generateKey('web1');
    const [key] = [...parseKeys(`${line} quota=10M\n`, 'f').values()];
    expect(key?.quota).toBe(10 * 1024 * 1024);
    expect(() => parseKeys(`${line} quota=lots`, 'f')).toThrow(UsageError);
    expect(() => parseKeys(`${line} color=blue`, 'f')).toThrow(/f, line 1: "color=blue" is not an option of a key line/);
  });

  it('an identity is refused (no-space) past its quota, counting what it stored before this run; another identity is not affected', async () => {
    const inbox = await tempFolder();
    const outbox = await tempFolder();
    const web1 = generateKey('web1');
    const web2 = generateKey('web2');
    // web1 already has 400 bytes in its folder from an earlier run.
    const box1 = await serve({ folder: inbox, port: 0, host: HOST, keys: `${web1} quota=1K\n${web2}\n` });
    try {
      await send({ path: await randomFile(outbox, 'first.bin', 400), to: { host: HOST, port: box1.port }, key: web1 });
    } finally {
      await box1.close({ graceMs: 1000 });
    }
    const box = await serve({ folder: inbox, port: 0, host: HOST, keys: `${web1} quota=1K\n${web2}\n` });
    try {
      await send({ path: await randomFile(outbox, 'fits.bin', 500), to: { host: HOST, port: box.port }, key: web1 });
      const over = await send({ path: await randomFile(outbox, 'over.bin', 200), to: { host: HOST, port: box.port }, key: web1 }).catch((error: unknown) => error);
      expect(over).toBeInstanceOf(RefusedError);
      expect(over).toMatchObject({ reason: 'no-space', message: expect.stringMatching(/past its quota of 1\.0+ KiB \(900 B stored, 0 B on its way\)/) });
      await send({ path: await randomFile(outbox, 'big.bin', 5000), to: { host: HOST, port: box.port }, key: web2 });
      expect(await listFolder(join(inbox, 'web1'))).toEqual(['first.bin', 'fits.bin']);
      expect(await listFolder(join(inbox, 'web2'))).toEqual(['big.bin']);
    } finally {
      await box.close({ graceMs: 1000 });
    }
  });

  it('in a folder session each file counts as it is stored: the files that fit are stored, the rest refused (PartialError)', async () => {
    const inbox = await tempFolder();
    const tree = await tempFolder();
    await randomFile(tree, 'a.bin', 600);
    await randomFile(tree, 'b.bin', 600);
    const web1 = generateKey('web1');
    const box = await serve({ folder: inbox, port: 0, host: HOST, keys: `${web1} quota=1K\n` });
    try {
      const outcome = await send({ path: tree, to: { host: HOST, port: box.port }, key: web1 }).catch((error: unknown) => error);
      expect(outcome).toBeInstanceOf(PartialError);
      expect(outcome).toMatchObject({ stored: 2, failed: 1, failures: [{ reason: 'no-space' }] });
      const [folder] = await listFolder(join(inbox, 'web1'));
      expect(await listFolder(join(inbox, 'web1', folder as string))).toEqual(['a.bin']);
    } finally {
      await box.close({ graceMs: 1000 });
    }
  });
});
