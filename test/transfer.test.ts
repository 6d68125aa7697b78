/**
 * Sender and receiver in one process, over real sockets on 127.0.0.1: the happy
 * paths, and every refusal and failure the core issue lists, each checked on both
 * sides and for "no file left behind".
 */
import { createHash } from 'node:crypto';
import { readFile, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  ConnectError,
  ConnectionLostError,
  IntegrityError,
  InterruptedError,
  ProtocolError,
  RefusedError,
  TimeoutError,
} from '../src/errors.js';
import { encodeFrame, FrameType } from '../src/framing.js';
import { jsonFrame } from '../src/protocol/messages.js';
import { connect } from '../src/transport/tcp.js';
import { blake3Of, expectSameFile, listFolder, randomFile, sha256Of, tempFolder } from './helpers/files.js';
import { expectStillWaiting, sendTo, startReceiver } from './helpers/loopback.js';
import { headerFrame, parseFrame, rawPeer } from './helpers/raw-peer.js';

const FIXTURE_JPEG = new URL('./fixtures/06.jpg', import.meta.url).pathname;

describe('a file from sender to receiver', () => {
  for (const size of [0, 1, 1024 * 1024 + 7, 5 * 1024 * 1024]) {
    it(`moves ${size} bytes byte-identical and both sides agree on the digest`, async () => {
      const folder = await tempFolder();
      const source = await randomFile(folder, 'source.bin', size);
      const target = join(folder, 'out.bin');
      const receiver = await startReceiver({ target });
      const sent = await sendTo(receiver.port, source);
      const received = await receiver.result;

      await expectSameFile(target, source);
      const digest = await blake3Of(source);
      expect(sent).toMatchObject({ bytes: size, digest, verified: true, name: 'out.bin' });
      expect(received).toMatchObject({ path: target, bytes: size, digest });
      expect(await listFolder(folder)).toEqual(['out.bin', 'source.bin']);
    });
  }

  it('verifies with xxh128 when asked, on both sides', async () => {
    const folder = await tempFolder();
    const source = await randomFile(folder, 'source.bin', 3 * 1024 * 1024 + 1);
    const target = join(folder, 'out.bin');
    const receiver = await startReceiver({ target });
    const sent = await sendTo(receiver.port, source, { hash: 'xxh128' });
    const received = await receiver.result;
    await expectSameFile(target, source);
    expect(sent).toMatchObject({ hash: 'xxh128', digest: expect.stringMatching(/^[0-9a-f]{32}$/), verified: true });
    expect(received).toMatchObject({ hash: 'xxh128', digest: sent.digest });
  });

  it('moves the JPEG fixture', async () => {
    const folder = await tempFolder();
    const target = join(folder, 'copy.jpg');
    const receiver = await startReceiver({ target });
    await sendTo(receiver.port, FIXTURE_JPEG);
    await receiver.result;
    await expectSameFile(target, FIXTURE_JPEG);
  });

  it("stores the file under the sender's name when the target is a folder", async () => {
    const folder = await tempFolder();
    const inbox = await tempFolder();
    const source = await randomFile(folder, 'report.pdf', 1000);
    const receiver = await startReceiver({ target: inbox });
    const sent = await sendTo(receiver.port, source);
    expect(sent.name).toBe('report.pdf');
    expect((await receiver.result).path).toBe(join(inbox, 'report.pdf'));
    expect(await listFolder(inbox)).toEqual(['report.pdf']);
  });

  it('uses --name over the file name', async () => {
    const folder = await tempFolder();
    const inbox = await tempFolder();
    const source = await randomFile(folder, 'x.bin', 10);
    const receiver = await startReceiver({ target: inbox });
    await sendTo(receiver.port, source, { name: 'renamed.bin' });
    await receiver.result;
    expect(await listFolder(inbox)).toEqual(['renamed.bin']);
  });

  it('reports progress up to the full size on both sides', async () => {
    const folder = await tempFolder();
    const source = await randomFile(folder, 's.bin', 3 * 1024 * 1024);
    const receivedCounts: number[] = [];
    const sentCounts: number[] = [];
    const receiver = await startReceiver({ target: join(folder, 'o.bin'), onProgress: ({ bytes }) => receivedCounts.push(bytes) });
    await sendTo(receiver.port, source, { onProgress: ({ bytes }) => sentCounts.push(bytes) });
    await receiver.result;
    expect(sentCounts.at(-1)).toBe(3 * 1024 * 1024);
    expect(receivedCounts.at(-1)).toBe(3 * 1024 * 1024);
    expect(receivedCounts).toEqual([...receivedCounts].sort((a, b) => a - b));
  });
});

describe('refusals: the sender is told why, and nothing is written', () => {
  it('will not start on a target that exists (nothing to wait for), and leaves it untouched', async () => {
    const folder = await tempFolder();
    const target = join(folder, 'existing.bin');
    await writeFile(target, 'precious');
    await expect(startReceiver({ target })).rejects.toMatchObject({ code: 'FTX_ERR_REFUSED', reason: 'exists', remedy: 'overwrite', message: `${target} already exists; remove it or choose another name` });
    expect(await readFile(target, 'utf8')).toBe('precious');
    expect(await listFolder(folder)).toEqual(['existing.bin']);
  });

  it('refuses a sender whose name exists in the target folder, and keeps waiting', async () => {
    const folder = await tempFolder();
    const source = await randomFile(await tempFolder(), 'existing.bin', 100);
    await writeFile(join(folder, 'existing.bin'), 'precious');
    const receiver = await startReceiver({ target: folder });
    const sending = sendTo(receiver.port, source);
    await expect(sending).rejects.toThrow(RefusedError);
    await expect(sending).rejects.toMatchObject({ reason: 'exists', message: 'the receiver refused the file: a file named "existing.bin" already exists on the receiver' });
    // Refused before its Accept: the receiver keeps waiting for a file it can take.
    await expectStillWaiting(receiver);
    expect(await readFile(join(folder, 'existing.bin'), 'utf8')).toBe('precious');
  });


  it('replaces an existing target with overwrite', async () => {
    const folder = await tempFolder();
    const source = await randomFile(folder, 'new.bin', 100);
    const target = join(folder, 'existing.bin');
    await writeFile(target, 'old');
    const receiver = await startReceiver({ target, onConflict: 'overwrite' });
    await sendTo(receiver.port, source);
    await receiver.result;
    await expectSameFile(target, source);
  });

  it('does not follow a symlink at the target name, even with overwrite', async () => {
    const folder = await tempFolder();
    const outside = await tempFolder();
    const victim = join(outside, 'victim.txt');
    await writeFile(victim, 'do not touch');
    const inbox = await tempFolder();
    await symlink(victim, join(inbox, 'x.bin'));
    const source = await randomFile(folder, 'x.bin', 50);

    const refused = await startReceiver({ target: inbox });
    await expect(sendTo(refused.port, source)).rejects.toMatchObject({ reason: 'exists' });
    await refused.stop();

    const overwriting = await startReceiver({ target: inbox, onConflict: 'overwrite' });
    await sendTo(overwriting.port, source);
    await overwriting.result;
    expect(await readFile(victim, 'utf8')).toBe('do not touch');
    expect((await stat(join(inbox, 'x.bin'))).size).toBe(50);
  });

  it('refuses a file over maxSize before any data moves', async () => {
    const folder = await tempFolder();
    const source = await randomFile(folder, 'big.bin', 2000);
    const receiver = await startReceiver({ target: join(folder, 'out.bin'), maxSize: 1000 });
    await expect(sendTo(receiver.port, source)).rejects.toMatchObject({ reason: 'too-large' });
    await expectStillWaiting(receiver);
    expect(await listFolder(folder)).toEqual(['big.bin']);
  });

  it('refuses a header claiming 1 PB for lack of space', async () => {
    const folder = await tempFolder();
    const receiver = await startReceiver({ target: join(folder, 'out.bin') });
    const peer = await rawPeer(receiver.port);
    await peer.write(headerFrame({ name: 'huge.bin', size: 2 ** 50 }));
    const refusal = parseFrame(await peer.nextFrame(FrameType.Refuse));
    expect(refusal).toMatchObject({ reason: 'no-space', message: 'not enough free space on the receiver for 1.00 PiB' });
    await expectStillWaiting(receiver);
    expect(await listFolder(folder)).toEqual([]);
  });

  for (const name of ['../../etc/passwd', '/etc/passwd', '..', 'a/b', 'a\\b', 'nul.txt', 'bell\u0007', '', 'x'.repeat(256)]) {
    it(`refuses the name ${JSON.stringify(name).slice(0, 40)} when storing into a folder`, async () => {
      const inbox = await tempFolder();
      const receiver = await startReceiver({ target: inbox });
      const peer = await rawPeer(receiver.port);
      await peer.write(headerFrame({ name, size: 3 }));
      const answer = await peer.nextFrame();
      // Empty names and names over 255 bytes break the protocol; the rest are refused as bad names.
      if (name.length > 255 || name === '') expect(answer.type).toBe(FrameType.Error);
      else expect(parseFrame(answer)).toMatchObject({ reason: 'bad-name' });
      await expectStillWaiting(receiver);
      expect(await listFolder(inbox)).toEqual([]);
    });
  }
});

describe('failures: clear error on both sides, no file', () => {
  it('garbage instead of a header: the stray client is told, the receiver still takes its file', async () => {
    const folder = await tempFolder();
    const receiver = await startReceiver({ target: join(folder, 'out.bin') });
    const peer = await rawPeer(receiver.port);
    await peer.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    const error = parseFrame(await peer.nextFrame(FrameType.Error));
    expect(error).toMatchObject({ code: 'FTX_ERR_PROTOCOL', message: 'the sender does not speak ftx: it sent "GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n" (an HTTP client?)' });
    expect(await listFolder(folder)).toEqual([]);
    const source = await randomFile(await tempFolder(), 'real.bin', 1000);
    await sendTo(receiver.port, source);
    expect((await receiver.result).bytes).toBe(1000);
    await expectSameFile(join(folder, 'out.bin'), source);
  });

  it('fewer bytes than announced, then EOF', async () => {
    const folder = await tempFolder();
    const receiver = await startReceiver({ target: join(folder, 'out.bin') });
    const peer = await rawPeer(receiver.port);
    await peer.write(headerFrame({ name: 'x', size: 1000 }));
    await peer.nextFrame(FrameType.Accept);
    await peer.write(Buffer.alloc(400));
    peer.socket.end();
    await expect(receiver.result).rejects.toThrow(ConnectionLostError);
    await expect(receiver.result).rejects.toThrow('the sender closed the connection after 400 B of 1000 B (40%); the partial file was discarded');
    expect(await listFolder(folder)).toEqual([]);
  });

  it('more bytes than announced', async () => {
    const folder = await tempFolder();
    const receiver = await startReceiver({ target: join(folder, 'out.bin') });
    const peer = await rawPeer(receiver.port);
    await peer.write(headerFrame({ name: 'x', size: 10 }));
    await peer.nextFrame(FrameType.Accept);
    await peer.write(Buffer.alloc(30, 0x41));
    const error = parseFrame(await peer.nextFrame(FrameType.Error));
    expect(error.message).toMatch(/more bytes than the 10 it announced/);
    await expect(receiver.result).rejects.toThrow(ProtocolError);
    expect(await listFolder(folder)).toEqual([]);
  });

  it('data that does not match the sender digest', async () => {
    const folder = await tempFolder();
    const receiver = await startReceiver({ target: join(folder, 'out.bin') });
    const peer = await rawPeer(receiver.port);
    await peer.write(headerFrame({ name: 'x', size: 4 }));
    await peer.nextFrame(FrameType.Accept);
    const wrongDigest = createHash('sha256').update('abcd').digest('hex');
    await peer.write(Buffer.concat([Buffer.from('abce'), jsonFrame(FrameType.Trailer, { hash: 'sha256', digest: wrongDigest })]));
    const error = parseFrame(await peer.nextFrame(FrameType.Error));
    expect(error.code).toBe('FTX_ERR_INTEGRITY');
    await expect(receiver.result).rejects.toThrow(IntegrityError);
    expect(await listFolder(folder)).toEqual([]);
  });

  it('a sender that stops talking times out', async () => {
    const folder = await tempFolder();
    const receiver = await startReceiver({ target: join(folder, 'out.bin'), timeoutMs: 300 });
    const peer = await rawPeer(receiver.port);
    await peer.write(headerFrame({ name: 'x', size: 1000 }));
    await peer.nextFrame(FrameType.Accept);
    await peer.write(Buffer.alloc(10));
    await expect(receiver.result).rejects.toThrow(TimeoutError);
    expect(await listFolder(folder)).toEqual([]);
    peer.socket.destroy();
  });

  it('a receiver that stops talking times out on the sender', async () => {
    const { createServer } = await import('node:net');
    const silent = createServer(() => {});
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const folder = await tempFolder();
    const source = await randomFile(folder, 's.bin', 10);
    const port = (silent.address() as { port: number }).port;
    await expect(sendTo(port, source, { timeoutMs: 300 })).rejects.toThrow(TimeoutError);
    silent.close();
  });

  it('an oversized frame length is rejected before its payload', async () => {
    const folder = await tempFolder();
    const receiver = await startReceiver({ target: join(folder, 'out.bin') });
    const peer = await rawPeer(receiver.port);
    await peer.write(Buffer.from('48ffffffff', 'hex'));
    const error = parseFrame(await peer.nextFrame(FrameType.Error));
    // A sender's frames fit in 8 KiB (a header, a trailer, an error), so that is the limit.
    expect(error.message).toBe('frame Header declares 4294967295 bytes, more than the 8192 allowed');
    await expectStillWaiting(receiver);
  });

  it('nothing listening: connection refused', async () => {
    const { createServer } = await import('node:net');
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as { port: number }).port;
    await new Promise((resolve) => probe.close(resolve));
    await expect(connect({ host: '127.0.0.1', port }, { timeoutMs: 2000 })).rejects.toThrow(ConnectError);
    await expect(connect({ host: '127.0.0.1', port }, { timeoutMs: 2000 })).rejects.toThrow(/connection refused by 127\.0\.0\.1:\d+/);
  });

  it('an aborted receiver removes the partial file', async () => {
    const folder = await tempFolder();
    const controller = new AbortController();
    const receiver = await startReceiver({ target: join(folder, 'out.bin'), signal: controller.signal });
    const peer = await rawPeer(receiver.port);
    await peer.write(headerFrame({ name: 'x', size: 1_000_000 }));
    await peer.nextFrame(FrameType.Accept);
    await peer.write(Buffer.alloc(5000));
    // The temporary file exists while data flows...
    await expect.poll(async () => (await listFolder(folder)).length).toBe(1);
    controller.abort(new InterruptedError('test abort'));
    await expect(receiver.result).rejects.toThrow(InterruptedError);
    // ...and is gone once the receiver reports.
    expect(await listFolder(folder)).toEqual([]);
    peer.socket.destroy();
  });
});

describe('connections that are not transfers', () => {
  it('ignores a silent connection and still takes the file', async () => {
    const folder = await tempFolder();
    const source = await randomFile(folder, 's.bin', 100);
    const receiver = await startReceiver({ target: join(folder, 'out.bin') });
    const probe = await connect({ host: '127.0.0.1', port: receiver.port }, { timeoutMs: 2000 });
    probe.resume(); // Read (and drop) the greeting, as a port scanner would.
    probe.end();
    await new Promise((resolve) => probe.on('close', resolve));
    await sendTo(receiver.port, source);
    await expect(receiver.result).resolves.toMatchObject({ bytes: 100 });
  });

  it('answers a ping with a time-stamped echo and keeps waiting', async () => {
    const folder = await tempFolder();
    const source = await randomFile(folder, 's.bin', 100);
    const receiver = await startReceiver({ target: join(folder, 'out.bin') });
    const peer = await rawPeer(receiver.port);
    await peer.write(jsonFrame(FrameType.Ping, { message: 'hello' }));
    const pong = parseFrame(await peer.nextFrame(FrameType.Pong));
    expect(pong.reply).toMatch(/^\[\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\] hello$/);
    expect(pong.version).toBe(2);
    await sendTo(receiver.port, source);
    await expect(receiver.result).resolves.toMatchObject({ bytes: 100 });
  });

  it('refuses a second sender as busy while a file is coming in', async () => {
    const folder = await tempFolder();
    const receiver = await startReceiver({ target: join(folder, 'out.bin') });
    const first = await rawPeer(receiver.port);
    await first.write(headerFrame({ name: 'x', size: 4 }));
    await first.nextFrame(FrameType.Accept);
    const source = await randomFile(folder, 's.bin', 10);
    await expect(sendTo(receiver.port, source)).rejects.toMatchObject({ reason: 'busy' });
    const digest = createHash('sha256').update('abcd').digest('hex');
    await first.write(Buffer.concat([Buffer.from('abcd'), jsonFrame(FrameType.Trailer, { hash: 'sha256', digest })]));
    await first.nextFrame(FrameType.Receipt);
    await expect(receiver.result).resolves.toMatchObject({ bytes: 4 });
    expect(await readFile(join(folder, 'out.bin'), 'utf8')).toBe('abcd');
  });
});

it('rejects a frame of an unknown type from the receiver', async () => {
  const { createServer } = await import('node:net');
  const bogus = createServer((socket) => socket.end(encodeFrame(FrameType.Pong, Buffer.from('{}'))));
  await new Promise<void>((resolve) => bogus.listen(0, '127.0.0.1', resolve));
  const folder = await tempFolder();
  const source = await randomFile(folder, 's.bin', 10);
  await expect(sendTo((bogus.address() as { port: number }).port, source)).rejects.toThrow(ProtocolError);
  bogus.close();
});

describe('file metadata', () => {
  it("keeps the sender's permission bits (under the receiver's umask, without setuid) and modification time", async () => {
    const { chmod, utimes } = await import('node:fs/promises');
    const folder = await tempFolder();
    const inbox = await tempFolder();
    const cases = [
      { name: 'private.dump', mode: 0o600 },
      { name: 'script.sh', mode: 0o755 },
      { name: 'setuid.bin', mode: 0o4755 },
    ];
    const lastYear = new Date('2025-11-30T02:30:00.123Z');
    for (const { name, mode } of cases) {
      const source = await randomFile(folder, name, 100);
      await chmod(source, mode);
      await utimes(source, lastYear, lastYear);
      const receiver = await startReceiver({ target: inbox });
      await sendTo(receiver.port, source);
      await receiver.result;
      const stored = await stat(join(inbox, name));
      expect(stored.mode & 0o7777, name).toBe(mode & 0o777 & ~process.umask());
      expect(Math.abs(stored.mtimeMs - lastYear.getTime()), name).toBeLessThan(1);
    }
  });
});
