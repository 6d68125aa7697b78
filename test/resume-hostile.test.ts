/**
 * Resume spoken by hand, against each end (PROTOCOL.md, Resume): a hostile sender that
 * answers an offer out of turn, with the wrong offset, or with a wrong digest, and a
 * hostile receiver that offers what was not asked for. The receiver ends the session with
 * a protocol error (or, for a digest that does not match, takes the file whole); the
 * sender refuses an offer it did not ask for. Loopback only; every wait is bounded.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { basename, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FrameType } from '../src/framing.js';
import { partialPaths, readRecord } from '../src/fs/partial.js';
import { send, serve, type ServeHandle } from '../src/index.js';
import { jsonFrame } from '../src/protocol/messages.js';
import { listFolder, randomFile, tempFolder } from './helpers/files.js';
import { HOST } from './helpers/harness.js';
import { acceptedSession, dataFrame, fileEntry, HASH, sessionPeer, sha256Hex, trailerFrame, type SessionPeer } from './helpers/session-peer.js';

const SIZE = 1024 * 1024;
const KEPT = 600 * 1024;
const MTIME = 1_700_000_000_123.5;

describe('a hostile sender against a receiver that keeps partials', () => {
  let server: ServeHandle | undefined;
  let inbox: string;
  let data: Buffer;

  beforeEach(async () => {
    inbox = await tempFolder();
    data = randomBytes(SIZE);
    server = await serve({ folder: inbox, port: 0, host: HOST, timeoutMs: 5_000 });
  });
  afterEach(async () => {
    await server?.close({ graceMs: 0 });
    server = undefined;
  });

  /** A first attempt cut after KEPT bytes: the receiver keeps them (the session's sender vanished). */
  async function cutAttempt(): Promise<void> {
    const peer = await acceptedSession((server as ServeHandle).port, { resume: true });
    await peer.write(fileEntry(1, 'big.bin', SIZE, { mtime: MTIME }));
    expect(await peer.reply()).toMatchObject({ type: 'Decision', body: { id: 1, action: 'store', offset: 0 } });
    await peer.write(dataFrame(data.subarray(0, KEPT)));
    peer.destroy();
    const record = partialPaths(join(inbox, 'big.bin'), null).record;
    await expect.poll(() => readRecord(record)?.durable, { timeout: 5_000 }).toBe(KEPT);
  }

  /** A second attempt at the same file: the receiver offers what it kept. */
  async function offered(): Promise<SessionPeer> {
    const peer = await acceptedSession((server as ServeHandle).port, { resume: true });
    await peer.write(fileEntry(1, 'big.bin', SIZE, { mtime: MTIME }));
    expect(await peer.reply()).toMatchObject({ type: 'Decision', body: { id: 1, action: 'store', offset: KEPT } });
    return peer;
  }

  const prefixFrame = (offset: number, digest = sha256Hex(data.subarray(0, offset))) => jsonFrame(FrameType.Prefix, { id: 1, offset, hash: HASH, digest });

  it('a resumed file is stored whole and verified: the Prefix proves the first bytes, only the rest moves', async () => {
    await cutAttempt();
    const peer = await offered();
    await peer.write(prefixFrame(KEPT));
    expect(await peer.reply()).toMatchObject({ type: 'Resume', body: { id: 1, offset: KEPT } });
    await peer.write(Buffer.concat([dataFrame(data.subarray(KEPT)), trailerFrame(1, data)]));
    expect(await peer.reply()).toMatchObject({ type: 'Result', body: { id: 1, ok: true, digest: sha256Hex(data) } });
    expect((await readFile(join(inbox, 'big.bin'))).equals(data)).toBe(true);
    expect(await listFolder(inbox)).toEqual(['big.bin']);
  });

  it('a Prefix whose digest does not match: Resume at 0 with the reason, the partial emptied, the file taken whole', async () => {
    await cutAttempt();
    const peer = await offered();
    await peer.write(prefixFrame(KEPT, sha256Hex('something else')));
    const answer = await peer.reply();
    expect(answer).toMatchObject({ type: 'Resume', body: { id: 1, offset: 0, message: expect.stringMatching(/does not match/) } });
    await peer.write(Buffer.concat([dataFrame(data), trailerFrame(1, data)]));
    expect(await peer.reply()).toMatchObject({ type: 'Result', body: { id: 1, ok: true } });
    expect((await readFile(join(inbox, 'big.bin'))).equals(data)).toBe(true);
  });

  it('a Prefix with an offset other than the one offered (or 0) is a protocol error', async () => {
    await cutAttempt();
    const peer = await offered();
    await peer.write(prefixFrame(KEPT - 1));
    expect(await peer.reply()).toMatchObject({ type: 'Error', body: { code: 'FTX_ERR_PROTOCOL', message: expect.stringMatching(/prefix of 614399 bytes where 614400 were offered/) } });
    await peer.closed;
  });

  it('data before answering the offer is a protocol error, and the partial is kept as it was', async () => {
    await cutAttempt();
    const peer = await offered();
    await peer.write(dataFrame(randomBytes(1024)));
    expect(await peer.reply()).toMatchObject({ type: 'Error', body: { code: 'FTX_ERR_PROTOCOL', message: expect.stringMatching(/before answering the offer to resume it/) } });
    await peer.closed;
    const paths = partialPaths(join(inbox, 'big.bin'), null);
    await expect.poll(() => readRecord(paths.record)?.durable).toBe(KEPT);
    expect((await readFile(paths.data)).equals(data.subarray(0, KEPT))).toBe(true);
  });

  it('a sender that never sends its Prefix (KeepAlives only) is cut once the offer is due, and the partial is kept', async () => {
    await cutAttempt();
    const peer = await offered();
    const keepAlive = jsonFrame(FrameType.KeepAlive, {});
    const ticking = setInterval(() => void peer.write(keepAlive).catch(() => {}), 200);
    try {
      // The serving receiver's timeout is 5 s; the offer allows that plus KEPT at 10 MiB/s.
      expect(await peer.reply()).toMatchObject({ type: 'Error', body: { code: 'FTX_ERR_TIMEOUT', message: expect.stringMatching(/did not answer the offer to resume its file within 5 s/) } });
    } finally {
      clearInterval(ticking);
    }
    await expect.poll(() => readRecord(partialPaths(join(inbox, 'big.bin'), null).record)?.durable).toBe(KEPT);
  });

  it('a name taken while the data came (refused after its data): the partial, its record and its lock go with it', async () => {
    const peer = await acceptedSession((server as ServeHandle).port, { resume: true });
    await peer.write(fileEntry(1, 'big.bin', SIZE, { mtime: MTIME }));
    expect(await peer.reply()).toMatchObject({ type: 'Decision', body: { offset: 0 } });
    await peer.write(dataFrame(data));
    await writeFile(join(inbox, 'big.bin'), 'someone else');
    await peer.write(trailerFrame(1, data));
    expect(await peer.reply()).toMatchObject({ type: 'Result', body: { id: 1, ok: false, reason: 'exists' } });
    expect(await listFolder(inbox)).toEqual(['big.bin']);
    expect(await readFile(join(inbox, 'big.bin'), 'utf8')).toBe('someone else');
  });

  it('a Prefix for an entry that was offered none is a protocol error', async () => {
    const peer = await acceptedSession((server as ServeHandle).port, { resume: true });
    await peer.write(fileEntry(1, 'big.bin', SIZE, { mtime: MTIME }));
    expect(await peer.reply()).toMatchObject({ type: 'Decision', body: { offset: 0 } });
    await peer.write(prefixFrame(KEPT));
    expect(await peer.reply()).toMatchObject({ type: 'Error', body: { code: 'FTX_ERR_PROTOCOL', message: expect.stringMatching(/offered none/) } });
    await peer.closed;
  });

  it('a sender that does not ask to resume (--no-resume, an older ftx) is never offered a partial: it starts over, and the partial is dropped', async () => {
    await cutAttempt();
    const peer = await acceptedSession((server as ServeHandle).port);
    await peer.write(fileEntry(1, 'big.bin', SIZE, { mtime: MTIME }));
    expect(await peer.reply()).toMatchObject({ type: 'Decision', body: { id: 1, action: 'store', offset: 0 } });
    expect(await listFolder(inbox)).not.toContain(basename(partialPaths(join(inbox, 'big.bin'), null).record));
    await peer.write(Buffer.concat([dataFrame(data), trailerFrame(1, data)]));
    expect(await peer.reply()).toMatchObject({ type: 'Result', body: { ok: true } });
    expect(await listFolder(inbox)).toEqual(['big.bin']);
  });

  it('an Open whose resume is not a boolean is a protocol error', async () => {
    const peer = await sessionPeer((server as ServeHandle).port);
    expect(await peer.open({ resume: 'yes' })).toMatchObject({ type: 'Error', body: { code: 'FTX_ERR_PROTOCOL', message: expect.stringMatching(/resume/) } });
    await peer.closed;
  });

  it('the same size with another mtime is another file: not offered, its partial replaced', async () => {
    await cutAttempt();
    const peer = await acceptedSession((server as ServeHandle).port, { resume: true });
    await peer.write(fileEntry(1, 'big.bin', SIZE, { mtime: MTIME + 1000 }));
    expect(await peer.reply()).toMatchObject({ type: 'Decision', body: { offset: 0 } });
    await peer.write(Buffer.concat([dataFrame(data), trailerFrame(1, data)]));
    expect(await peer.reply()).toMatchObject({ type: 'Result', body: { ok: true } });
    expect(await listFolder(inbox)).toEqual(['big.bin']);
  });
});

describe('a hostile receiver against a sender', () => {
  let fake: { server: Server; port: number; sockets: Set<Socket> } | undefined;
  afterEach(async () => {
    if (!fake) return;
    for (const socket of fake.sockets) socket.destroy();
    await new Promise((resolve) => fake?.server.close(resolve));
    fake = undefined;
  });

  /** A protocol 2 receiver that accepts the Open and answers the first Entry with `decision`. */
  async function scripted(decision: Record<string, unknown>, after: Buffer[] = []): Promise<number> {
    const sockets = new Set<Socket>();
    const server = createServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => {});
      socket.write(jsonFrame(FrameType.Greeting, { protocol: 'ftx', version: 2, versions: [1, 2], digests: ['blake3', 'sha256'] }));
      let buffered = Buffer.alloc(0);
      socket.on('data', (chunk: Buffer) => {
        buffered = Buffer.concat([buffered, chunk]);
        while (buffered.length >= 5) {
          const end = 5 + buffered.readUInt32BE(1);
          if (buffered.length < end) return;
          const type = buffered[0];
          buffered = buffered.subarray(end);
          if (type === FrameType.Open) socket.write(jsonFrame(FrameType.Accept, { offset: 0 }));
          if (type === FrameType.Entry) socket.write(Buffer.concat([jsonFrame(FrameType.Decision, { id: 1, ...decision }), ...after]));
        }
      });
    });
    server.listen(0, HOST);
    await once(server, 'listening');
    fake = { server, port: (server.address() as { port: number }).port, sockets };
    return fake.port;
  }

  it('an offset offered to a sender that did not ask to resume: a protocol error, nothing more sent', async () => {
    const source = await randomFile(await tempFolder(), 'big.bin', SIZE);
    const port = await scripted({ action: 'store', offset: KEPT });
    await expect(send({ path: source, to: { host: HOST, port }, resume: false, timeoutMs: 5_000 })).rejects.toMatchObject({
      code: 'FTX_ERR_PROTOCOL',
      message: expect.stringMatching(/an offset of 614400, which this sender did not ask for/),
    });
  });

  it('an offset past the end of the file: a protocol error', async () => {
    const source = await randomFile(await tempFolder(), 'big.bin', SIZE);
    const port = await scripted({ action: 'store', offset: SIZE + 1 });
    await expect(send({ path: source, to: { host: HOST, port }, timeoutMs: 5_000 })).rejects.toMatchObject({ code: 'FTX_ERR_PROTOCOL' });
  });

  it('a Resume the sender did not ask for (no Prefix sent): a protocol error', async () => {
    const source = await randomFile(await tempFolder(), 'big.bin', SIZE);
    const port = await scripted({ action: 'store', offset: 0 }, [jsonFrame(FrameType.Resume, { id: 1, offset: 0 })]);
    await expect(send({ path: source, to: { host: HOST, port }, timeoutMs: 5_000 })).rejects.toMatchObject({
      code: 'FTX_ERR_PROTOCOL',
      message: expect.stringMatching(/an answer to a prefix it was not sent/),
    });
  });

  it('a skip to a sender that did not ask to resume: a protocol error', async () => {
    const source = await randomFile(await tempFolder(), 'big.bin', SIZE);
    const port = await scripted({ action: 'skip' });
    await expect(send({ path: source, to: { host: HOST, port }, resume: false, timeoutMs: 5_000 })).rejects.toMatchObject({
      code: 'FTX_ERR_PROTOCOL',
      message: expect.stringMatching(/a skip, which this sender did not ask for/),
    });
  });

  it('an offset offered for a small file (sent whole with its Entry): a protocol error', async () => {
    const folder = await tempFolder();
    const source = join(folder, 'small.bin');
    await writeFile(source, randomBytes(1000));
    const port = await scripted({ action: 'store', offset: 10 });
    await expect(send({ path: source, to: { host: HOST, port }, timeoutMs: 5_000 })).rejects.toMatchObject({ code: 'FTX_ERR_PROTOCOL' });
  });
});
