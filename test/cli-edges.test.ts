/**
 * Edge cases of the command line found in use (issue 10, "CLI edge bugs"): each test is
 * named after what it guards and runs the real CLI as a child process, against real
 * receivers or a scripted one on 127.0.0.1. Waits are bounded: a CLI that hangs is
 * killed and the test fails, it does not hang the suite.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { escapeForTerminal } from '../src/cli/output.js';
import { FrameType } from '../src/framing.js';
import { jsonFrame } from '../src/protocol/messages.js';
import { formatProgress, formatRate, plural } from '../src/util/units.js';
import { FTX_BIN, runCli, startRecvCli, summaryOf, type CliRun } from './helpers/cli.js';
import { fakeReceiver } from './helpers/fake-receiver.js';
import { expectSameFile, listFolder, randomFile, tempFolder } from './helpers/files.js';
import { rawPeer } from './helpers/raw-peer.js';

const FIXTURE_JPEG = new URL('./fixtures/06.jpg', import.meta.url).pathname;
/** What a healthy CLI needs at most for any run below; past it, the CLI is taken to hang. */
const HANG_GUARD_MS = 15_000;
const SHA256_OF_NOTHING = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

/** The exit code, or 'hung' (and the child killed) if it has not exited within the guard. */
async function exitOf(run: CliRun, guardMs = HANG_GUARD_MS): Promise<number | 'hung'> {
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<'hung'>((resolve) => {
    timer = setTimeout(() => resolve('hung'), guardMs);
  });
  const outcome = await Promise.race([run.exit, hung]);
  clearTimeout(timer);
  if (outcome === 'hung') {
    run.child.kill('SIGKILL');
    await run.exit;
  }
  return outcome;
}

/** Polls `condition` until it holds; fails the test after `ms`. */
async function waitUntil(condition: () => boolean, what: () => string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting: ${what()}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** A server that accepts and never says a word: a client without a timeout waits forever. */
async function silentServer(): Promise<{ port: number; close: () => void }> {
  const server = createServer(() => {});
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as { port: number }).port, close: () => server.close() };
}

function usageLine(run: CliRun): string {
  return run.stderr().split('\n')[0] ?? '';
}

describe('--timeout is checked by every command', () => {
  for (const value of ['abc', '-1', '1e12']) {
    for (const command of ['send', 'ping', 'recv'] as const) {
      it(`ftx ${command} --timeout ${value}: usage error (2), one line, no hang`, async () => {
        const silent = await silentServer();
        const folder = await tempFolder();
        const args =
          command === 'send'
            ? ['send', FIXTURE_JPEG, `127.0.0.1:${silent.port}`]
            : command === 'ping'
              ? ['ping', `127.0.0.1:${silent.port}`]
              : ['recv', join(folder, 'out.bin'), '--port', '0', '--bind', '127.0.0.1'];
        const run = runCli([...args, '--timeout', value]);
        expect(await exitOf(run)).toBe(2);
        expect(usageLine(run)).toMatch(/^ftx: error: --timeout must be a number of seconds from 0 to \d+/);
        expect(run.stderr()).not.toMatch(/unexpected error|NaN/);
        silent.close();
      });
    }
  }
});

describe('a repeated option takes its last value', () => {
  it('--log-level debug --log-level error: no stack trace, the last level applies', async () => {
    const run = runCli(['send', FIXTURE_JPEG, `127.0.0.1:${await closedPort()}`, '--log-level', 'debug', '--log-level', 'error']);
    expect(await exitOf(run)).toBe(3);
    expect(run.stderr()).not.toMatch(/\n\s+at /);
    expect(run.logs().map((record) => record.level)).toEqual([50]);
  });

  it('--hash, --name, --timeout and --port given twice: the transfer uses the last of each', async () => {
    const inbox = await tempFolder();
    const recv = await startRecvCli([inbox, '--port', '1']); // startRecvCli adds --port 0 after it
    const send = runCli([
      'send', FIXTURE_JPEG, `127.0.0.1:${recv.port}`, '--json',
      '--hash', 'sha256', '--hash', 'xxh128',
      '--name', 'first.jpg', '--name', 'second.jpg',
      '--timeout', '0', '--timeout', '20',
    ]);
    expect(await exitOf(send)).toBe(0);
    expect(await exitOf(recv)).toBe(0);
    expect(summaryOf(send)).toMatchObject({ ok: true, hash: 'xxh128', name: 'second.jpg' });
    expect(summaryOf(recv)).toMatchObject({ ok: true, hash: 'xxh128', path: join(inbox, 'second.jpg') });
    expect(await listFolder(inbox)).toEqual(['second.jpg']);
  });

  it('--port a --port b: a usage error about the last one', async () => {
    const run = runCli(['recv', '--port', 'a', '--port', 'b']);
    expect(await exitOf(run)).toBe(2);
    expect(usageLine(run)).toBe('ftx: error: "b" is not a port number; use 0 to 65535');
  });
});

describe('ftx send refuses what is not a regular file, without blocking', () => {
  const hasMkfifo = hasCommand('mkfifo');
  it.skipIf(!hasMkfifo)('a FIFO: exit 8 with a clear error, at once (opening it would wait for a writer)', async () => {
    const folder = await tempFolder();
    const fifo = join(folder, 'pipe');
    execFileSync('mkfifo', [fifo]);
    const run = runCli(['send', fifo, `127.0.0.1:${await closedPort()}`, '--json']);
    expect(await exitOf(run)).toBe(8);
    expect(summaryOf(run)).toMatchObject({
      ok: false,
      exitCode: 8,
      error: { code: 'FTX_ERR_LOCAL_IO', message: expect.stringMatching(/^cannot send .*pipe: it is a named pipe \(FIFO\), and ftx sends files and folders \(to send what it carries, read it as a stream: cat PIPE \| ftx send - HOST --name NAME\)$/) },
    });
  });

  it('a character device (/dev/zero): exit 8, named as a device', async () => {
    const run = runCli(['send', '/dev/zero', `127.0.0.1:${await closedPort()}`, '--json']);
    expect(await exitOf(run)).toBe(8);
    expect(summaryOf(run)).toMatchObject({ error: { message: expect.stringMatching(/it is a device, and ftx sends files and folders/) } });
  });
});

describe('ftx recv with a trailing slash means a folder', () => {
  it('a missing folder (nodir/): exit 8 before listening, and no file named nodir', async () => {
    const parent = await tempFolder();
    const run = runCli(['recv', 'nodir/', '--port', '0', '--bind', '127.0.0.1', '--json'], { cwd: parent });
    expect(await exitOf(run)).toBe(8);
    expect(run.logs().some((record) => record.event === 'listening')).toBe(false);
    expect(summaryOf(run)).toMatchObject({ exitCode: 8, error: { message: 'cannot save into nodir/: no such folder; create it first (mkdir -p nodir/), or drop the trailing slash to save a file of that name' } });
    expect(await listFolder(parent)).toEqual([]);
  });

  it('a file with a trailing slash: exit 8, "not a folder"', async () => {
    const parent = await tempFolder();
    await writeFile(join(parent, 'plain'), 'keep me');
    const run = runCli(['recv', 'plain/', '--port', '0', '--bind', '127.0.0.1', '--json'], { cwd: parent });
    expect(await exitOf(run)).toBe(8);
    expect(summaryOf(run)).toMatchObject({ error: { message: expect.stringMatching(/^cannot save into plain\/: it is not a folder/) } });
  });

  it('an existing folder with a trailing slash still works', async () => {
    const inbox = await tempFolder();
    const recv = await startRecvCli([`${inbox}/`]);
    const send = runCli(['send', FIXTURE_JPEG, `127.0.0.1:${recv.port}`]);
    expect(await exitOf(send)).toBe(0);
    expect(await exitOf(recv)).toBe(0);
    await expectSameFile(join(inbox, '06.jpg'), FIXTURE_JPEG);
  });
});

describe('--json prints a summary line on usage errors too', () => {
  for (const args of [
    ['send', 'only-a-file', '--json'],
    ['--json', 'frobnicate'],
    ['recv', '--port', '70000', '--json'],
    ['ping', '127.0.0.1', '--json', '--no-such-option'],
    ['send', FIXTURE_JPEG, '127.0.0.1', '--json', '--timeout', 'abc'],
  ]) {
    it(`ftx ${args.join(' ')}: {"ok":false,"exitCode":2,...} on stdout`, async () => {
      const run = runCli(args);
      expect(await exitOf(run)).toBe(2);
      expect(summaryOf(run)).toEqual({ ok: false, exitCode: 2, error: { code: 'FTX_ERR_USAGE', message: expect.any(String) } });
      expect(usageLine(run)).toMatch(/^ftx: error: /);
    });
  }

  it('without --json (or with --no-json last), stdout stays empty', async () => {
    for (const args of [['send', 'only-a-file'], ['send', 'only-a-file', '--json', '--no-json']]) {
      const run = runCli(args);
      expect(await exitOf(run)).toBe(2);
      expect(run.stdout()).toBe('');
    }
  });
});

describe('--grace and --max-conns belong to --serve', () => {
  for (const option of [['--grace', '5'], ['--max-conns', '3']]) {
    it(`ftx recv ${option.join(' ')} without --serve: usage error (2)`, async () => {
      const folder = await tempFolder();
      const run = runCli(['recv', join(folder, 'out.bin'), ...option, '--port', '0', '--bind', '127.0.0.1']);
      expect(await exitOf(run)).toBe(2);
      expect(usageLine(run)).toBe(`ftx: error: ${option[0]} only applies to --serve; add --serve or drop ${option[0]}`);
    });
  }

  it('with --serve they are accepted, and the defaults do not trip the check without it', async () => {
    const inbox = await tempFolder();
    const serve = await startRecvCli([inbox, '--serve', '--insecure', '--grace', '5', '--max-conns', '3']);
    serve.child.kill('SIGINT');
    expect(await exitOf(serve)).toBe(0);
    const recv = await startRecvCli([join(inbox, 'x')]);
    recv.child.kill('SIGINT');
    expect(await exitOf(recv)).toBe(130);
  });
});

describe('ftx recv --port 0 tells the port it took, even with --quiet', () => {
  it('--quiet, JSON logs: the listening line is there, and the --json summary has the port', async () => {
    const inbox = await tempFolder();
    const recv = runCli(['recv', inbox, '--quiet', '--port', '0', '--bind', '127.0.0.1', '--json']);
    try {
      const listening = await recv.waitForLog((record) => record.event === 'listening');
      const port = listening.port as number;
      expect(port).toBeGreaterThan(0);
      const send = runCli(['send', FIXTURE_JPEG, `127.0.0.1:${port}`, '--quiet']);
      expect(await exitOf(send)).toBe(0);
      expect(await exitOf(recv)).toBe(0);
      expect(summaryOf(recv)).toMatchObject({ ok: true, port });
      // Quiet otherwise: nothing but the line that carries the port.
      expect(recv.logs().map((record) => record.event)).toEqual(['listening']);
    } finally {
      recv.child.kill('SIGKILL'); // a no-op once it has exited; a failed test leaves no receiver behind
    }
  });

  it('--quiet, text logs: one line says the port', async () => {
    const inbox = await tempFolder();
    const recv = runCli(['recv', inbox, '--port', '0', '--bind', '127.0.0.1', '--quiet', '--log-format', 'text']);
    try {
      await waitUntil(() => /listening on port \d+/.test(recv.stderr()), () => recv.stderr());
      expect(recv.stderr()).toMatch(/^ftx: listening on port \d+ of 127\.0\.0\.1; on the sending machine run: ftx send FILE 127\.0\.0\.1:\d+\n$/);
      recv.child.kill('SIGINT');
      expect(await exitOf(recv)).toBe(130);
    } finally {
      recv.child.kill('SIGKILL');
    }
  });

  it('an explicit port with --quiet stays quiet', async () => {
    const port = await closedPort();
    const inbox = await tempFolder();
    const recv = runCli(['recv', inbox, '--port', String(port), '--bind', '127.0.0.1', '--quiet']);
    try {
      // The announcement is logged as soon as the port is open, so once a ping is answered
      // it would be there.
      let answered = false;
      for (let attempt = 0; attempt < 100 && !answered; attempt++) {
        answered = (await exitOf(runCli(['ping', `127.0.0.1:${port}`, '--quiet', '--timeout', '5']))) === 0;
        if (!answered) await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(answered).toBe(true);
      recv.child.kill('SIGINT');
      expect(await exitOf(recv)).toBe(130);
      expect(recv.logs().some((record) => record.event === 'listening')).toBe(false);
    } finally {
      recv.child.kill('SIGKILL');
    }
  });
});

describe('one convention for rates: binary units for people, bytesPerSecond for scripts', () => {
  it('summaries carry an integer bytesPerSecond and no mbps; text lines say KiB/s, MiB/s...', async () => {
    const inbox = await tempFolder();
    const source = await randomFile(await tempFolder(), 'data.bin', 3 * 1024 * 1024);
    const recv = await startRecvCli([inbox]);
    const send = runCli(['send', source, `127.0.0.1:${recv.port}`, '--json', '--log-format', 'text']);
    expect(await exitOf(send)).toBe(0);
    expect(await exitOf(recv)).toBe(0);
    for (const summary of [summaryOf(send), summaryOf(recv)]) {
      expect(summary).not.toHaveProperty('mbps');
      expect(Number.isInteger(summary.bytesPerSecond)).toBe(true);
      expect(summary.bytesPerSecond).toBeGreaterThan(0);
    }
    expect(send.stderr()).toMatch(/\(3\.00 MiB in \d+\.\d\d s, \d+(\.\d+)? (B|KiB|MiB|GiB)\/s\)/);
    const saved = recv.logs().find((record) => record.event === 'received');
    expect(saved?.msg).toMatch(/, \d+(\.\d+)? (B|KiB|MiB|GiB)\/s\)/);
    expect(`${send.stderr()}${String(saved?.msg)}`).not.toMatch(/MB\/s/);
  });

  it('formatRate and formatProgress use binary units', () => {
    expect(formatRate(192_413_696, 1)).toBe('183.5 MiB/s');
    expect(formatProgress(120 * 1024 * 1024, 200 * 1024 * 1024)).toBe('120.0 MiB of 200.0 MiB (60%)');
  });
});

describe('messages: mid-transfer losses and plurals', () => {
  it('a receiver that dies mid-transfer: the sender says so, and how far it got (exit 9)', async () => {
    const source = await randomFile(await tempFolder(), 'big.bin', 8 * 1024 * 1024);
    const receiver = await fakeReceiver(({ socket, onData }) => {
      socket.write(jsonFrame(FrameType.Accept, { offset: 0 }));
      let received = 0;
      onData((chunk) => {
        received += chunk.length;
        if (received >= 1024 * 1024 && !socket.destroyed) socket.destroy(); // unread bytes: a reset
      });
    });
    const send = runCli(['send', source, `127.0.0.1:${receiver.port}`, '--json']);
    expect(await exitOf(send)).toBe(9);
    const { error } = summaryOf(send) as { error: { code: string; message: string } };
    expect(error.code).toBe('FTX_ERR_CONNECTION_LOST');
    expect(error.message).toMatch(/^the receiver (closed|reset) the connection mid-transfer, after \d+\.\d+ (KiB|MiB) of 8\.00 MiB \(\d{1,2}%\) had been sent/);
    expect(error.message).not.toMatch(/waited for a receipt/);
    await receiver.close();
  });

  it('plural() counts', () => {
    expect(plural(1, 'file')).toBe('1 file');
    expect(plural(0, 'file')).toBe('0 files');
    expect(plural(2, 'transfer')).toBe('2 transfers');
  });
});

describe('peer text cannot drive the terminal', () => {
  const FORGED = '\u001b[2K\r\nftx: stored x';

  it('an Error frame with ESC, CR and LF from a receiver: escaped, on one line (sender, text logs)', async () => {
    const receiver = await fakeReceiver(({ socket }) => {
      socket.end(jsonFrame(FrameType.Error, { code: 'FTX_ERR_REMOTE_IO', message: FORGED }));
    });
    const send = runCli(['send', FIXTURE_JPEG, `127.0.0.1:${receiver.port}`, '--log-format', 'text']);
    expect(await exitOf(send)).toBe(10);
    const stderr = send.stderr();
    expect(stderr).not.toMatch(/[\u001b\r]/);
    expect(stderr.split('\n').filter((line) => line.startsWith('ftx: stored'))).toEqual([]);
    expect(stderr).toContain('ftx: error: the receiver reports: \\x1b[2K\\r\\nftx: stored x');
    await receiver.close();
  });

  it('an Error frame from a sender: the receiver logs it escaped, on one line (text logs)', async () => {
    const inbox = await tempFolder();
    const recv = runCli(['recv', inbox, '--port', '0', '--bind', '127.0.0.1', '--log-format', 'text']);
    try {
      await waitUntil(() => /listening on port \d+/.test(recv.stderr()), () => recv.stderr());
      const port = Number(/listening on port (\d+)/.exec(recv.stderr())?.[1]);
      const peer = await rawPeer(port);
      await peer.write(jsonFrame(FrameType.Error, { code: 'FTX_ERR_PROTOCOL', message: FORGED }));
      await waitUntil(() => recv.stderr().includes('ftx: stored x'), () => recv.stderr());
      recv.child.kill('SIGINT'); // whether it exited on the error or keeps waiting
      await exitOf(recv);
      peer.socket.destroy();
    } finally {
      recv.child.kill('SIGKILL');
    }
    const stderr = recv.stderr();
    expect(stderr).not.toMatch(/[\u001b\r]/);
    expect(stderr.split('\n').filter((line) => line.startsWith('ftx: stored'))).toEqual([]);
    expect(stderr).toContain('\\x1b[2K\\r\\nftx: stored x');
  });

  it('a ping reply with control and bidi characters: escaped on stdout', async () => {
    const receiver = await fakeReceiver(({ socket }) => {
      socket.end(jsonFrame(FrameType.Pong, { reply: '[Mon] \u001b[31mup\u202e\u0007', version: 1, time: new Date(0).toISOString() }));
    });
    const ping = runCli(['ping', `127.0.0.1:${receiver.port}`]);
    expect(await exitOf(ping)).toBe(0);
    expect(ping.stdout()).toMatch(/^\[Mon\] \\x1b\[31mup\\u202e\\x07 {2}\(127\.0\.0\.1:\d+: rtt [\d.]+ ms, ftx protocol 1, fake-receiver\)\n$/);
    await receiver.close();
  });

  it('escapeForTerminal leaves no C0, DEL, C1 or bidi/format control behind', () => {
    const unsafe = [
      ...Array.from({ length: 0x20 }, (_, code) => code),
      0x7f,
      ...Array.from({ length: 0x20 }, (_, index) => 0x80 + index),
      0xad, 0x61c, 0x180e, 0x200b, 0x200c, 0x200d, 0x200e, 0x200f, 0x2028, 0x2029,
      0x202a, 0x202b, 0x202c, 0x202d, 0x202e, 0x2060, 0x2066, 0x2067, 0x2068, 0x2069, 0xfeff,
    ].map((code) => String.fromCharCode(code));
    const escaped = escapeForTerminal(`a${unsafe.join('')}z`);
    for (const char of unsafe) expect(escaped).not.toContain(char);
    expect(escapeForTerminal('café 06.jpg — ok')).toBe('café 06.jpg — ok');
    expect(escapeForTerminal('invoice\u202efdp.exe')).toBe('invoice\\u202efdp.exe');
  });
});

/**
 * Runs ftx on a pseudo-terminal of 80 columns (util-linux `script`), as a user at a
 * terminal would, and records everything it writes there.
 */
function onTerminal(args: string[], folder: string): { transcript: () => string; exit: Promise<number>; pid: () => Promise<number> } {
  const pidFile = join(folder, 'ftx.pid');
  const quote = (text: string) => `'${text.replaceAll("'", "'\\''")}'`;
  const command = `stty cols 80 rows 24; echo $$ > ${quote(pidFile)}; exec ${[process.execPath, FTX_BIN, ...args].map(quote).join(' ')}`;
  const child = spawn('script', ['-qefc', command, '/dev/null'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, SHELL: '/bin/sh' } });
  let transcript = '';
  child.stdout.setEncoding('utf8').on('data', (text: string) => (transcript += text));
  child.stderr.setEncoding('utf8').on('data', (text: string) => (transcript += text));
  const exit = new Promise<number>((resolve) => child.on('close', (code) => resolve(code ?? -1)));
  let timer: NodeJS.Timeout | undefined;
  const guarded = Promise.race([
    exit,
    new Promise<number>((resolve) => {
      timer = setTimeout(() => {
        child.kill('SIGKILL');
        resolve(-1);
      }, HANG_GUARD_MS);
    }),
  ]).finally(() => clearTimeout(timer));
  const pid = async () => {
    let text = '';
    for (let attempt = 0; attempt < 100 && !text; attempt++) {
      text = (await readFile(pidFile, 'utf8').catch(() => '')).trim();
      if (!text) await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return Number(text);
  };
  return { transcript: () => transcript, exit: guarded, pid };
}

/**
 * Whether the terminal wraps long lines at `index` of a transcript: the last DECAWM
 * switch before it decides (on by default). With wrapping off, a terminal cuts every
 * line at its width: whatever is past column 80 is never seen.
 */
function wrapsAt(transcript: string, index: number): boolean {
  const before = transcript.slice(0, index);
  return before.lastIndexOf('\u001b[?7l') <= before.lastIndexOf('\u001b[?7h');
}

const hasScript = hasCommand('script');

describe.skipIf(!hasScript)('on a terminal (a pseudo-terminal of 80 columns)', () => {
  it('serve mode: the announcement and long log lines are printed with line wrapping on, never cut at 80 columns', async () => {
    const folder = await tempFolder();
    const inbox = join(folder, 'inbox');
    await mkdir(inbox);
    const serve = onTerminal(['recv', '--serve', '--insecure', inbox, '--port', '0', '--bind', '127.0.0.1', '--log-format', 'text'], folder);
    await waitUntil(() => /run: ftx send FILE 127\.0\.0\.1:\d+/.test(serve.transcript()), serve.transcript);
    const announcement = /serving on port (\d+) of 127\.0\.0\.1; on the sending machine run: ftx send FILE 127\.0\.0\.1:\d+/.exec(serve.transcript());
    expect(announcement).not.toBeNull();
    expect(wrapsAt(serve.transcript(), announcement?.index ?? -1)).toBe(true);

    const name = 'a-name-long-enough-that-the-stored-line-is-wider-than-eighty-columns.bin';
    const send = runCli(['send', FIXTURE_JPEG, `127.0.0.1:${announcement?.[1]}`, '--name', name, '--quiet']);
    expect(await exitOf(send)).toBe(0);
    await waitUntil(() => serve.transcript().includes(`#1 stored ${join(inbox, name)}`), serve.transcript);
    const stored = serve.transcript().indexOf(`#1 stored ${join(inbox, name)}`);
    expect(serve.transcript().lastIndexOf('\u001b[?7l', stored)).toBeGreaterThan(-1); // the board was drawn by then
    expect(wrapsAt(serve.transcript(), stored)).toBe(true);

    process.kill(await serve.pid(), 'SIGINT');
    expect(await serve.exit).toBe(0);
    expect(serve.transcript()).toContain('stopped: 1 file stored, 0 failed, 0 cut short');
  });

  it('a transfer that ends at once (0 bytes, receipt glued to the accept) still stops its bar and exits', async () => {
    const folder = await tempFolder();
    const empty = join(folder, 'empty');
    await writeFile(empty, '');
    const receiver = await fakeReceiver(({ socket }) => {
      socket.write(Buffer.concat([
        jsonFrame(FrameType.Accept, { offset: 0 }),
        jsonFrame(FrameType.Receipt, { bytes: 0, hash: 'sha256', digest: SHA256_OF_NOTHING, name: 'empty' }),
      ]));
    });
    const send = onTerminal(['send', empty, `127.0.0.1:${receiver.port}`], folder);
    expect(await send.exit).toBe(0); // -1: it hung and was killed
    expect(send.transcript()).toMatch(/ftx: sent .*empty as empty to 127\.0\.0\.1:\d+ \(0 B in/);
    await receiver.close();
  });
});

function hasCommand(name: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
