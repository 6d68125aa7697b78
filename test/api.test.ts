/**
 * The public API (src/index.ts), driven in-process with no CLI: send, receive, serve and
 * ping over real loopback sockets, their handles and events, their errors, and the
 * promise that the library never prints, exits or touches process-wide state.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
// The package as installed (node_modules/ftx is this project: its built bundle), a second copy beside src/.
import * as built from 'ftx';
import {
  ConnectError,
  FtxError,
  InterruptedError,
  isFtxError,
  ping,
  receive,
  RefusedError,
  send,
  serve,
  UsageError,
  type ConnectionEvent,
  type TransferInfo,
} from '../src/index.js';
import { blake3Of, expectSameFile, keptPartialNames, listFolder, randomFile, tempFolder } from './helpers/files.js';

const HOST = '127.0.0.1';

describe('send() and receive()', () => {
  it('move a file, report progress on both ends, and agree on the digest', async () => {
    const inbox = await tempFolder();
    const source = await randomFile(await tempFolder(), 'data.bin', 3 * 1024 * 1024 + 5);
    const received: number[] = [];
    const sent: number[] = [];
    const starts: string[] = [];
    const receiver = await receive({
      target: inbox,
      port: 0,
      host: HOST,
      onStart: ({ name, size, protocol }) => starts.push(`recv ${name} ${size} ${protocol}`),
      onProgress: ({ bytes, total }) => received.push(bytes / total),
    });
    expect(receiver.port).toBeGreaterThan(0);
    expect(receiver.endpoints).toEqual([`${HOST}:${receiver.port}`]);
    const result = await send({
      path: source,
      to: `${HOST}:${receiver.port}`,
      onStart: ({ size, protocol }) => starts.push(`send ${size} ${protocol}`),
      onProgress: ({ bytes, total }) => sent.push(bytes / total),
    });
    const stored = await receiver.done;
    expect(result).toMatchObject({ protocol: 'ftx', name: 'data.bin', bytes: 3 * 1024 * 1024 + 5, hash: 'blake3', verified: true, path: source });
    expect(result.digest).toBe(await blake3Of(source));
    expect(stored).toMatchObject({ path: join(inbox, 'data.bin'), bytes: result.bytes, digest: result.digest, protocol: 'ftx' });
    await expectSameFile(stored.path, source);
    expect(starts.sort()).toEqual([`recv data.bin ${result.bytes} ftx`, `send ${result.bytes} ftx`]);
    expect(received.at(-1)).toBe(1);
    expect(sent.at(-1)).toBe(1);
  });

  it('close() stops a waiting receiver: done rejects with InterruptedError and the port is free', async () => {
    const receiver = await receive({ target: await tempFolder(), port: 0, host: HOST });
    await receiver.close();
    await expect(receiver.done).rejects.toBeInstanceOf(InterruptedError);
    await expect(ping({ to: { host: HOST, port: receiver.port }, timeoutMs: 2_000 })).rejects.toBeInstanceOf(ConnectError);
  });

  it('an AbortSignal stops a transfer in flight: both ends reject, and only the hidden partial is kept to resume', async () => {
    const inbox = await tempFolder();
    const source = await randomFile(await tempFolder(), 'big.bin', 64 * 1024 * 1024);
    const controller = new AbortController();
    const receiver = await receive({
      target: inbox,
      port: 0,
      host: HOST,
      onProgress: ({ bytes }) => {
        if (bytes > 1024 * 1024) controller.abort(new InterruptedError('stopped by the test'));
      },
      signal: controller.signal,
    });
    const sending = send({ path: source, to: { host: HOST, port: receiver.port } });
    sending.catch(() => {}); // awaited below, after the receiver's side
    await expect(receiver.done).rejects.toMatchObject({ code: 'FTX_ERR_INTERRUPTED', message: 'stopped by the test' });
    await expect(sending).rejects.toBeInstanceOf(FtxError);
    expect(await listFolder(inbox)).toEqual(keptPartialNames(join(inbox, 'big.bin')));
  });

  it('send() with an aborted signal rejects with its reason and opens nothing', async () => {
    const controller = new AbortController();
    controller.abort(new InterruptedError('not now'));
    const source = await randomFile(await tempFolder(), 'x.bin', 10);
    await expect(send({ path: source, to: { host: HOST, port: 9 }, signal: controller.signal })).rejects.toMatchObject({ code: 'FTX_ERR_INTERRUPTED' });
  });

  it('reports connections that brought no file through onStray, and keeps waiting', async () => {
    const strays: string[] = [];
    const inbox = await tempFolder();
    const receiver = await receive({ target: inbox, port: 0, host: HOST, onStray: (stray) => strays.push(stray.kind) });
    await ping({ to: { host: HOST, port: receiver.port }, message: 'hi' });
    const taken = await randomFile(await tempFolder(), 'x.bin', 10);
    await expect(send({ path: taken, to: { host: HOST, port: receiver.port }, name: '.x' })).rejects.toBeInstanceOf(RefusedError);
    await send({ path: taken, to: { host: HOST, port: receiver.port } });
    await receiver.done;
    expect(strays).toEqual(['ping', 'failed']);
  });
});

describe('serve()', () => {
  it('stores files from several senders at once, with an event for each step, and closes with nothing cut', async () => {
    const folder = await tempFolder();
    const events: string[] = [];
    const started: TransferInfo[] = [];
    const connections: ConnectionEvent[] = [];
    const box = await serve({
      folder,
      port: 0,
      host: HOST,
      onTransferStart: (transfer) => started.push(transfer),
      onTransferDone: ({ id, path }) => events.push(`done #${id} ${path.slice(folder.length + 1)}`),
      onTransferFailed: ({ error, accepted }) => events.push(`failed ${error.code} accepted=${accepted}`),
      onConnection: (event) => connections.push(event),
    });
    const outbox = await tempFolder();
    const sources = await Promise.all([1, 2, 3].map((n) => randomFile(outbox, `f${n}.bin`, n * 100_000)));
    await Promise.all(sources.map((source) => send({ path: source, to: { host: HOST, port: box.port } })));
    // Sent again as it is: the receiver has it (same size and time), so it is not sent; without resume, it is refused.
    await expect(send({ path: sources[0] as string, to: { host: HOST, port: box.port } })).resolves.toMatchObject({ session: { unchanged: 1, bytesSkipped: 100_000 } });
    await expect(send({ path: sources[0] as string, to: { host: HOST, port: box.port }, resume: false })).rejects.toMatchObject({ reason: 'exists' });
    await ping({ to: { host: HOST, port: box.port } });
    await expect.poll(() => events.length).toBe(5);
    expect(events.filter((event) => event.startsWith('done')).map((event) => event.split(' ')[2]).sort()).toEqual(['f1.bin', 'f1.bin', 'f2.bin', 'f3.bin']);
    expect(events).toContain('failed FTX_ERR_REFUSED accepted=false');
    expect(started.map((transfer) => transfer.size).sort()).toEqual([100_000, 200_000, 300_000]);
    await expect.poll(() => connections.map((event) => event.kind)).toEqual(['ping']);
    expect(await box.close()).toEqual({ cut: 0 });
    expect(await listFolder(folder)).toEqual(['f1.bin', 'f2.bin', 'f3.bin']);
  });
});

describe('ping()', () => {
  it('returns the reply, the round-trip time and the receiver\'s software', async () => {
    const receiver = await receive({ target: await tempFolder(), port: 0, host: HOST });
    const pong = await ping({ to: { host: HOST, port: receiver.port }, message: 'hello' });
    expect(pong).toMatchObject({ protocol: 'ftx', version: 2, software: expect.stringMatching(/^ftx\//), peer: `${HOST}:${receiver.port}` });
    expect(pong.reply).toMatch(/^\[\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\] hello$/);
    expect(pong.roundTripMs).toBeGreaterThanOrEqual(0);
    await receiver.close();
  });
});

describe('errors', () => {
  it('bad options are usage errors that name the option, thrown before anything is opened', async () => {
    await expect(send({ path: 'x', to: 'host:notaport' })).rejects.toMatchObject({ code: 'FTX_ERR_USAGE', message: '"notaport" is not a port number; use 1 to 65535' });
    await expect(send({ path: 'x', to: 'h', timeoutMs: -1 })).rejects.toMatchObject({ code: 'FTX_ERR_USAGE', message: expect.stringMatching(/^timeoutMs must be/) });
    await expect(receive({ target: await tempFolder(), port: 70_000 })).rejects.toBeInstanceOf(UsageError);
    await expect(serve({ folder: await tempFolder(), maxTransfers: 0 })).rejects.toMatchObject({ message: 'maxTransfers must be a whole number of at least 1, not 0' });
  });

  it('are recognised across two copies of the package (the built bundle and the source here)', async () => {
    const fromBuilt = new built.RefusedError('busy', 'try later');
    expect(fromBuilt).not.toBe(undefined);
    expect(isFtxError(fromBuilt)).toBe(true);
    expect(fromBuilt instanceof FtxError).toBe(true);
    expect(built.isFtxError(new RefusedError('exists', 'taken'))).toBe(true);
    expect(new RefusedError('exists', 'taken') instanceof built.FtxError).toBe(true);
    // A subclass check stays a real prototype check: a refusal is not a timeout.
    expect(fromBuilt instanceof RefusedError).toBe(false);
    expect(new Error('plain') instanceof FtxError).toBe(false);
    expect(isFtxError({ code: 'FTX_ERR_REFUSED' })).toBe(false);
  });

  it('carry what the caller can act on: code, reason, remedy, and whether the peer said it', async () => {
    const folder = await tempFolder();
    const receiver = await receive({ target: folder, port: 0, host: HOST });
    const source = await randomFile(await tempFolder(), '.hidden', 10);
    const failure = await send({ path: source, to: { host: HOST, port: receiver.port } }).catch((error: unknown) => error);
    expect(failure).toMatchObject({ code: 'FTX_ERR_REFUSED', reason: 'bad-name', fromPeer: true });
    await receiver.close();
  });
});

describe('callers\' mistakes stay theirs', () => {
  it('a signal that is already aborted makes every call reject with its reason, before anything is opened', async () => {
    const controller = new AbortController();
    controller.abort(new InterruptedError('not today'));
    const signal = controller.signal;
    const folder = await tempFolder();
    for (const attempt of [() => receive({ target: folder, port: 0, signal }), () => serve({ folder, port: 0, signal }), () => ping({ to: `${HOST}:9`, signal })]) {
      await expect(attempt()).rejects.toMatchObject({ code: 'FTX_ERR_INTERRUPTED', message: 'not today' });
    }
  });

  it('serve() checks every option before it listens', async () => {
    await expect(serve({ folder: await tempFolder(), port: 70_000 })).rejects.toMatchObject({ code: 'FTX_ERR_USAGE', message: 'port must be a port number from 0 to 65535, not 70000' });
    await expect(serve({ folder: await tempFolder(), timeoutMs: -5 })).rejects.toMatchObject({ code: 'FTX_ERR_USAGE' });
    await expect(receive({ target: await tempFolder(), onConflict: 'clobber' as never })).rejects.toMatchObject({ message: 'onConflict must be one of refuse, rename, overwrite, not clobber' });
    await expect(send({ path: 'x', to: 'h', hash: 'md5' as never })).rejects.toMatchObject({ message: 'hash must be one of blake3, sha256, xxh128, not md5' });
  });

  it('callbacks that throw are logged, and the transfer and the process go on', async () => {
    const logged: string[] = [];
    const log = { debug: () => {}, info: () => {}, warn: () => {}, error: (_: unknown, message: string) => logged.push(message) };
    const boom = () => {
      throw new Error('boom');
    };
    const folder = await tempFolder();
    const receiver = await receive({ target: folder, port: 0, host: HOST, log, onStart: boom, onProgress: boom, onStray: boom });
    await ping({ to: { host: HOST, port: receiver.port } }); // a stray: onStray throws
    const source = await randomFile(await tempFolder(), 'ok.bin', 200_000);
    const result = await send({ path: source, to: { host: HOST, port: receiver.port }, log, onStart: boom, onProgress: boom });
    expect(result.verified).toBe(true);
    await receiver.done;
    await expectSameFile(join(folder, 'ok.bin'), source);
    expect(new Set(logged)).toEqual(new Set(['the onStray callback failed: boom', 'the onStart callback failed: boom', 'the onProgress callback failed: boom']));
  });

  it('receive() reports connections it turns away for their address through onStray', async () => {
    const kinds: string[] = [];
    const receiver = await receive({ target: await tempFolder(), port: 0, host: HOST, perHostConnections: 1, onStray: (stray) => kinds.push(stray.kind) });
    const { connect } = await import('node:net');
    const first = connect({ host: HOST, port: receiver.port });
    await new Promise((resolve) => first.once('connect', resolve));
    await expect(ping({ to: { host: HOST, port: receiver.port }, timeoutMs: 5_000 })).rejects.toMatchObject({ code: 'FTX_ERR_REFUSED', reason: 'busy' });
    await expect.poll(() => kinds).toContain('turned-away');
    first.destroy();
    await receiver.close();
  });
});

describe('the library keeps to itself', () => {
  it('prints nothing, adds no signal handlers, and leaves no timers or sockets behind', async () => {
    const writes = vi.spyOn(process.stdout, 'write');
    const errorWrites = vi.spyOn(process.stderr, 'write');
    const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'].map((name) => process.listenerCount(name));
    try {
      const folder = await tempFolder();
      const source = await randomFile(await tempFolder(), 'quiet.bin', 100_000);
      const receiver = await receive({ target: folder, port: 0, host: HOST });
      await send({ path: source, to: { host: HOST, port: receiver.port } });
      await receiver.done;
      const box = await serve({ folder: await tempFolder(), port: 0, host: HOST });
      await send({ path: source, to: { host: HOST, port: box.port } });
      await box.close();
      expect(writes).not.toHaveBeenCalled();
      expect(errorWrites).not.toHaveBeenCalled();
      expect(['SIGINT', 'SIGTERM', 'SIGHUP'].map((name) => process.listenerCount(name))).toEqual(signals);
      expect(await readFile(join(folder, 'quiet.bin'))).toHaveLength(100_000);
    } finally {
      writes.mockRestore();
      errorWrites.mockRestore();
    }
  });
});
