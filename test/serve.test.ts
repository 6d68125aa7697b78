/**
 * Serve mode: one long-running receiver, many senders at once, into one folder.
 * Real sockets on 127.0.0.1; in-process senders for scale, the CLI for what users type.
 */
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FtxError, RefusedError } from '../src/errors.js';
import { FrameType } from '../src/framing.js';
import { jsonFrame } from '../src/protocol/messages.js';
import { listen } from '../src/transport/tcp.js';
import type { ConnectionOutcome } from '../src/receiver.js';
import { ServeReceiver, type ServeOptions } from '../src/api/serve.js';
import { runCli, startRecvCli } from './helpers/cli.js';
import { listFolder, randomFile, tempFolder } from './helpers/files.js';
import { sendTo } from './helpers/loopback.js';
import { headerFrame, parseFrame, rawPeer } from './helpers/raw-peer.js';

type Ended = { id: number; outcome: ConnectionOutcome | { kind: 'error'; error: FtxError } };

async function startServe(options: Partial<ServeOptions> & { folder: string }) {
  const server = await listen(0, '127.0.0.1');
  const ended: Ended[] = [];
  const receiver = new ServeReceiver(server, {
    maxConns: 64,
    onConflict: 'refuse',
    idleTimeoutMs: 5_000,
    // Every sender here is 127.0.0.1: the per-address limits are tested on their own (hostile.test.ts).
    perHostConnections: 1000,
    perHostTransfers: 1000,
    onConnectionEnd: (id, _peer, outcome) => ended.push({ id, outcome }),
    ...options,
  });
  return { port: (server.address() as { port: number }).port, receiver, ended, server };
}

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

describe('ftx recv --serve (library)', () => {
  it('takes 50 concurrent senders of mixed sizes, every file hash-equal, no temp files left', async () => {
    const outbox = await tempFolder();
    const inbox = await tempFolder();
    const serve = await startServe({ folder: inbox });
    const sizes = Array.from({ length: 50 }, (_, i) => (i % 7 === 0 ? 0 : (i * 7919) % 300_000));
    const sources = await Promise.all(sizes.map((size, i) => randomFile(outbox, `file-${i}.bin`, size)));
    const results = await Promise.all(sources.map((source) => sendTo(serve.port, source)));
    expect(results.every((result) => result.verified)).toBe(true);
    for (const [i, source] of sources.entries()) {
      const [sent, stored] = await Promise.all([readFile(source), readFile(join(inbox, `file-${i}.bin`))]);
      expect(sha256(stored), `file-${i}.bin`).toBe(sha256(sent));
    }
    expect(await listFolder(inbox)).toHaveLength(50);
    expect(await serve.receiver.shutdown(1000)).toBe(0);
  });

  it('hostile clients are refused or timed out while good senders are unaffected', async () => {
    const outbox = await tempFolder();
    const inbox = await tempFolder();
    const serve = await startServe({ folder: inbox, idleTimeoutMs: 500 });
    const good = await Promise.all(Array.from({ length: 8 }, (_, i) => randomFile(outbox, `good-${i}.bin`, 200_000 + i)));

    const hostile = (async () => {
      const garbage = await rawPeer(serve.port);
      await garbage.write(Buffer.concat([Buffer.from([0xff, 0x00]), Buffer.alloc(298, 0x5a)]));
      const traversal = await rawPeer(serve.port);
      await traversal.write(headerFrame({ name: '../../etc/passwd', size: 10 }));
      const absolute = await rawPeer(serve.port);
      await absolute.write(headerFrame({ name: '/etc/passwd', size: 10 }));
      const staller = await rawPeer(serve.port);
      await staller.write(headerFrame({ name: 'stall.bin', size: 1_000_000 }));
      await staller.nextFrame(FrameType.Accept);
      await staller.write(Buffer.alloc(1000));
      const quitter = await rawPeer(serve.port);
      await quitter.write(headerFrame({ name: 'quit.bin', size: 1_000_000 }));
      await quitter.nextFrame(FrameType.Accept);
      await quitter.write(Buffer.alloc(50_000));
      quitter.socket.destroy();
      const chatty = await rawPeer(serve.port);
      await chatty.write(headerFrame({ name: 'chatty.bin', size: 5 }));
      await chatty.nextFrame(FrameType.Accept);
      await chatty.write(Buffer.alloc(50, 0x41));

      expect(parseFrame(await garbage.nextFrame(FrameType.Error)).code).toBe('FTX_ERR_PROTOCOL');
      expect(parseFrame(await traversal.nextFrame(FrameType.Refuse)).reason).toBe('bad-name');
      expect(parseFrame(await absolute.nextFrame(FrameType.Refuse)).reason).toBe('bad-name');
      expect(parseFrame(await staller.nextFrame(FrameType.Error)).code).toBe('FTX_ERR_TIMEOUT');
      expect(parseFrame(await chatty.nextFrame(FrameType.Error)).code).toBe('FTX_ERR_PROTOCOL');
    })();

    const results = await Promise.all(good.map((source) => sendTo(serve.port, source)));
    await hostile;
    expect(results.map((result) => result.name).sort()).toEqual(good.map((_, i) => `good-${i}.bin`).sort());
    await expect.poll(() => serve.receiver.activeTransfers).toBe(0);
    expect(await listFolder(inbox)).toEqual(good.map((_, i) => `good-${i}.bin`).sort());
    // Still serving after all that.
    const late = await randomFile(outbox, 'late.bin', 1234);
    await sendTo(serve.port, late);
    expect(await listFolder(inbox)).toContain('late.bin');
    await serve.receiver.shutdown(1000);
  });

  it('same name at the same time, --on-conflict refuse: one stored, the other refused', async () => {
    const outbox = await tempFolder();
    const inbox = await tempFolder();
    const serve = await startServe({ folder: inbox });
    const a = await randomFile(outbox, 'a.bin', 3_000_000);
    const b = await randomFile(outbox, 'b.bin', 3_000_000);
    const settled = await Promise.allSettled([sendTo(serve.port, a, { name: 'same.bin' }), sendTo(serve.port, b, { name: 'same.bin' })]);
    expect(settled.filter((s) => s.status === 'fulfilled')).toHaveLength(1);
    const rejected = settled.find((s) => s.status === 'rejected') as PromiseRejectedResult;
    expect(rejected.reason).toBeInstanceOf(RefusedError);
    expect(rejected.reason).toMatchObject({ reason: 'exists' });
    const stored = await readFile(join(inbox, 'same.bin'));
    expect([sha256(await readFile(a)), sha256(await readFile(b))]).toContain(sha256(stored));
    expect(await listFolder(inbox)).toEqual(['same.bin']);
    await serve.receiver.shutdown(1000);
  });

  it('same name at the same time, --on-conflict rename: both stored, under different names', async () => {
    const outbox = await tempFolder();
    const inbox = await tempFolder();
    await writeFile(join(inbox, 'db.dump'), 'last night');
    const serve = await startServe({ folder: inbox, onConflict: 'rename' });
    const a = await randomFile(outbox, 'a', 2_000_000);
    const b = await randomFile(outbox, 'b', 2_000_000);
    const [ra, rb] = await Promise.all([sendTo(serve.port, a, { name: 'db.dump' }), sendTo(serve.port, b, { name: 'db.dump' })]);
    expect([ra.name, rb.name].sort()).toEqual(['db-1.dump', 'db-2.dump']);
    expect(await readFile(join(inbox, 'db.dump'), 'utf8')).toBe('last night');
    expect(sha256(await readFile(join(inbox, ra.name)))).toBe(sha256(await readFile(a)));
    expect(sha256(await readFile(join(inbox, rb.name)))).toBe(sha256(await readFile(b)));
    await serve.receiver.shutdown(1000);
  });

  it('same name at the same time, --on-conflict overwrite: one whole file wins, bytes never interleave', async () => {
    const outbox = await tempFolder();
    const inbox = await tempFolder();
    const serve = await startServe({ folder: inbox, onConflict: 'overwrite' });
    const a = join(outbox, 'a');
    const b = join(outbox, 'b');
    await writeFile(a, Buffer.alloc(4_000_000, 0x61));
    await writeFile(b, Buffer.alloc(4_000_000, 0x62));
    await Promise.all([sendTo(serve.port, a, { name: 'x.bin' }), sendTo(serve.port, b, { name: 'x.bin' })]);
    const stored = await readFile(join(inbox, 'x.bin'));
    expect(stored.length).toBe(4_000_000);
    expect(stored.equals(Buffer.alloc(4_000_000, 0x61)) || stored.equals(Buffer.alloc(4_000_000, 0x62))).toBe(true);
    expect(await listFolder(inbox)).toEqual(['x.bin']);
    await serve.receiver.shutdown(1000);
  });

  it('refuses senders beyond --max-conns as busy, and takes them once there is room', async () => {
    const outbox = await tempFolder();
    const inbox = await tempFolder();
    const serve = await startServe({ folder: inbox, maxConns: 1 });
    const holder = await rawPeer(serve.port);
    await holder.write(headerFrame({ name: 'slow.bin', size: 4 }));
    await holder.nextFrame(FrameType.Accept);
    const source = await randomFile(outbox, 'next.bin', 100);
    await expect(sendTo(serve.port, source)).rejects.toMatchObject({ reason: 'busy', message: expect.stringMatching(/busy \(1 transfers in progress/) });
    await holder.write(Buffer.concat([Buffer.from('abcd'), jsonFrame(FrameType.Trailer, { hash: 'sha256', digest: sha256(Buffer.from('abcd')) })]));
    await holder.nextFrame(FrameType.Receipt);
    await expect.poll(() => serve.receiver.activeTransfers).toBe(0);
    await sendTo(serve.port, source);
    expect(await listFolder(inbox)).toEqual(['next.bin', 'slow.bin']);
    await serve.receiver.shutdown(1000);
  });

  it('answers pings', async () => {
    const serve = await startServe({ folder: await tempFolder() });
    const peer = await rawPeer(serve.port);
    await peer.write(jsonFrame(FrameType.Ping, { message: 'up?' }));
    expect(String(parseFrame(await peer.nextFrame(FrameType.Pong)).reply)).toMatch(/\] up\?$/);
    await serve.receiver.shutdown(1000);
  });

  it('shutdown lets transfers in flight finish within the grace period', async () => {
    const inbox = await tempFolder();
    const serve = await startServe({ folder: inbox });
    const peer = await rawPeer(serve.port);
    await peer.write(headerFrame({ name: 'late.bin', size: 4 }));
    await peer.nextFrame(FrameType.Accept);
    const stopping = serve.receiver.shutdown(5000);
    await peer.write(Buffer.concat([Buffer.from('wxyz'), jsonFrame(FrameType.Trailer, { hash: 'sha256', digest: sha256(Buffer.from('wxyz')) })]));
    await peer.nextFrame(FrameType.Receipt);
    expect(await stopping).toBe(0);
    expect(await readFile(join(inbox, 'late.bin'), 'utf8')).toBe('wxyz');
  });

  it('shutdown cuts transfers still running after the grace period and removes their temp files', async () => {
    const inbox = await tempFolder();
    const serve = await startServe({ folder: inbox });
    const peer = await rawPeer(serve.port);
    await peer.write(headerFrame({ name: 'never.bin', size: 1_000_000 }));
    await peer.nextFrame(FrameType.Accept);
    await peer.write(Buffer.alloc(10_000));
    await expect.poll(async () => (await listFolder(inbox)).length).toBe(1);
    expect(await serve.receiver.shutdown(200)).toBe(1);
    expect(await listFolder(inbox)).toEqual([]);
    expect(serve.server.listening).toBe(false);
  });
});

describe('ftx recv --serve (CLI)', () => {
  it('stores files from several CLI senders at once, then stops on SIGTERM with exit 0', async () => {
    const outbox = await tempFolder();
    const inbox = await tempFolder();
    const recv = await startRecvCli([inbox, '--serve']);
    const sources = await Promise.all(Array.from({ length: 5 }, (_, i) => randomFile(outbox, `f${i}.bin`, 500_000 * i)));
    const sends = sources.map((source) => runCli(['send', source, `127.0.0.1:${recv.port}`, '--quiet']));
    expect(await Promise.all(sends.map((send) => send.exit))).toEqual([0, 0, 0, 0, 0]);
    const done = recv.logs().filter((record) => record.event === 'transfer-done');
    expect(done).toHaveLength(5);
    expect(done[0]).toMatchObject({ id: expect.any(Number), peer: expect.any(String), name: expect.any(String), bytes: expect.any(Number), sha256: expect.stringMatching(/^[0-9a-f]{64}$/), seconds: expect.any(Number) });
    recv.child.kill('SIGTERM');
    expect(await recv.exit).toBe(0);
    expect(await listFolder(inbox)).toEqual(['f0.bin', 'f1.bin', 'f2.bin', 'f3.bin', 'f4.bin']);
  });

  it('Ctrl-C with --grace 0 cuts a transfer in flight: exit 130, no temp file', async () => {
    const inbox = await tempFolder();
    const recv = await startRecvCli([inbox, '--serve', '--grace', '0']);
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
    const run = runCli(['recv', join(folder, 'file'), '--serve', '--port', '0']);
    expect(await run.exit).toBe(2);
  });
});
