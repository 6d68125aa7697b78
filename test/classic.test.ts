/**
 * Compatibility with the classic tutorial protocol, both ways, against the Python
 * peers in test/peers (written from the tutorial's description), through the real CLI.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runCli, startRecvCli, summaryOf } from './helpers/cli.js';
import { expectSameFile, listFolder, randomFile, tempFolder } from './helpers/files.js';

const FIXTURE_JPEG = fileURLToPath(new URL('./fixtures/06.jpg', import.meta.url));
const PEERS = fileURLToPath(new URL('./peers/', import.meta.url));

interface PythonRun {
  exit: Promise<number>;
  stdout: () => string;
  stderr: () => string;
}

function python(script: string, args: string[]): PythonRun {
  const child = spawn('python3', [join(PEERS, script), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (text: string) => (stdout += text));
  child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
  const exit = new Promise<number>((resolve) => child.on('close', (code) => resolve(code ?? 1)));
  return { exit, stdout: () => stdout, stderr: () => stderr };
}

/** Starts classic_server.py and resolves with its port once it prints "listening on PORT". */
async function classicServer(output: string): Promise<PythonRun & { port: number }> {
  const run = python('classic_server.py', [output, '--port', '0', '--timeout', '20']);
  const deadline = Date.now() + 10_000;
  while (!/listening on (\d+)/.test(run.stdout())) {
    if (Date.now() > deadline) throw new Error(`classic server did not start: ${run.stderr()}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return { ...run, port: Number(/listening on (\d+)/.exec(run.stdout())?.[1]) };
}

const SIZES = [0, 1, 1024 * 1024 + 7];

describe('ftx recv facing a classic client', () => {
  for (const size of SIZES) {
    it(`takes ${size} bytes and exits 0`, async () => {
      const folder = await tempFolder();
      const source = await randomFile(folder, 'source.bin', size);
      const target = join(folder, 'out.bin');
      const recv = await startRecvCli([target]);
      const client = python('classic_client.py', [source, '127.0.0.1', String(recv.port)]);
      expect(await client.exit).toBe(0);
      expect(await recv.exit).toBe(0);
      await expectSameFile(target, source);
      expect(summaryOf(recv)).toMatchObject({ ok: true, protocol: 'classic', bytes: size });
      expect(await listFolder(folder)).toEqual(['out.bin', 'source.bin']);
    });
  }

  it('takes the JPEG', async () => {
    const folder = await tempFolder();
    const target = join(folder, 'out.jpg');
    const recv = await startRecvCli([target]);
    const client = python('classic_client.py', [FIXTURE_JPEG, '127.0.0.1', String(recv.port)]);
    expect(await client.exit).toBe(0);
    expect(await recv.exit).toBe(0);
    await expectSameFile(target, FIXTURE_JPEG);
  });

  it('reads a size that arrives in two TCP segments', async () => {
    const folder = await tempFolder();
    const source = await randomFile(folder, 'source.bin', 1024 * 1024 + 7);
    const target = join(folder, 'out.bin');
    const recv = await startRecvCli([target]);
    const client = python('classic_client.py', [source, '127.0.0.1', String(recv.port), '--split-size-at', '3', '--split-delay-ms', '50']);
    expect(await client.exit).toBe(0);
    expect(await recv.exit).toBe(0);
    await expectSameFile(target, source);
  });

  it('names the file by its arrival time when the target is a folder', async () => {
    const inbox = await tempFolder();
    const recv = await startRecvCli([inbox]);
    const client = python('classic_client.py', [FIXTURE_JPEG, '127.0.0.1', String(recv.port)]);
    expect(await client.exit).toBe(0);
    expect(await recv.exit).toBe(0);
    const [name] = await listFolder(inbox);
    expect(name).toMatch(/^classic-\d{8}-\d{6}Z\.bin$/);
    await expectSameFile(join(inbox, name as string), FIXTURE_JPEG);
  });

  it('keeps exactly the announced size when the client sends more, and warns', async () => {
    const folder = await tempFolder();
    const target = join(folder, 'out.txt');
    const recv = await startRecvCli([target]);
    const socket = connect({ host: '127.0.0.1', port: recv.port });
    await once(socket, 'data'); // greeting
    socket.write('5');
    const [ack] = (await once(socket, 'data')) as [Buffer];
    expect(ack.toString()).toBe('ko');
    socket.end('abcdefgh');
    expect(await recv.exit).toBe(0);
    expect(await readFile(target, 'utf8')).toBe('abcde');
    expect(recv.logs().some((record) => /sent 3 bytes more than the 5 it announced/.test(String(record.msg)))).toBe(true);
  });

  it('keeps no file when the client closes before all bytes arrived', async () => {
    const folder = await tempFolder();
    const recv = await startRecvCli([join(folder, 'out.bin')]);
    const socket = connect({ host: '127.0.0.1', port: recv.port });
    await once(socket, 'data');
    socket.write('100');
    await once(socket, 'data');
    socket.end('only ten b');
    expect(await recv.exit).toBe(9);
    expect(await listFolder(folder)).toEqual([]);
  });
});

describe('ftx send facing a classic server', () => {
  for (const size of SIZES) {
    it(`delivers ${size} bytes, exits 0 and warns that delivery is unverified`, async () => {
      const folder = await tempFolder();
      const source = await randomFile(folder, 'source.bin', size);
      const output = join(folder, 'received.bin');
      const server = await classicServer(output);
      const send = runCli(['send', source, `127.0.0.1:${server.port}`, '--json']);
      expect(await send.exit).toBe(0);
      expect(await server.exit).toBe(0);
      expect(server.stdout()).toContain(`received ${size} bytes`);
      await expectSameFile(output, source);
      expect(summaryOf(send)).toMatchObject({ ok: true, protocol: 'classic', verified: false, bytes: size });
      expect(send.logs().some((record) => record.level === 40 && /delivery will not be verified/.test(String(record.msg)))).toBe(true);
    });
  }

  it('delivers the JPEG', async () => {
    const folder = await tempFolder();
    const output = join(folder, 'received.jpg');
    const server = await classicServer(output);
    const send = runCli(['send', FIXTURE_JPEG, `127.0.0.1:${server.port}`]);
    expect(await send.exit).toBe(0);
    expect(await server.exit).toBe(0);
    await expectSameFile(output, FIXTURE_JPEG);
  });

  it('with --verified-only, sends nothing and exits 11', async () => {
    const folder = await tempFolder();
    const output = join(folder, 'received.bin');
    const server = await classicServer(output);
    const send = runCli(['send', FIXTURE_JPEG, `127.0.0.1:${server.port}`, '--verified-only', '--json']);
    expect(await send.exit).toBe(11);
    expect(summaryOf(send)).toMatchObject({ ok: false, exitCode: 11, error: { code: 'FTX_ERR_UNVERIFIED' } });
    expect(await server.exit).not.toBe(0); // it never got a size
    expect(await listFolder(folder)).toEqual([]);
  });
});

describe('ftx ping', () => {
  it('gets a time-stamped echo from a waiting receiver, which still takes its file afterwards', async () => {
    const folder = await tempFolder();
    const recv = await startRecvCli([join(folder, 'out.jpg')]);
    const pingRun = runCli(['ping', `127.0.0.1:${recv.port}`, '--message', 'are you there']);
    expect(await pingRun.exit).toBe(0);
    expect(pingRun.stdout()).toMatch(/^\[\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\] are you there {2}\(127\.0\.0\.1:\d+: rtt [\d.]+ ms, ftx protocol 2, ftx\/[\d.]+\)\n$/);

    const jsonPing = runCli(['ping', `127.0.0.1:${recv.port}`, '--json']);
    expect(await jsonPing.exit).toBe(0);
    expect(summaryOf(jsonPing)).toMatchObject({ ok: true, protocol: 'ftx', version: 2, rttMs: expect.any(Number), reply: expect.stringMatching(/\] ping$/) });

    const send = runCli(['send', FIXTURE_JPEG, `127.0.0.1:${recv.port}`]);
    expect(await send.exit).toBe(0);
    expect(await recv.exit).toBe(0);
    await expectSameFile(join(folder, 'out.jpg'), FIXTURE_JPEG);
  });

  it('reports a classic receiver as up (exit 0), and exits 3 once nothing listens there', async () => {
    const server = await classicServer(join(await tempFolder(), 'unused'));
    const port = server.port;
    const classicPing = runCli(['ping', `127.0.0.1:${port}`]);
    expect(await classicPing.exit).toBe(0); // it answered, with its greeting
    expect(classicPing.stdout()).toMatch(/^welcome to conair {2}\(127\.0\.0\.1:\d+: classic protocol\)/);
    expect(classicPing.logs().some((record) => /classic tutorial receiver/.test(String(record.msg)))).toBe(true);
    await server.exit; // the one-shot classic server is gone now
    const refused = runCli(['ping', `127.0.0.1:${port}`]);
    expect(await refused.exit).toBe(3);
  });
});

/** A server that greets with `banner` and then waits, as SSH and SMTP servers do. */
async function bannerServer(banner: string) {
  const { createServer } = await import('node:net');
  const received: Buffer[] = [];
  const server = createServer((socket) => {
    socket.on('error', () => {});
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    socket.write(banner);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return { port, received, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

// Regression (issue 10): any text greeting counted as a classic receiver. Against an SSH
// server `ftx send` warned it "speaks the classic tutorial protocol" and sent the file
// anyway, and `ftx ping` exited 0: the README's cron health check read a wrong port as up.
describe('only the tutorial greeting counts as a classic receiver', () => {
  it('ftx ping against an SSH banner exits 4: not an ftx receiver', async () => {
    const ssh = await bannerServer('SSH-2.0-OpenSSH_9.6\r\n');
    try {
      const pinged = runCli(['ping', `127.0.0.1:${ssh.port}`, '--timeout', '5']);
      expect(await pinged.exit).toBe(4);
      expect(pinged.stdout()).toBe('');
      expect(pinged.logs().find((record) => record.level === 50)?.msg).toBe('the receiver is not an ftx receiver (it greeted "SSH-2.0-OpenSSH_9.6"); check the host and port');
    } finally {
      await ssh.close();
    }
  });

  it('ftx send to an SSH banner exits 4 and sends nothing of the file', async () => {
    const ssh = await bannerServer('SSH-2.0-OpenSSH_9.6\r\n');
    try {
      const sent = runCli(['send', FIXTURE_JPEG, `127.0.0.1:${ssh.port}`, '--json', '--timeout', '5']);
      expect(await sent.exit).toBe(4);
      expect(summaryOf(sent)).toMatchObject({ ok: false, exitCode: 4, error: { code: 'FTX_ERR_PROTOCOL', message: expect.stringMatching(/not an ftx receiver/) } });
      expect(Buffer.concat(ssh.received).length).toBe(0);
    } finally {
      await ssh.close();
    }
  });

  it('a greeting that only starts like the tutorial\'s ("welcome to conair, friend") is not one either', async () => {
    const impostor = await bannerServer('welcome to conair, friend\n');
    try {
      const pinged = runCli(['ping', `127.0.0.1:${impostor.port}`, '--timeout', '5']);
      expect(await pinged.exit).toBe(4);
    } finally {
      await impostor.close();
    }
  });
});
