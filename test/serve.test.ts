/**
 * Serve mode: one long-running receiver, many senders at once, into one folder.
 * Real sockets on 127.0.0.1; in-process senders for scale, the CLI for what users type.
 */
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FrameType } from '../src/framing.js';
import { ping, RefusedError, serve, type ServeHandle, type ServeOptions } from '../src/index.js';
import { jsonFrame } from '../src/protocol/messages.js';
import { runCli, startRecvCli } from './helpers/cli.js';
import { listFolder, randomFile, tempFolder } from './helpers/files.js';
import { sendTo } from './helpers/loopback.js';
import { headerFrame, parseFrame, rawPeer } from './helpers/raw-peer.js';

/** serve() on a free loopback port. Every sender here is 127.0.0.1: the per-address limits are lifted (they are tested in hostile.test.ts). */
async function startServe(options: Partial<ServeOptions> & { folder: string }): Promise<{ port: number; receiver: ServeHandle }> {
  const receiver = await serve({ port: 0, host: '127.0.0.1', timeoutMs: 5_000, perHostConnections: 1000, perHostTransfers: 1000, ...options });
  return { port: receiver.port, receiver };
}

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

describe('serve() (library)', () => {
  it('takes 50 concurrent senders of mixed sizes, every file hash-equal, no temp files left', async () => {
    const outbox = await tempFolder();
    const inbox = await tempFolder();
    const box = await startServe({ folder: inbox });
    const sizes = Array.from({ length: 50 }, (_, i) => (i % 7 === 0 ? 0 : (i * 7919) % 300_000));
    const sources = await Promise.all(sizes.map((size, i) => randomFile(outbox, `file-${i}.bin`, size)));
    const results = await Promise.all(sources.map((source) => sendTo(box.port, source)));
    expect(results.every((result) => result.verified)).toBe(true);
    for (const [i, source] of sources.entries()) {
      const [sent, stored] = await Promise.all([readFile(source), readFile(join(inbox, `file-${i}.bin`))]);
      expect(sha256(stored), `file-${i}.bin`).toBe(sha256(sent));
    }
    expect(await listFolder(inbox)).toHaveLength(50);
    expect(await box.receiver.close({ graceMs: 1000 })).toEqual({ cut: 0 });
  });

  it('hostile clients are refused or timed out while good senders are unaffected', async () => {
    const outbox = await tempFolder();
    const inbox = await tempFolder();
    const box = await startServe({ folder: inbox, timeoutMs: 500 });
    const good = await Promise.all(Array.from({ length: 8 }, (_, i) => randomFile(outbox, `good-${i}.bin`, 200_000 + i)));

    const hostile = (async () => {
      const garbage = await rawPeer(box.port);
      await garbage.write(Buffer.concat([Buffer.from([0xff, 0x00]), Buffer.alloc(298, 0x5a)]));
      const traversal = await rawPeer(box.port);
      await traversal.write(headerFrame({ name: '../../etc/passwd', size: 10 }));
      const absolute = await rawPeer(box.port);
      await absolute.write(headerFrame({ name: '/etc/passwd', size: 10 }));
      const staller = await rawPeer(box.port);
      await staller.write(headerFrame({ name: 'stall.bin', size: 1_000_000 }));
      await staller.nextFrame(FrameType.Accept);
      await staller.write(Buffer.alloc(1000));
      const quitter = await rawPeer(box.port);
      await quitter.write(headerFrame({ name: 'quit.bin', size: 1_000_000 }));
      await quitter.nextFrame(FrameType.Accept);
      await quitter.write(Buffer.alloc(50_000));
      quitter.socket.destroy();
      const chatty = await rawPeer(box.port);
      await chatty.write(headerFrame({ name: 'chatty.bin', size: 5 }));
      await chatty.nextFrame(FrameType.Accept);
      await chatty.write(Buffer.alloc(50, 0x41));

      expect(parseFrame(await garbage.nextFrame(FrameType.Error)).code).toBe('FTX_ERR_PROTOCOL');
      expect(parseFrame(await traversal.nextFrame(FrameType.Refuse)).reason).toBe('bad-name');
      expect(parseFrame(await absolute.nextFrame(FrameType.Refuse)).reason).toBe('bad-name');
      expect(parseFrame(await staller.nextFrame(FrameType.Error)).code).toBe('FTX_ERR_TIMEOUT');
      expect(parseFrame(await chatty.nextFrame(FrameType.Error)).code).toBe('FTX_ERR_PROTOCOL');
    })();

    const results = await Promise.all(good.map((source) => sendTo(box.port, source)));
    await hostile;
    expect(results.map((result) => result.name).sort()).toEqual(good.map((_, i) => `good-${i}.bin`).sort());
    await expect.poll(() => box.receiver.activeTransfers).toBe(0);
    expect(await listFolder(inbox)).toEqual(good.map((_, i) => `good-${i}.bin`).sort());
    // Still serving after all that.
    const late = await randomFile(outbox, 'late.bin', 1234);
    await sendTo(box.port, late);
    expect(await listFolder(inbox)).toContain('late.bin');
    await box.receiver.close({ graceMs: 1000 });
  });

  it('same name at the same time, --on-conflict refuse: one stored, the other refused', async () => {
    const outbox = await tempFolder();
    const inbox = await tempFolder();
    const box = await startServe({ folder: inbox });
    const a = await randomFile(outbox, 'a.bin', 3_000_000);
    const b = await randomFile(outbox, 'b.bin', 3_000_000);
    const settled = await Promise.allSettled([sendTo(box.port, a, { name: 'same.bin' }), sendTo(box.port, b, { name: 'same.bin' })]);
    expect(settled.filter((s) => s.status === 'fulfilled')).toHaveLength(1);
    const rejected = settled.find((s) => s.status === 'rejected') as PromiseRejectedResult;
    expect(rejected.reason).toBeInstanceOf(RefusedError);
    expect(rejected.reason).toMatchObject({ reason: 'exists' });
    const stored = await readFile(join(inbox, 'same.bin'));
    expect([sha256(await readFile(a)), sha256(await readFile(b))]).toContain(sha256(stored));
    expect(await listFolder(inbox)).toEqual(['same.bin']);
    await box.receiver.close({ graceMs: 1000 });
  });

  it('same name at the same time, --on-conflict rename: both stored, under different names', async () => {
    const outbox = await tempFolder();
    const inbox = await tempFolder();
    await writeFile(join(inbox, 'db.dump'), 'last night');
    const box = await startServe({ folder: inbox, onConflict: 'rename' });
    const a = await randomFile(outbox, 'a', 2_000_000);
    const b = await randomFile(outbox, 'b', 2_000_000);
    const [ra, rb] = await Promise.all([sendTo(box.port, a, { name: 'db.dump' }), sendTo(box.port, b, { name: 'db.dump' })]);
    expect([ra.name, rb.name].sort()).toEqual(['db-1.dump', 'db-2.dump']);
    expect(await readFile(join(inbox, 'db.dump'), 'utf8')).toBe('last night');
    expect(sha256(await readFile(join(inbox, ra.name)))).toBe(sha256(await readFile(a)));
    expect(sha256(await readFile(join(inbox, rb.name)))).toBe(sha256(await readFile(b)));
    await box.receiver.close({ graceMs: 1000 });
  });

  it('same name at the same time, --on-conflict overwrite: one whole file wins, bytes never interleave', async () => {
    const outbox = await tempFolder();
    const inbox = await tempFolder();
    const box = await startServe({ folder: inbox, onConflict: 'overwrite' });
    const a = join(outbox, 'a');
    const b = join(outbox, 'b');
    await writeFile(a, Buffer.alloc(4_000_000, 0x61));
    await writeFile(b, Buffer.alloc(4_000_000, 0x62));
    await Promise.all([sendTo(box.port, a, { name: 'x.bin' }), sendTo(box.port, b, { name: 'x.bin' })]);
    const stored = await readFile(join(inbox, 'x.bin'));
    expect(stored.length).toBe(4_000_000);
    expect(stored.equals(Buffer.alloc(4_000_000, 0x61)) || stored.equals(Buffer.alloc(4_000_000, 0x62))).toBe(true);
    expect(await listFolder(inbox)).toEqual(['x.bin']);
    await box.receiver.close({ graceMs: 1000 });
  });

  it('refuses senders beyond --max-conns as busy, and takes them once there is room', async () => {
    const outbox = await tempFolder();
    const inbox = await tempFolder();
    const box = await startServe({ folder: inbox, maxTransfers: 1 });
    const holder = await rawPeer(box.port);
    await holder.write(headerFrame({ name: 'slow.bin', size: 4 }));
    await holder.nextFrame(FrameType.Accept);
    const source = await randomFile(outbox, 'next.bin', 100);
    await expect(sendTo(box.port, source)).rejects.toMatchObject({ reason: 'busy', message: expect.stringMatching(/the receiver refused the file: the receiver is busy \(1 transfer in progress/) });
    await holder.write(Buffer.concat([Buffer.from('abcd'), jsonFrame(FrameType.Trailer, { hash: 'sha256', digest: sha256(Buffer.from('abcd')) })]));
    await holder.nextFrame(FrameType.Receipt);
    await expect.poll(() => box.receiver.activeTransfers).toBe(0);
    await sendTo(box.port, source);
    expect(await listFolder(inbox)).toEqual(['next.bin', 'slow.bin']);
    await box.receiver.close({ graceMs: 1000 });
  });

  it('answers pings', async () => {
    const box = await startServe({ folder: await tempFolder() });
    const peer = await rawPeer(box.port);
    await peer.write(jsonFrame(FrameType.Ping, { message: 'up?' }));
    expect(String(parseFrame(await peer.nextFrame(FrameType.Pong)).reply)).toMatch(/\] up\?$/);
    await box.receiver.close({ graceMs: 1000 });
  });

  it('shutdown lets transfers in flight finish within the grace period', async () => {
    const inbox = await tempFolder();
    const box = await startServe({ folder: inbox });
    const peer = await rawPeer(box.port);
    await peer.write(headerFrame({ name: 'late.bin', size: 4 }));
    await peer.nextFrame(FrameType.Accept);
    const stopping = box.receiver.close({ graceMs: 5000 });
    await peer.write(Buffer.concat([Buffer.from('wxyz'), jsonFrame(FrameType.Trailer, { hash: 'sha256', digest: sha256(Buffer.from('wxyz')) })]));
    await peer.nextFrame(FrameType.Receipt);
    expect(await stopping).toEqual({ cut: 0 });
    expect(await readFile(join(inbox, 'late.bin'), 'utf8')).toBe('wxyz');
  });

  it('shutdown cuts transfers still running after the grace period and removes their temp files', async () => {
    const inbox = await tempFolder();
    const box = await startServe({ folder: inbox });
    const peer = await rawPeer(box.port);
    await peer.write(headerFrame({ name: 'never.bin', size: 1_000_000 }));
    await peer.nextFrame(FrameType.Accept);
    await peer.write(Buffer.alloc(10_000));
    await expect.poll(async () => (await listFolder(inbox)).length).toBe(1);
    expect(await box.receiver.close({ graceMs: 200 })).toEqual({ cut: 1 });
    expect(await listFolder(inbox)).toEqual([]);
    // No longer listening: nothing answers there now.
    await expect(ping({ to: { host: '127.0.0.1', port: box.port }, timeoutMs: 2_000 })).rejects.toMatchObject({ code: 'FTX_ERR_CONNECT' });
  });
});

describe('ftx recv --serve (CLI)', () => {
  it('stores files from several CLI senders at once, then stops on SIGTERM with exit 0', async () => {
    const outbox = await tempFolder();
    const inbox = await tempFolder();
    const recv = await startRecvCli([inbox, '--serve', '--insecure']);
    const sources = await Promise.all(Array.from({ length: 5 }, (_, i) => randomFile(outbox, `f${i}.bin`, 500_000 * i)));
    const sends = sources.map((source) => runCli(['send', source, `127.0.0.1:${recv.port}`, '--quiet']));
    expect(await Promise.all(sends.map((send) => send.exit))).toEqual([0, 0, 0, 0, 0]);
    const done = recv.logs().filter((record) => record.event === 'transfer-done');
    expect(done).toHaveLength(5);
    expect(done[0]).toMatchObject({ id: expect.any(Number), peer: expect.any(String), name: expect.any(String), bytes: expect.any(Number), hash: 'blake3', digest: expect.stringMatching(/^[0-9a-f]{64}$/), seconds: expect.any(Number) });
    recv.child.kill('SIGTERM');
    expect(await recv.exit).toBe(0);
    expect(await listFolder(inbox)).toEqual(['f0.bin', 'f1.bin', 'f2.bin', 'f3.bin', 'f4.bin']);
  });

  it('Ctrl-C with --grace 0 cuts a transfer in flight: exit 130, no temp file', async () => {
    const inbox = await tempFolder();
    const recv = await startRecvCli([inbox, '--serve', '--insecure', '--grace', '0']);
    const peer = await rawPeer(recv.port);
    await peer.write(headerFrame({ name: 'cut.bin', size: 10_000_000 }));
    await peer.nextFrame(FrameType.Accept);
    await peer.write(Buffer.alloc(100_000));
    await recv.waitForLog((record) => record.event === 'transfer-start');
    recv.child.kill('SIGINT');
    expect(await recv.exit).toBe(130);
    expect(await listFolder(inbox)).toEqual([]);
  });

  it('--serve needs a folder', async () => {
    const folder = await tempFolder();
    await writeFile(join(folder, 'file'), '');
    const run = runCli(['recv', join(folder, 'file'), '--serve', '--insecure', '--port', '0']);
    expect(await run.exit).toBe(2);
  });
});
