/**
 * The real CLI, as users type it: child processes on 127.0.0.1, real files, exit
 * codes and the --json summary line.
 */
import { once } from 'node:events';
import { execFileSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FrameType } from '../src/framing.js';
import { runCli, startRecvCli, summaryOf } from './helpers/cli.js';
import { blake3Of, expectSameFile, keptPartialNames, listFolder, randomFile, sha256Of, tempFolder } from './helpers/files.js';
import { headerFrame, rawPeer } from './helpers/raw-peer.js';

const FIXTURE_JPEG = new URL('./fixtures/06.jpg', import.meta.url).pathname;

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function errorLine(stderr: string): string {
  const record = stderr.split('\n').filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as { level: number; msg: string }).find((r) => r.level === 50);
  return record?.msg ?? stderr;
}

describe('ftx --help and usage errors', () => {
  it('prints help with both commands and exits 0', async () => {
    const run = runCli(['--help']);
    expect(await run.exit).toBe(0);
    expect(run.stdout()).toMatch(/ftx recv +\[TARGET\]/);
    expect(run.stdout()).toMatch(/ftx send +PATH\.\.\. DESTINATION/);
  });

  // The bin answers --help and --version from text the build rendered (bin/ftx.js), for a
  // faster start: it must be exactly what the CLI itself prints.
  it('--help and --version from the prerendered text are exactly what the CLI renders', async () => {
    const { execFile } = await import('node:child_process');
    const rendered = (args: string[]) =>
      new Promise<string>((resolve, reject) => {
        const script = `import(${JSON.stringify(new URL('../dist/cli.js', import.meta.url).href)}).then(async (cli) => { process.exitCode = await cli.main(${JSON.stringify(args)}); })`;
        execFile(process.execPath, ['-e', script], (error, stdout) => (error ? reject(error) : resolve(stdout)));
      });
    for (const args of [['--help'], ['--version']]) {
      const fast = runCli(args);
      expect(await fast.exit).toBe(0);
      expect(fast.stdout(), `ftx ${args.join(' ')}`).toBe(await rendered(args));
    }
  });

  for (const command of ['recv', 'send', 'ping']) {
    it(`ftx ${command} --help prints that command's help and does nothing else`, async () => {
      const run = runCli([command, '--help']);
      expect(await run.exit).toBe(0);
      expect(run.stdout()).toContain(`ftx ${command}`);
      expect(run.stdout()).toContain('--timeout');
      expect(run.stderr()).toBe(''); // no "listening", no connection attempt
    });
  }

  it('prints the version', async () => {
    const run = runCli(['--version']);
    expect(await run.exit).toBe(0);
    const { version } = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
    expect(run.stdout().trim()).toBe(version);
  });

  for (const [args, pattern] of [
    [['send', 'only-a-file'], /say what to send and where: ftx send PATH\.\.\. HOST\[:PORT\] \(only-a-file alone is not enough\)/],
    [['send', '-', 'host'], /stdin has no name: give one with --name/],
    [['send', '-', 'a.txt', 'host', '--name', 'x'], /- \(stdin\) is sent on its own/],
    [['recv', 'a', 'b'], /unexpected argument "b"; ftx recv takes one target/],
    [['recv', '-', '--json'], /--json prints on stdout, which `ftx recv -` fills with the data/],
    [['recv', '--port', '70000'], /"70000" is not a port number/],
    [['send', FIXTURE_JPEG, '127.0.0.1:http'], /"http" is not a port number/],
    [['frobnicate'], /unknown command "frobnicate"/],
    [[], /Say what to do/],
  ] as const) {
    it(`exits 2 with one line for: ftx ${args.join(' ')}`, async () => {
      const run = runCli([...args]);
      expect(await run.exit).toBe(2);
      expect(run.stderr()).toMatch(pattern);
      expect(run.stderr()).toMatch(/^ftx: error: /);
    });
  }
});

describe('ftx send -> ftx recv', () => {
  it('moves the JPEG fixture; both exit 0 with a JSON summary', async () => {
    const folder = await tempFolder();
    const target = join(folder, 'out.jpg');
    const recv = await startRecvCli([target]);
    const send = runCli(['send', FIXTURE_JPEG, `127.0.0.1:${recv.port}`, '--json']);
    expect(await send.exit).toBe(0);
    expect(await recv.exit).toBe(0);
    await expectSameFile(target, FIXTURE_JPEG);
    // BLAKE3 by default, computed by the native module here (hash-wasm, independent, agrees).
    const digest = await blake3Of(FIXTURE_JPEG);
    expect(summaryOf(recv)).toMatchObject({ ok: true, path: target, bytes: 1858, hash: 'blake3', digest, digestEngine: 'native', peer: expect.stringMatching(/^127\.0\.0\.1:\d+$/) });
    expect(summaryOf(send)).toMatchObject({ ok: true, bytes: 1858, hash: 'blake3', digest, digestEngine: 'native', verified: true, peer: `127.0.0.1:${recv.port}` });
    expect(summaryOf(send)).not.toHaveProperty('sha256');
    expect(summaryOf(send).bytesPerSecond).toEqual(expect.any(Number));
    expect(summaryOf(recv).seconds).toEqual(expect.any(Number));
  });

  it('--hash xxh128: both summaries carry the same xxh128 digest and no sha256 field', async () => {
    const folder = await tempFolder();
    const target = join(folder, 'out.jpg');
    const recv = await startRecvCli([target]);
    const send = runCli(['send', FIXTURE_JPEG, `127.0.0.1:${recv.port}`, '--json', '--hash', 'xxh128']);
    expect(await send.exit).toBe(0);
    expect(await recv.exit).toBe(0);
    await expectSameFile(target, FIXTURE_JPEG);
    const sent = summaryOf(send);
    expect(sent).toMatchObject({ hash: 'xxh128', digest: expect.stringMatching(/^[0-9a-f]{32}$/) });
    expect(sent).not.toHaveProperty('sha256');
    expect(summaryOf(recv)).toMatchObject({ hash: 'xxh128', digest: sent.digest });
  });

  it("saves under the sender's name in the current folder when no target is given", async () => {
    const folder = await tempFolder();
    const source = await randomFile(await tempFolder(), 'nightly.tar', 300_000);
    const recv = await startRecvCli([], { cwd: folder });
    const send = runCli(['send', source, `127.0.0.1:${recv.port}`, '--quiet']);
    expect(await send.exit).toBe(0);
    expect(await recv.exit).toBe(0);
    await expectSameFile(join(folder, 'nightly.tar'), source);
    expect(send.stderr()).toBe(''); // --quiet and success: nothing to say
  });

  it('reports partial files left by an earlier receiver that was killed (kept to resume), and leaves them alone', async () => {
    const folder = await tempFolder();
    const leftover = join(folder, '.out.bin.0badf00d.ftx-part');
    await writeFile(leftover, 'half a file');
    const recv = await startRecvCli([join(folder, 'out.bin')]);
    const warning = await recv.waitForLog((record) => record.event === 'leftover');
    expect(warning).toMatchObject({ level: 30, path: leftover, bytes: 11 });
    expect(String(warning.msg)).toMatch(/is kept from a transfer that was cut short: sending that file again resumes it; it is removed once untouched for 7 d$/);
    recv.child.kill('SIGINT');
    expect(await recv.exit).toBe(130);
    expect(await readFile(leftover, 'utf8')).toBe('half a file');
  });

  it('tells the user the command to type on the other machine', async () => {
    const folder = await tempFolder();
    const recv = await startRecvCli([join(folder, 'x')]);
    const listening = recv.logs().find((record) => record.event === 'listening');
    expect(listening?.msg).toMatch(new RegExp(`ftx send FILE 127\\.0\\.0\\.1:${recv.port}`));
    recv.child.kill('SIGINT');
    expect(await recv.exit).toBe(130);
  });
});

describe('errors users hit: one line, documented exit code, nothing left behind', () => {
  it('file not found: 8, before any network work', async () => {
    const run = runCli(['send', '/no/such/file.bin', `127.0.0.1:${await closedPort()}`]);
    expect(await run.exit).toBe(8);
    expect(errorLine(run.stderr())).toMatch(/cannot read \/no\/such\/file\.bin: no such file/);
  });

  it('two things to send of the same name: 2, before connecting', async () => {
    const [one, two] = [await tempFolder(), await tempFolder()];
    await writeFile(join(one, 'same.txt'), 'a');
    await writeFile(join(two, 'same.txt'), 'b');
    const run = runCli(['send', join(one, 'same.txt'), join(two, 'same.txt'), `127.0.0.1:${await closedPort()}`]);
    expect(await run.exit).toBe(2);
    expect(errorLine(run.stderr())).toMatch(/two things to send are both named "same\.txt"/);
  });

  it('connection refused: 3', async () => {
    const run = runCli(['send', FIXTURE_JPEG, `127.0.0.1:${await closedPort()}`]);
    expect(await run.exit).toBe(3);
    expect(errorLine(run.stderr())).toMatch(/connection refused by 127\.0\.0\.1:\d+: nothing listens there/);
  });

  it('unknown host: 3', async () => {
    const run = runCli(['send', FIXTURE_JPEG, 'no-such-host.invalid:9999']);
    expect(await run.exit).toBe(3);
    expect(errorLine(run.stderr())).toMatch(/unknown host "no-such-host\.invalid"/);
  });

  it('port in use: 3', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as { port: number }).port;
    const folder = await tempFolder();
    const run = runCli(['recv', join(folder, 'x'), '--port', String(port), '--bind', '127.0.0.1']);
    expect(await run.exit).toBe(3);
    expect(errorLine(run.stderr())).toMatch(new RegExp(`port ${port} is already in use`));
    blocker.close();
  });

  it('target exists: the receiver refuses to start (5); --force replaces it', async () => {
    const folder = await tempFolder();
    const target = join(folder, 'out.jpg');
    await writeFile(target, 'keep me');
    const refused = runCli(['recv', target, '--port', '0']);
    expect(await refused.exit).toBe(5);
    expect(errorLine(refused.stderr())).toMatch(/already exists; remove it or choose another name \(add --force to replace it\)/);
    expect(await readFile(target, 'utf8')).toBe('keep me');

    const recv = await startRecvCli([target, '--force']);
    const send = runCli(['send', FIXTURE_JPEG, `127.0.0.1:${recv.port}`]);
    expect(await send.exit).toBe(0);
    expect(await recv.exit).toBe(0);
    await expectSameFile(target, FIXTURE_JPEG);
  });

  it('target folder missing: 8 before listening', async () => {
    const run = runCli(['recv', '/no/such/folder/out.bin', '--port', '0']);
    expect(await run.exit).toBe(8);
    expect(errorLine(run.stderr())).toMatch(/cannot save into \/no\/such\/folder: no such file or folder/);
  });

  // Regression (issue 10): `printf 'GET / HTTP/1.0\r\n\r\n' | nc host 9999` ended a waiting
  // `ftx recv out.bin` with exit 4 and "frame Greeting declares 1163141167 bytes": any host
  // on the LAN could kill a receiver. A stray client is told, logged, and the wait goes on.
  it('a stray HTTP request does not end a waiting receiver: it is logged in plain words, and the real file still arrives', async () => {
    const folder = await tempFolder();
    const recv = await startRecvCli([join(folder, 'out.bin')]);
    const peer = await rawPeer(recv.port);
    await peer.write('GET / HTTP/1.0\r\n\r\n');
    const error = await peer.nextFrame(FrameType.Error);
    expect(JSON.parse(error.payload.toString())).toMatchObject({ code: 'FTX_ERR_PROTOCOL', message: expect.stringMatching(/does not speak ftx: it sent "GET \/ HTTP\/1\.0.*an HTTP client/) });
    const logged = await recv.waitForLog((record) => record.code === 'FTX_ERR_PROTOCOL');
    expect(logged.msg).toMatch(/does not speak ftx.*still waiting/);
    expect(await listFolder(folder)).toEqual([]);
    const send = runCli(['send', FIXTURE_JPEG, `127.0.0.1:${recv.port}`]);
    expect(await send.exit).toBe(0);
    expect(await recv.exit).toBe(0);
    expect(await listFolder(folder)).toEqual(['out.bin']);
  });

  it('a sender that goes silent: the receiver times out (7) and keeps no file', async () => {
    const folder = await tempFolder();
    const recv = await startRecvCli([join(folder, 'out.bin'), '--timeout', '1']);
    const peer = await rawPeer(recv.port);
    await peer.write(headerFrame({ name: 'x', size: 100_000 }));
    await peer.nextFrame(FrameType.Accept);
    await peer.write(Buffer.alloc(1000));
    expect(await recv.exit).toBe(7);
    expect(errorLine(recv.stderr())).toMatch(/the sender sent nothing for 1 s/);
    expect(await listFolder(folder)).toEqual([]);
    peer.socket.destroy();
  });

  it('Ctrl-C on the receiver mid-file: 130, the partial file is removed', async () => {
    const folder = await tempFolder();
    const recv = await startRecvCli([join(folder, 'out.bin')]);
    const peer = await rawPeer(recv.port);
    await peer.write(headerFrame({ name: 'x', size: 10_000_000 }));
    await peer.nextFrame(FrameType.Accept);
    await peer.write(Buffer.alloc(100_000));
    await expect.poll(async () => (await listFolder(folder)).length).toBe(1);
    recv.child.kill('SIGINT');
    expect(await recv.exit).toBe(130);
    expect(await listFolder(folder)).toEqual([]);
    await peer.closed;
  });

  it('Ctrl-C on the sender mid-file: 130; the receiver reports the lost connection (9) and keeps no file, only the partial to resume', async () => {
    const folder = await tempFolder();
    const source = await randomFile(folder, 'big.bin', 64 * 1024 * 1024);
    const inbox = await tempFolder();
    const recv = await startRecvCli([join(inbox, 'out.bin'), '--timeout', '5']);
    // A proxy that forwards slowly keeps the transfer in flight long enough to interrupt.
    const slow = await slowProxy(recv.port, 256 * 1024);
    const send = runCli(['send', source, `127.0.0.1:${slow.port}`]);
    await recv.waitForLog((record) => record.event === 'receiving');
    // Some file data is through (past the frames before it), so there is a part to keep.
    await expect.poll(() => slow.forwarded(), { timeout: 10_000 }).toBeGreaterThan(64 * 1024);
    send.child.kill('SIGINT');
    expect(await send.exit).toBe(130);
    expect(await recv.exit).toBe(9);
    expect(await listFolder(inbox)).toEqual(keptPartialNames(join(inbox, 'out.bin')));
    slow.server.close();
  });

  it('SIGHUP on the receiver mid-file (terminal closed): 129 with a message, the partial file is removed', async () => {
    const folder = await tempFolder();
    const recv = await startRecvCli([join(folder, 'out.bin')]);
    const peer = await rawPeer(recv.port);
    await peer.write(headerFrame({ name: 'x', size: 10_000_000 }));
    await peer.nextFrame(FrameType.Accept);
    await peer.write(Buffer.alloc(100_000));
    await expect.poll(async () => (await listFolder(folder)).length).toBe(1);
    recv.child.kill('SIGHUP');
    expect(await recv.exit).toBe(129);
    expect(recv.child.signalCode).toBeNull(); // it exited by itself, not killed by the signal
    expect(errorLine(recv.stderr())).toMatch(/stopped by SIGHUP \(the terminal closed or the SSH session dropped\)/);
    expect(summaryOf(recv)).toMatchObject({ ok: false, exitCode: 129, error: { code: 'FTX_ERR_INTERRUPTED' } });
    expect(await listFolder(folder)).toEqual([]);
    await peer.closed;
  });

  it('SIGHUP on the sender mid-file: 129 with a message; the receiver reports the lost connection (9) and keeps no file, only the partial to resume', async () => {
    const folder = await tempFolder();
    const source = await randomFile(folder, 'big.bin', 64 * 1024 * 1024);
    const inbox = await tempFolder();
    const recv = await startRecvCli([join(inbox, 'out.bin'), '--timeout', '5']);
    const slow = await slowProxy(recv.port, 256 * 1024);
    const send = runCli(['send', source, `127.0.0.1:${slow.port}`, '--json']);
    await recv.waitForLog((record) => record.event === 'receiving');
    await expect.poll(() => slow.forwarded(), { timeout: 10_000 }).toBeGreaterThan(64 * 1024);
    send.child.kill('SIGHUP');
    expect(await send.exit).toBe(129);
    expect(send.child.signalCode).toBeNull();
    expect(summaryOf(send)).toMatchObject({ ok: false, exitCode: 129, error: { code: 'FTX_ERR_INTERRUPTED' } });
    expect(errorLine(send.stderr())).toMatch(/^stopped by SIGHUP \(the terminal closed or the SSH session dropped\); sending again resumes where it stopped$/);
    expect(await recv.exit).toBe(9);
    expect(await listFolder(inbox)).toEqual(keptPartialNames(join(inbox, 'out.bin')));
    slow.server.close();
  });

  it('a receiver that never answers: the sender times out (7)', async () => {
    const silent = createServer(() => {});
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const run = runCli(['send', FIXTURE_JPEG, `127.0.0.1:${(silent.address() as { port: number }).port}`, '--timeout', '1', '--json']);
    expect(await run.exit).toBe(7);
    expect(summaryOf(run)).toMatchObject({ ok: false, exitCode: 7, error: { code: 'FTX_ERR_TIMEOUT', message: expect.stringMatching(/sent no greeting within 1 s: is an ftx receiver listening there.*\(raise --timeout for slow links\)$/) } });
    silent.close();
  });
});

describe('disk full on the receiver', () => {
  const canMount = process.getuid?.() === 0 && hasMount();
  it.skipIf(!canMount)('receiver exits 8, sender exits 10, no file under the final name', async () => {
    const mountPoint = await tempFolder('ftx-tmpfs-');
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mountPoint]);
    try {
      const source = await randomFile(await tempFolder(), 'big.bin', 800 * 1024);
      const recv = await startRecvCli([join(mountPoint, 'out.bin')]);
      // Fill the disk after the free-space check passed, as another writer would.
      const filler = (async () => {
        await recv.waitForLog((record) => record.event === 'receiving');
        await writeFile(join(mountPoint, 'filler'), Buffer.alloc(900 * 1024)).catch(() => {});
      })();
      // Through a slow proxy (200 KiB/s) the data takes seconds, so the filler, which
      // starts the moment the receiver accepts, always lands mid-file.
      const slow = await slowProxy(recv.port, 200 * 1024);
      const send = runCli(['send', source, `127.0.0.1:${slow.port}`, '--json']);
      await filler;
      expect(await recv.exit).toBe(8);
      expect(errorLine(recv.stderr())).toMatch(/the disk is full/);
      expect(await send.exit).toBe(10);
      expect(summaryOf(send)).toMatchObject({ ok: false, error: { code: 'FTX_ERR_REMOTE_IO', message: expect.stringMatching(/disk is full/) } });
      expect((await listFolder(mountPoint)).filter((name) => name !== 'filler')).toEqual([]);
      slow.server.close();
    } finally {
      execFileSync('umount', ['-l', mountPoint]);
    }
  });
});

function hasMount(): boolean {
  try {
    execFileSync('mount', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Forwards client -> server at about `bytesPerSecond`, server -> client at full speed. */
async function slowProxy(targetPort: number, bytesPerSecond: number): Promise<{ port: number; server: Server; forwarded: () => number }> {
  let forwarded = 0;
  const server = createServer((client: Socket) => {
    const upstream = connect({ host: '127.0.0.1', port: targetPort });
    upstream.pipe(client);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    const perTick = Math.max(1, Math.floor(bytesPerSecond / 20));
    client.pause();
    const timer = setInterval(() => {
      const chunk = client.read(Math.min(perTick, client.readableLength || perTick)) as Buffer | null;
      if (chunk) {
        forwarded += chunk.length;
        upstream.write(chunk);
      }
      else client.read(0);
    }, 50);
    client.on('close', () => clearInterval(timer));
    client.on('end', () => {
      clearInterval(timer);
      upstream.end();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { port: (server.address() as { port: number }).port, server, forwarded: () => forwarded };
}
