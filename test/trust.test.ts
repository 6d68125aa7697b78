/**
 * Trust (issue 14): senders prove a pre-shared key (or a one-time code) in a TLS 1.3
 * handshake started after a plain greeting, and send only inside it.
 *
 * What is guarded here: keys are made and kept private; a serving receiver takes only
 * listed senders and gives each its own folder, so one can never replace another's file;
 * a wrong key, an unknown identity or a keyless sender is turned away (exit 13) without
 * storing a byte, and the receiver keeps serving; a sender with a key never downgrades to
 * plain text or the classic protocol; codes work as typed by people; a recording of the
 * wire shows neither the file's bytes nor its name (and, as a control, does without TLS);
 * a flipped byte on the wire is caught; plain-text clients get an Error frame AUTH.
 *
 * Real sockets on 127.0.0.1, port 0; the real CLI as a child process; every wait bounded.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { chmod, mkdir, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import { connect, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { afterEach, describe, expect, it } from 'vitest';
import { FrameDecoder, FrameType, type Frame } from '../src/framing.js';
import {
  AuthError,
  generateKey,
  isFtxError,
  newCode,
  ping,
  readKeyFile,
  receive,
  send,
  serve,
  UsageError,
  type ServeHandle,
} from '../src/index.js';
import { connectPsk } from '../src/transport/tls.js';
import { runCli, summaryOf, type CliRun } from './helpers/cli.js';
import { expectSameFile, keptPartialNames, listFolder, randomFile, tempFolder } from './helpers/files.js';
import { errorOf, exitWithin, HOST, killAfterTest, within } from './helpers/harness.js';
import { sendTo, startReceiver } from './helpers/loopback.js';
import { headerFrame, parseFrame, rawPeer } from './helpers/raw-peer.js';
import { startRecordingProxy, type RecordingProxy } from './helpers/recording-proxy.js';

const EXIT_USAGE = 2;
const EXIT_AUTH = 13;

/** What `ftx keygen` prints: IDENTITY:KEY, the key 32 bytes of base64url (43 symbols, no padding). */
const KEY_LINE = /^([^:\n]+):([A-Za-z0-9_-]{43})$/;

/** Writes a key file with `mode` (chmod after writing: the umask cannot add bits, only remove them). */
async function keyFile(folder: string, name: string, text: string, mode = 0o600): Promise<string> {
  const path = join(folder, name);
  await writeFile(path, `${text}\n`);
  await chmod(path, mode);
  return path;
}

/** A receiver's key file listing `identities` and each sender's own key file, all mode 600. */
async function keyring(folder: string, identities: string[]): Promise<{ receiverKeys: string; senderKey: Record<string, string>; lines: Record<string, string> }> {
  const lines: Record<string, string> = {};
  const senderKey: Record<string, string> = {};
  for (const identity of identities) {
    lines[identity] = generateKey(identity);
    senderKey[identity] = await keyFile(folder, `${identity}.key`, lines[identity]);
  }
  const receiverKeys = await keyFile(folder, 'senders.keys', `# who may send\n${Object.values(lines).join('\n')}`);
  return { receiverKeys, senderKey, lines };
}

/**
 * The CLI with FTX_KEY_FILE blanked unless `env` sets it, so a key in the runner's
 * environment cannot turn a plain run into a keyed one; killed after the test.
 */
function ftx(args: string[], env: NodeJS.ProcessEnv = {}): CliRun {
  return killAfterTest(runCli(args, { env: { FTX_KEY_FILE: '', ...env } }));
}

/** `ftx recv ... --json` on a free loopback port (as startRecvCli), once it listens. */
async function recvCli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliRun & { port: number }> {
  const run = ftx(['recv', ...args, '--port', '0', '--bind', HOST, '--json'], env);
  const listening = await run.waitForLog((record) => record.event === 'listening');
  return { ...run, port: listening.port as number };
}

/** `ftx send PATHS... 127.0.0.1:PORT --json --timeout 10 OPTIONS...`. */
function sendCli(args: string[], port: number, env: NodeJS.ProcessEnv = {}): CliRun {
  const [paths, options] = splitArgs(args);
  return ftx(['send', ...paths, `${HOST}:${port}`, '--json', '--timeout', '10', ...options], env);
}

/** Paths first, then options (the first argument starting with "--"). */
function splitArgs(args: string[]): [string[], string[]] {
  const firstOption = args.findIndex((arg) => arg.startsWith('--'));
  return firstOption === -1 ? [args, []] : [args.slice(0, firstOption), args.slice(firstOption)];
}

/** Log records with this event, as the CLI wrote them so far. */
const eventsOf = (run: CliRun, event: string) => run.logs().filter((record) => record.event === event);


/** A one-shot receiver is still running after `ms`: nothing made it exit. */
async function expectStillRunning(run: CliRun, ms = 300): Promise<void> {
  expect(await exitWithin(run, ms), `the receiver exited; stderr:\n${run.stderr()}`).toBe('running');
}

/** A fake classic tutorial receiver: greets exactly "welcome to conair" and records every byte it gets afterwards. */
async function classicGreeter(): Promise<{ port: number; received: () => Buffer; connections: () => number; close: () => Promise<void> }> {
  const received: Buffer[] = [];
  const sockets = new Set<Socket>();
  let connections = 0;
  const server = createServer((socket) => {
    connections += 1;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    socket.write('welcome to conair');
  });
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
  return {
    port: (server.address() as { port: number }).port,
    received: () => Buffer.concat(received),
    connections: () => connections,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * A hand-driven ftx peer that proves `keyLine` (IDENTITY:KEY): reads the plain greeting,
 * starts TLS on the same socket as ftx send does, reads the greeting inside it, and then
 * writes exactly the bytes a test gives it. For what ftx send itself would never say.
 */
async function tlsPeer(port: number, keyLine: string): Promise<{ socket: TLSSocket; nextFrame: () => Promise<Frame>; write: (bytes: Buffer) => Promise<void> }> {
  const socket = connect({ host: HOST, port });
  await once(socket, 'connect');
  const plain = new FrameDecoder();
  const plainFrames: Frame[] = [];
  // The receiver says nothing after its greeting until the ClientHello: no bytes are left over.
  while (plainFrames.length === 0) {
    const [chunk] = (await once(socket, 'data')) as [Buffer];
    plainFrames.push(...plain.push(chunk));
  }
  expect(parseFrame(plainFrames[0] as Frame)).toMatchObject({ tls: 'psk' });
  socket.pause();
  const colon = keyLine.lastIndexOf(':');
  const secured = await connectPsk(socket, { identity: keyLine.slice(0, colon), key: Buffer.from(keyLine.slice(colon + 1), 'base64url') }, 'the test receiver', 5_000);
  const decoder = new FrameDecoder();
  const frames: Frame[] = [];
  let closed = false;
  const waiters: Array<() => void> = [];
  const wake = () => {
    for (const waiter of waiters.splice(0)) waiter();
  };
  secured.on('data', (chunk: Buffer) => {
    frames.push(...decoder.push(chunk));
    wake();
  });
  secured.on('error', () => {});
  secured.on('close', () => {
    closed = true;
    wake();
  });
  let consumed = 0;
  const nextFrame = async (): Promise<Frame> => {
    for (;;) {
      const frame = frames[consumed];
      if (frame) {
        consumed += 1;
        return frame;
      }
      if (closed) throw new Error('connection closed before the next frame');
      await new Promise<void>((resolve) => waiters.push(resolve));
    }
  };
  expect((await nextFrame()).type, 'the greeting inside TLS').toBe(FrameType.Greeting);
  const write = (bytes: Buffer) => new Promise<void>((resolve, reject) => secured.write(bytes, (error) => (error ? reject(error) : resolve())));
  return { socket: secured, nextFrame, write };
}

const proxies: RecordingProxy[] = [];
async function recordingProxy(port: number, options: Parameters<typeof startRecordingProxy>[1] = {}): Promise<RecordingProxy> {
  const proxy = await startRecordingProxy(port, options);
  proxies.push(proxy);
  return proxy;
}
// Closed after each test, as the harness does for its fault proxies.
afterEach(async () => {
  await Promise.all(proxies.splice(0).map((proxy) => proxy.close()));
});

// ---------------------------------------------------------------------------------------

describe('ftx keygen', () => {
  it('prints IDENTITY:KEY with a 32-byte base64url key, and every run makes a new key', async () => {
    const first = runCli(['keygen', '--id', 'web1']);
    const second = runCli(['keygen', '--id', 'web1']);
    expect(await first.exit).toBe(0);
    expect(await second.exit).toBe(0);
    const [line1, line2] = [first.stdout(), second.stdout()];
    expect(line1).toMatch(/\n$/);
    const match = KEY_LINE.exec(line1.trimEnd());
    expect(match, `keygen printed ${JSON.stringify(line1)}`).not.toBeNull();
    expect(match?.[1]).toBe('web1');
    expect(Buffer.from(match?.[2] ?? '', 'base64url')).toHaveLength(32);
    expect(line2.trimEnd()).toMatch(KEY_LINE);
    expect(line2).not.toBe(line1);
    // What keygen prints is what a key file holds: the library reads it back as one key.
    const folder = await tempFolder();
    const path = await keyFile(folder, 'web1.key', line1.trimEnd());
    expect((await readKeyFile(path)).trim()).toBe(line1.trim());
  });

  for (const [what, id] of [
    ['empty', ''],
    ['with ":"', 'web:1'],
    ['".."', '..'],
    ['with "/"', 'web/1'],
  ] as const) {
    it(`refuses an identity ${what}: exit 2, no key printed`, async () => {
      const run = runCli(['keygen', '--id', id]);
      expect(await run.exit).toBe(EXIT_USAGE);
      expect(run.stdout()).toBe('');
      expect(errorOf(run)).toMatch(/cannot make a key for/);
    });
  }
});

describe('ftx recv --serve --key-file: only listed senders, each in its own folder', () => {
  it('two identities sending the same name land in DIR/web1/x and DIR/web2/x; under overwrite web2 never replaces web1\'s file; identity in logs and summaries', async () => {
    const keys = await tempFolder();
    const outbox = await tempFolder();
    const inbox = await tempFolder();
    // Keys made by the CLI itself, as a user would.
    const lines: Record<string, string> = {};
    for (const identity of ['web1', 'web2']) {
      const made = runCli(['keygen', '--id', identity]);
      expect(await made.exit).toBe(0);
      lines[identity] = made.stdout().trim();
    }
    const web1Key = await keyFile(keys, 'web1.key', lines.web1 as string);
    const web2Key = await keyFile(keys, 'web2.key', lines.web2 as string);
    const receiverKeys = await keyFile(keys, 'senders.keys', `${lines.web1}\n\n${lines.web2}`);
    await mkdir(join(outbox, 'a'));
    await mkdir(join(outbox, 'b'));
    await mkdir(join(outbox, 'c'));
    const fromWeb1 = await randomFile(join(outbox, 'a'), 'x', 300_000);
    const fromWeb2 = await randomFile(join(outbox, 'b'), 'x', 200_000);
    const web2Again = await randomFile(join(outbox, 'c'), 'x', 100_000);

    const recv = await recvCli([inbox, '--serve', '--key-file', receiverKeys, '--on-conflict', 'overwrite']);
    const [sent1, sent2] = [sendCli([fromWeb1, '--key-file', web1Key], recv.port), sendCli([fromWeb2, '--key-file', web2Key], recv.port)];
    expect(await sent1.exit, sent1.stderr()).toBe(0);
    expect(await sent2.exit, sent2.stderr()).toBe(0);
    expect(summaryOf(sent1)).toMatchObject({ ok: true, identity: 'web1' });
    expect(summaryOf(sent2)).toMatchObject({ ok: true, identity: 'web2' });

    // web2 sends "x" again, under --on-conflict overwrite: it replaces its own, never web1's.
    const sent3 = sendCli([web2Again, '--key-file', web2Key], recv.port);
    expect(await sent3.exit, sent3.stderr()).toBe(0);

    expect(await listFolder(inbox)).toEqual(['web1', 'web2']);
    expect(await listFolder(join(inbox, 'web1'))).toEqual(['x']);
    expect(await listFolder(join(inbox, 'web2'))).toEqual(['x']);
    await expectSameFile(join(inbox, 'web1', 'x'), fromWeb1);
    await expectSameFile(join(inbox, 'web2', 'x'), web2Again);

    const done = [...eventsOf(recv, 'transfer-done'), ...eventsOf(recv, 'session-done')];
    expect(done).toHaveLength(3);
    expect(done.map((record) => record.identity).sort()).toEqual(['web1', 'web2', 'web2']);
    expect(eventsOf(recv, 'transfer-start').map((record) => record.identity).sort()).toEqual(['web1', 'web2', 'web2']);
    recv.child.kill('SIGTERM');
    expect(await recv.exit).toBe(0);
  });

  it('a folder sent with a key lands under DIR/<identity>/ as a session, and session-done carries the identity', async () => {
    const keys = await tempFolder();
    const outbox = await tempFolder();
    const inbox = await tempFolder();
    const ring = await keyring(keys, ['web1']);
    const tree = join(outbox, 'site');
    await mkdir(join(tree, 'css'), { recursive: true });
    await randomFile(tree, 'index.html', 5_000);
    await randomFile(join(tree, 'css'), 'main.css', 7_000);
    const recv = await recvCli([inbox, '--serve', '--key-file', ring.receiverKeys]);
    const sent = sendCli([tree, '--key-file', ring.senderKey.web1 as string], recv.port);
    expect(await sent.exit, sent.stderr()).toBe(0);
    expect(summaryOf(sent)).toMatchObject({ ok: true, identity: 'web1' });
    await expectSameFile(join(inbox, 'web1', 'site', 'index.html'), join(tree, 'index.html'));
    await expectSameFile(join(inbox, 'web1', 'site', 'css', 'main.css'), join(tree, 'css', 'main.css'));
    expect(await recv.waitForLog((record) => record.event === 'session-done', 5_000)).toMatchObject({ identity: 'web1', files: 2 });
  });

  it('an authenticated sender naming a path into another identity\'s folder is refused bad-name (ftx send checks names itself, so a hand-driven peer inside TLS)', async () => {
    const outbox = await tempFolder();
    const inbox = await tempFolder();
    const web1 = generateKey('web1');
    const web2 = generateKey('web2');
    const box = await serve({ folder: inbox, port: 0, host: HOST, timeoutMs: 5_000, keys: `${web1}\n${web2}`, onConflict: 'overwrite' });
    try {
      const original = await randomFile(outbox, 'x', 1000);
      await sendTo(box.port, original, { key: web1 });
      for (const name of ['../web1/x', '/web1/x', '..']) {
        const peer = await tlsPeer(box.port, web2);
        await peer.write(headerFrame({ name, size: 5 }));
        const answer = await peer.nextFrame();
        expect(answer.type, `answer to ${name}`).toBe(FrameType.Refuse);
        expect(parseFrame(answer)).toMatchObject({ reason: 'bad-name' });
        peer.socket.destroy();
      }
      await expectSameFile(join(inbox, 'web1', 'x'), original);
      // web2's own folder is made once it proves its key; nothing is in it.
      expect(await listFolder(inbox)).toEqual(['web1', 'web2']);
      expect(await listFolder(join(inbox, 'web2'))).toEqual([]);
    } finally {
      await box.close({ graceMs: 1000 });
    }
  });

  it('an identity folder that is a symbolic link is not followed: nothing is written through it', async () => {
    const keys = await tempFolder();
    const outbox = await tempFolder();
    const inbox = await tempFolder();
    const elsewhere = await tempFolder();
    const ring = await keyring(keys, ['web1']);
    await symlink(elsewhere, join(inbox, 'web1'));
    const recv = await recvCli([inbox, '--serve', '--key-file', ring.receiverKeys]);
    const sent = sendCli([await randomFile(outbox, 'x', 100), '--key-file', ring.senderKey.web1 as string], recv.port);
    expect(await sent.exit).not.toBe(0);
    expect(await listFolder(elsewhere)).toEqual([]);
    // Still serving.
    expect(recv.child.exitCode).toBeNull();
  });

  // Guards a fixed bug: the outer, detached channel wrote this as a plain-text Error frame
  // under the TLS session (the sender read "ssl3_get_record:wrong version number", exit 9),
  // and the reason, with the receiver's path, crossed the wire unencrypted.
  it('an error before the conversation inside TLS reaches the sender inside TLS, not as a plain-text frame', async () => {
    const outbox = await tempFolder();
    const inbox = await tempFolder();
    const elsewhere = await tempFolder();
    await symlink(elsewhere, join(inbox, 'web1'));
    const line = generateKey('web1');
    const box = await serve({ folder: inbox, port: 0, host: HOST, timeoutMs: 5_000, keys: line });
    try {
      const proxy = await recordingProxy(box.port);
      const failure = await sendTo(proxy.port, await randomFile(outbox, 'x', 100), { key: line }).then(
        () => undefined,
        (error: unknown) => error as Error,
      );
      expect(failure).toBeDefined();
      expect(failure?.message).toMatch(/cannot store files for "web1" now/);
      expect(failure?.message).not.toContain(inbox);
      expect(proxy.down().includes(Buffer.from('"code":"FTX_ERR_')), 'a plain-text Error frame inside the TLS stream').toBe(false);
    } finally {
      await box.close({ graceMs: 1000 });
    }
  });

  // Guards a fixed bug of the same cause: serve().close() (SIGTERM with --grace 0 in the CLI) with a keyed
  // transfer in flight makes the outer channel's abort listener hang up with a plain-text
  // Error frame and destroy the TCP socket: the sender reports an OpenSSL "wrong version
  // number" (exit 9), and the receiver records "write EBADF" (FTX_ERR_CONNECTION_LOST)
  // instead of FTX_ERR_INTERRUPTED. Without keys both say "the receiver is shutting down".
  it('shutting down with a keyed transfer in flight tells the sender why, inside TLS', async () => {
    const inbox = await tempFolder();
    const line = generateKey('web1');
    const failures: string[] = [];
    let started!: () => void;
    const transferStarted = new Promise<void>((resolve) => (started = resolve));
    const box = await serve({
      folder: inbox,
      port: 0,
      host: HOST,
      timeoutMs: 5_000,
      keys: line,
      onTransferProgress: ({ bytes }) => {
        if (bytes > 0) started();
      },
      onTransferFailed: ({ error }) => failures.push(error.code),
    });
    const proxy = await recordingProxy(box.port);
    // A stream that never ends on its own: the transfer is in flight when the receiver stops.
    const chunk = Buffer.alloc(64 * 1024, 7);
    const stream = new Readable({ read() { setTimeout(() => this.push(chunk), 5); } });
    const sending = send({ stream, name: 's.bin', to: { host: HOST, port: proxy.port }, key: line, timeoutMs: 5_000 }).then(
      () => undefined,
      (error: unknown) => error as Error,
    );
    await within(transferStarted, 5_000, 'the transfer started');
    expect(await box.close({ graceMs: 0 })).toEqual({ cut: 1 });
    const failure = await sending;
    stream.destroy();
    expect(failure?.message).toMatch(/shutting down/);
    expect(failures).toEqual(['FTX_ERR_INTERRUPTED']);
    expect(proxy.down().includes(Buffer.from('"code":"FTX_ERR_')), 'a plain-text Error frame inside the TLS stream').toBe(false);
  });

  it('an identity\'s folder is created private (0700)', async () => {
    const keys = await tempFolder();
    const outbox = await tempFolder();
    const inbox = await tempFolder();
    const ring = await keyring(keys, ['web1']);
    const recv = await recvCli([inbox, '--serve', '--key-file', ring.receiverKeys]);
    const sent = sendCli([await randomFile(outbox, 'x', 10), '--key-file', ring.senderKey.web1 as string], recv.port);
    expect(await sent.exit, sent.stderr()).toBe(0);
    expect((await stat(join(inbox, 'web1'))).mode & 0o777).toBe(0o700);
  });
});

describe('senders that cannot prove a listed key are turned away (exit 13), and the receiver keeps serving', () => {
  it('serve: wrong key, unknown identity and keyless sender each exit 13 with a clear message; nothing stored; then a good sender succeeds', async () => {
    const keys = await tempFolder();
    const outbox = await tempFolder();
    const inbox = await tempFolder();
    const ring = await keyring(keys, ['web1']);
    const wrongKey = await keyFile(keys, 'wrong.key', generateKey('web1'));
    const unknown = await keyFile(keys, 'web9.key', generateKey('web9'));
    const source = await randomFile(outbox, 'payload.bin', 100_000);
    const recv = await recvCli([inbox, '--serve', '--key-file', ring.receiverKeys]);

    const wrong = sendCli([source, '--key-file', wrongKey], recv.port);
    expect(await wrong.exit).toBe(EXIT_AUTH);
    expect(summaryOf(wrong)).toMatchObject({ ok: false, exitCode: EXIT_AUTH, error: { code: 'FTX_ERR_AUTH' } });
    expect(errorOf(wrong)).toMatch(/did not accept the key of "web1"/);

    const stranger = sendCli([source, '--key-file', unknown], recv.port);
    expect(await stranger.exit).toBe(EXIT_AUTH);
    // The same words as a wrong key: a stranger learns nothing about which identities exist.
    expect(errorOf(stranger)).toMatch(/did not accept the key of "web9"/);

    const keyless = sendCli([source], recv.port);
    expect(await keyless.exit).toBe(EXIT_AUTH);
    expect(errorOf(keyless)).toMatch(/takes only senders with a key/);

    expect(await listFolder(inbox), 'nothing stored, no identity folder made').toEqual([]);
    await expect.poll(() => recv.logs().filter((record) => record.code === 'FTX_ERR_AUTH').length, { timeout: 5_000 }).toBe(3);
    expect(recv.child.exitCode).toBeNull();

    const good = sendCli([source, '--key-file', ring.senderKey.web1 as string], recv.port);
    expect(await good.exit, good.stderr()).toBe(0);
    await expectSameFile(join(inbox, 'web1', 'payload.bin'), source);
    recv.child.kill('SIGTERM');
    expect(await recv.exit).toBe(0);
  });

  it('one-shot with --key-file: a wrong key exits 13 and the receiver keeps waiting, then takes the right sender', async () => {
    const keys = await tempFolder();
    const outbox = await tempFolder();
    const inbox = await tempFolder();
    const ring = await keyring(keys, ['web1']);
    const wrongKey = await keyFile(keys, 'wrong.key', generateKey('web1'));
    const source = await randomFile(outbox, 'one.bin', 50_000);
    const target = join(inbox, 'one.bin');
    const recv = await recvCli([target, '--key-file', ring.receiverKeys]);
    expect(eventsOf(recv, 'unauthenticated'), 'a keyed receiver is not unauthenticated').toEqual([]);

    const wrong = sendCli([source, '--key-file', wrongKey], recv.port);
    expect(await wrong.exit).toBe(EXIT_AUTH);
    await recv.waitForLog((record) => record.code === 'FTX_ERR_AUTH');
    await expectStillRunning(recv);
    expect(await listFolder(inbox)).toEqual([]);

    const good = sendCli([source, '--key-file', ring.senderKey.web1 as string], recv.port);
    expect(await good.exit, good.stderr()).toBe(0);
    expect(await recv.exit).toBe(0);
    expect(summaryOf(recv)).toMatchObject({ ok: true, identity: 'web1' });
    await expectSameFile(target, source);
  });

  it('a group-readable sender key file: exit 13, says chmod 600, nothing sent', async () => {
    const keys = await tempFolder();
    const outbox = await tempFolder();
    const inbox = await tempFolder();
    const ring = await keyring(keys, ['web1']);
    await chmod(ring.senderKey.web1 as string, 0o640);
    const recv = await recvCli([inbox, '--serve', '--key-file', ring.receiverKeys]);
    const proxy = await recordingProxy(recv.port);
    const sent = sendCli([await randomFile(outbox, 'x', 10), '--key-file', ring.senderKey.web1 as string], proxy.port);
    expect(await sent.exit).toBe(EXIT_AUTH);
    expect(errorOf(sent)).toContain(`chmod 600 ${ring.senderKey.web1}`);
    expect(proxy.up().length, 'the sender connected anyway').toBe(0);
    expect(await listFolder(inbox)).toEqual([]);
  });

  it('a group-readable receiver key file: exit 13, says chmod 600, never listens', async () => {
    const keys = await tempFolder();
    const inbox = await tempFolder();
    const ring = await keyring(keys, ['web1']);
    await chmod(ring.receiverKeys, 0o644);
    for (const mode of [['--serve'], []]) {
      const run = ftx(['recv', mode.length > 0 ? inbox : join(inbox, 'x'), ...mode, '--key-file', ring.receiverKeys, '--port', '0', '--bind', HOST, '--json']);
      expect(await run.exit).toBe(EXIT_AUTH);
      expect(errorOf(run)).toContain(`chmod 600 ${ring.receiverKeys}`);
      expect(eventsOf(run, 'listening')).toEqual([]);
    }
  });
});

describe('no downgrade: a sender with a key sends only inside TLS', () => {
  it('to a plain one-shot receiver: exit 13, nothing of the file on the wire, nothing stored; the receiver keeps waiting and then takes a plain sender', async () => {
    const keys = await tempFolder();
    const outbox = await tempFolder();
    const inbox = await tempFolder();
    const ring = await keyring(keys, ['web1']);
    const name = 'downgrade-canary.bin';
    const source = await randomFile(outbox, name, 100_000);
    const target = join(inbox, 'out.bin');
    const recv = await recvCli([target]);
    // A plain one-shot receiver says it takes anyone.
    await recv.waitForLog((record) => record.event === 'unauthenticated', 5_000);
    const proxy = await recordingProxy(recv.port);

    const keyed = sendCli([source, '--key-file', ring.senderKey.web1 as string], proxy.port);
    expect(await keyed.exit).toBe(EXIT_AUTH);
    expect(errorOf(keyed)).toMatch(/takes senders without a key.*nothing was sent/);
    const up = proxy.up();
    expect(up.includes(Buffer.from(name)), 'the file name went out in plain text').toBe(false);
    expect(up.includes((await readFile(source)).subarray(0, 64)), 'file bytes went out in plain text').toBe(false);
    // At most the Error frame that says why it hung up.
    if (up.length > 0) expect(up[0]).toBe(FrameType.Error);

    await expectStillRunning(recv);
    expect(await listFolder(inbox)).toEqual([]);
    const plain = sendCli([source], recv.port);
    expect(await plain.exit, plain.stderr()).toBe(0);
    expect(await recv.exit).toBe(0);
    await expectSameFile(target, source);
    expect(summaryOf(recv)).not.toHaveProperty('identity');
  });

  it('to a classic tutorial receiver: exit 13, and not one byte goes out after its greeting', async () => {
    const keys = await tempFolder();
    const outbox = await tempFolder();
    const ring = await keyring(keys, ['web1']);
    const classic = await classicGreeter();
    try {
      const sent = sendCli([await randomFile(outbox, 'x.bin', 10_000), '--key-file', ring.senderKey.web1 as string], classic.port);
      expect(await sent.exit).toBe(EXIT_AUTH);
      expect(errorOf(sent)).toMatch(/classic tutorial receiver.*nothing was sent/);
      expect(classic.connections()).toBe(1);
      expect(classic.received().length).toBe(0);
    } finally {
      await classic.close();
    }
  });
});

describe('ftx recv --serve needs keys or --insecure', () => {
  it('--serve without --key-file refuses to start: exit 2, naming --key-file and --insecure', async () => {
    const inbox = await tempFolder();
    const run = ftx(['recv', inbox, '--serve', '--port', '0', '--bind', HOST, '--json']);
    expect(await run.exit).toBe(EXIT_USAGE);
    const summary = summaryOf(run);
    expect(summary).toMatchObject({ ok: false, exitCode: EXIT_USAGE, error: { code: 'FTX_ERR_USAGE' } });
    const message = String((summary.error as { message: string }).message);
    expect(message).toContain('--key-file');
    expect(message).toContain('--insecure');
    expect(eventsOf(run, 'listening')).toEqual([]);
  });

  it('--serve --insecure takes a plain sender', async () => {
    const outbox = await tempFolder();
    const inbox = await tempFolder();
    const source = await randomFile(outbox, 'open.bin', 10_000);
    const recv = await recvCli([inbox, '--serve', '--insecure']);
    const sent = sendCli([source], recv.port);
    expect(await sent.exit, sent.stderr()).toBe(0);
    await expectSameFile(join(inbox, 'open.bin'), source);
    expect(summaryOf(sent)).not.toHaveProperty('identity');
  });

  it('--insecure with --key-file, or without --serve, is a usage error', async () => {
    const keys = await tempFolder();
    const inbox = await tempFolder();
    const ring = await keyring(keys, ['web1']);
    const both = ftx(['recv', inbox, '--serve', '--insecure', '--key-file', ring.receiverKeys, '--port', '0', '--bind', HOST]);
    const oneShot = ftx(['recv', join(inbox, 'x'), '--insecure', '--port', '0', '--bind', HOST]);
    expect(await both.exit).toBe(EXIT_USAGE);
    expect(await oneShot.exit).toBe(EXIT_USAGE);
  });
});

describe('ftx recv --code / ftx send --code', () => {
  /** The code in the listening line: "... --code xxxx-xxxx-xxxx-xxxx". */
  function codeOf(run: CliRun): string {
    const listening = eventsOf(run, 'listening')[0];
    const match = / --code ([0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{4})\b/.exec(String(listening?.msg));
    expect(match, `listening line: ${String(listening?.msg)}`).not.toBeNull();
    return match?.[1] as string;
  }

  it('prints the command with the code (even with --quiet); a wrong code exits 13 and the receiver waits; the right one, as a person types it, goes through', async () => {
    const outbox = await tempFolder();
    const inbox = await tempFolder();
    const source = await randomFile(outbox, 'coded.bin', 200_000);
    const target = join(inbox, 'out.bin');
    const recv = await recvCli([target, '--code', '--quiet']);
    const code = codeOf(recv);
    expect(String(eventsOf(recv, 'listening')[0]?.msg)).toMatch(new RegExp(`ftx send FILE \\S+:${recv.port} --code ${code}`));
    expect(eventsOf(recv, 'unauthenticated')).toEqual([]);

    let wrongCode = newCode();
    while (wrongCode === code) wrongCode = newCode();
    const wrong = sendCli([source, '--code', wrongCode], recv.port);
    expect(await wrong.exit).toBe(EXIT_AUTH);
    expect(errorOf(wrong)).toMatch(/did not accept the code/);
    await expectStillRunning(recv);
    expect(await listFolder(inbox)).toEqual([]);

    // Upper case, O for 0 and I for 1: all read as the same code.
    const typed = code.toUpperCase().replaceAll('0', 'O').replaceAll('1', 'I');
    const right = sendCli([source, '--code', typed], recv.port);
    expect(await right.exit, right.stderr()).toBe(0);
    expect(summaryOf(right)).toMatchObject({ ok: true, identity: 'code' });
    expect(await recv.exit).toBe(0);
    expect(summaryOf(recv)).toMatchObject({ ok: true, identity: 'code' });
    await expectSameFile(target, source);
  });

  it('a malformed code is a usage error (exit 2) and connects to nobody', async () => {
    const outbox = await tempFolder();
    const inbox = await tempFolder();
    const recv = await recvCli([join(inbox, 'out.bin'), '--code']);
    const proxy = await recordingProxy(recv.port);
    for (const bad of ['abcd-efgh', 'uuuu-uuuu-uuuu-uuuu', `${codeOf(recv)}-0000`]) {
      const sent = sendCli([await randomFile(outbox, 'x', 10), '--code', bad], proxy.port);
      expect(await sent.exit, `code ${bad}`).toBe(EXIT_USAGE);
      expect(errorOf(sent)).toMatch(/is not an ftx code/);
    }
    expect(proxy.up().length).toBe(0);
    await expectStillRunning(recv);
  });
});

describe('what an eavesdropper records', () => {
  /** A file with a 64-byte random marker inside, under a distinctive name. */
  async function markedFile(folder: string): Promise<{ path: string; name: string; marker: Buffer }> {
    const marker = randomBytes(64);
    const name = `trésor-confidentiel-${randomBytes(4).toString('hex')}.bin`;
    const path = join(folder, name);
    await writeFile(path, Buffer.concat([randomBytes(40_000), marker, randomBytes(40_000)]));
    return { path, name, marker };
  }

  it('with keys: neither the file\'s bytes (a 64-byte marker) nor its UTF-8 name appear on the wire, either way', async () => {
    const keys = await tempFolder();
    const outbox = await tempFolder();
    const inbox = await tempFolder();
    const ring = await keyring(keys, ['web1']);
    const file = await markedFile(outbox);
    const recv = await recvCli([inbox, '--serve', '--key-file', ring.receiverKeys]);
    const proxy = await recordingProxy(recv.port);
    const sent = sendCli([file.path, '--key-file', ring.senderKey.web1 as string], proxy.port);
    expect(await sent.exit, sent.stderr()).toBe(0);
    await expectSameFile(join(inbox, 'web1', file.name), file.path);
    const [up, down] = [proxy.up(), proxy.down()];
    expect(up.length, 'the recording holds the transfer').toBeGreaterThan(80_000);
    for (const [direction, bytes] of [['up', up], ['down', down]] as const) {
      expect(bytes.includes(file.marker), `marker in the ${direction} bytes`).toBe(false);
      expect(bytes.includes(Buffer.from(file.name, 'utf8')), `file name in the ${direction} bytes`).toBe(false);
    }
    // The key itself never travels (only the identity does, in the ClientHello).
    const key = Buffer.from((ring.lines.web1 as string).split(':')[1] as string, 'base64url');
    expect(up.includes(key) || down.includes(key)).toBe(false);
  });

  it('control: through a plain --insecure receiver the same recording shows both marker and name', async () => {
    const outbox = await tempFolder();
    const inbox = await tempFolder();
    const file = await markedFile(outbox);
    const recv = await recvCli([inbox, '--serve', '--insecure']);
    const proxy = await recordingProxy(recv.port);
    const sent = sendCli([file.path], proxy.port);
    expect(await sent.exit, sent.stderr()).toBe(0);
    await expectSameFile(join(inbox, file.name), file.path);
    expect(proxy.up().includes(file.marker)).toBe(true);
    expect(proxy.up().includes(Buffer.from(file.name, 'utf8'))).toBe(true);
  });
});

describe('tampering on the wire', () => {
  it('one byte flipped in the middle of the encrypted upstream: the receiver exits 6 (integrity), the sender 6 or 9, no file stored, only the authenticated part kept to resume', async () => {
    const keys = await tempFolder();
    const outbox = await tempFolder();
    const inbox = await tempFolder();
    const ring = await keyring(keys, ['web1']);
    const size = 4 * 1024 * 1024;
    const source = await randomFile(outbox, 'big.bin', size);
    const recv = await recvCli([join(inbox, 'big.bin'), '--key-file', ring.receiverKeys, '--timeout', '10']);
    const proxy = await recordingProxy(recv.port, { flipUpAt: size / 2 });
    const sent = sendCli([source, '--key-file', ring.senderKey.web1 as string], proxy.port);
    const [sentExit, recvExit] = await Promise.all([sent.exit, exitWithin(recv, 15_000)]);
    expect(proxy.flipped, 'the proxy reached the byte to flip').toBe(true);
    // The receiver's TLS layer finds the record altered: an integrity failure (6), said so.
    expect(recvExit, `receiver exit; stderr:\n${recv.stderr()}`).toBe(6);
    expect(recv.stderr()).toMatch(/the encrypted connection failed its integrity check/);
    // The sender hears it from the receiver's TLS alert (6), or sees the connection drop first (9).
    expect([6, 9], `sender exit; stderr:\n${sent.stderr()}`).toContain(sentExit);
    // Nothing under the final name; what TLS authenticated before the flipped record is kept, for web1 alone, to resume.
    const left = await listFolder(inbox);
    expect(left, 'no file, only the partial kept to resume').not.toContain('big.bin');
    expect(keptPartialNames(join(inbox, 'big.bin'), 'web1')).toEqual(expect.arrayContaining(left));
  });
});

describe('FTX_KEY_FILE', () => {
  it('gives the receiver its senders\' keys and the sender its key, as --key-file does', async () => {
    const keys = await tempFolder();
    const outbox = await tempFolder();
    const inbox = await tempFolder();
    const ring = await keyring(keys, ['web1']);
    const source = await randomFile(outbox, 'env.bin', 30_000);
    const recv = await recvCli([inbox, '--serve'], { FTX_KEY_FILE: ring.receiverKeys });
    const sent = sendCli([source], recv.port, { FTX_KEY_FILE: ring.senderKey.web1 as string });
    expect(await sent.exit, sent.stderr()).toBe(0);
    expect(summaryOf(sent)).toMatchObject({ ok: true, identity: 'web1' });
    await expectSameFile(join(inbox, 'web1', 'env.bin'), source);
    // The same receiver refuses the same sender without it.
    const keyless = sendCli([source], recv.port);
    expect(await keyless.exit).toBe(EXIT_AUTH);
  });

  it('is read with the same care: a group-readable file from FTX_KEY_FILE exits 13', async () => {
    const keys = await tempFolder();
    const outbox = await tempFolder();
    const ring = await keyring(keys, ['web1']);
    await chmod(ring.senderKey.web1 as string, 0o644);
    const sent = sendCli([await randomFile(outbox, 'x', 1)], 9, { FTX_KEY_FILE: ring.senderKey.web1 as string });
    expect(await sent.exit).toBe(EXIT_AUTH);
    expect(errorOf(sent)).toContain('chmod 600');
  });
});

describe('plain-text clients facing a keyed receiver', () => {
  async function keyedServe(): Promise<{ box: ServeHandle; inbox: string; senderKey: string }> {
    const inbox = await tempFolder();
    const line = generateKey('web1');
    const box = await serve({ folder: inbox, port: 0, host: HOST, timeoutMs: 5_000, keys: line });
    return { box, inbox, senderKey: line };
  }

  it('the greeting asks for TLS; a Header frame gets an Error frame FTX_ERR_AUTH and nothing is stored', async () => {
    const { box, inbox } = await keyedServe();
    try {
      const peer = await rawPeer(box.port);
      expect(parseFrame(peer.frames[0] as Frame)).toMatchObject({ tls: 'psk' });
      await peer.write(Buffer.concat([headerFrame({ name: 'sneaky.bin', size: 5 }), Buffer.from('hello')]));
      expect(parseFrame(await peer.nextFrame(FrameType.Error))).toMatchObject({ code: 'FTX_ERR_AUTH' });
      await peer.closed;
      expect(await listFolder(inbox)).toEqual([]);
    } finally {
      await box.close({ graceMs: 1000 });
    }
  });

  it('garbage gets an Error frame FTX_ERR_AUTH too', async () => {
    const { box, inbox } = await keyedServe();
    try {
      const peer = await rawPeer(box.port);
      await peer.write(Buffer.from([0xff, 0x00, 0x13, 0x37, 0x42, 0x42, 0x42]));
      expect(parseFrame(await peer.nextFrame(FrameType.Error))).toMatchObject({ code: 'FTX_ERR_AUTH' });
      await peer.closed;
      expect(await listFolder(inbox)).toEqual([]);
    } finally {
      await box.close({ graceMs: 1000 });
    }
  });

  it('a client that stalls in the middle of its TLS handshake is dropped after the handshake timeout; the receiver keeps serving', async () => {
    const inbox = await tempFolder();
    const line = generateKey('web1');
    const dropped: string[] = [];
    const box = await serve({
      folder: inbox,
      port: 0,
      host: HOST,
      timeoutMs: 5_000,
      handshakeTimeoutMs: 500,
      keys: line,
      onConnection: (event) => {
        if (event.kind === 'dropped') dropped.push(event.error.message);
      },
    });
    try {
      const staller = connect({ host: HOST, port: box.port });
      staller.on('error', () => {});
      const closed = once(staller, 'close');
      await once(staller, 'data'); // the plain greeting
      staller.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00])); // a TLS record header, and then nothing
      await within(closed, 5_000, 'the receiver dropped the stalled handshake');
      await expect.poll(() => dropped.length).toBe(1);
      expect(dropped[0]).toMatch(/within 0\.5 s/);
      const outbox = await tempFolder();
      expect((await sendTo(box.port, await randomFile(outbox, 'after.bin', 100), { key: line })).identity).toBe('web1');
    } finally {
      await box.close({ graceMs: 1000 });
    }
  });

  it('a ping without a key is refused with AuthError (library) and exit 13 (CLI); the receiver keeps serving', async () => {
    const { box, inbox, senderKey } = await keyedServe();
    try {
      const refused = await ping({ to: { host: HOST, port: box.port }, timeoutMs: 5_000 }).then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(refused).toBeInstanceOf(AuthError);
      expect(refused).toMatchObject({ code: 'FTX_ERR_AUTH' });
      const pinged = ftx(['ping', `${HOST}:${box.port}`, '--timeout', '5']);
      expect(await pinged.exit).toBe(EXIT_AUTH);
      expect(pinged.stdout()).toBe('');
      const outbox = await tempFolder();
      const result = await sendTo(box.port, await randomFile(outbox, 'after.bin', 1000), { key: senderKey });
      expect(result.identity).toBe('web1');
      expect(await listFolder(join(inbox, 'web1'))).toEqual(['after.bin']);
    } finally {
      await box.close({ graceMs: 1000 });
    }
  });
});

describe('library: keys and codes', () => {
  it('serve({ keys }) + send({ key }): the file lands under folder/<identity>/, results and callbacks carry the identity', async () => {
    const outbox = await tempFolder();
    const inbox = await tempFolder();
    const web1 = generateKey('web1');
    const web2 = generateKey('web2');
    const done: Array<string | undefined> = [];
    const started: Array<string | undefined> = [];
    const box = await serve({
      folder: inbox,
      port: 0,
      host: HOST,
      timeoutMs: 5_000,
      keys: `${web1}\n${web2}\n`,
      onTransferStart: (transfer) => started.push(transfer.identity),
      onTransferDone: (transfer) => done.push(transfer.identity),
    });
    try {
      const source = await randomFile(outbox, 'lib.bin', 123_456);
      const [r1, r2] = await Promise.all([sendTo(box.port, source, { key: web1 }), sendTo(box.port, source, { key: web2 })]);
      expect(r1.identity).toBe('web1');
      expect(r2.identity).toBe('web2');
      await expectSameFile(join(inbox, 'web1', 'lib.bin'), source);
      await expectSameFile(join(inbox, 'web2', 'lib.bin'), source);
      await expect.poll(() => done.length).toBe(2);
      expect(done.sort()).toEqual(['web1', 'web2']);
      expect(started.sort()).toEqual(['web1', 'web2']);
    } finally {
      await box.close({ graceMs: 1000 });
    }
  });

  it('receive({ keys }) + send({ key }), and receive({ code }) + send({ code }): both results carry the identity', async () => {
    const outbox = await tempFolder();
    const inbox = await tempFolder();
    const source = await randomFile(outbox, 'one.bin', 77_777);
    const line = generateKey('db1');
    const keyed = await startReceiver({ target: join(inbox, 'keyed.bin'), keys: line });
    const sentKeyed = await sendTo(keyed.port, source, { key: line });
    expect(sentKeyed.identity).toBe('db1');
    expect((await keyed.result).identity).toBe('db1');
    await expectSameFile(join(inbox, 'keyed.bin'), source);

    const code = newCode();
    expect(code).toMatch(/^[0-9a-hjkmnp-tv-z]{4}(-[0-9a-hjkmnp-tv-z]{4}){3}$/);
    const coded = await startReceiver({ target: join(inbox, 'coded.bin'), code });
    const sentCoded = await sendTo(coded.port, source, { code: ` ${code.toUpperCase().replaceAll('-', ' ')} ` });
    expect(sentCoded.identity).toBe('code');
    expect((await coded.result).identity).toBe('code');
    await expectSameFile(join(inbox, 'coded.bin'), source);
  });

  it('failures are AuthError (isFtxError, code FTX_ERR_AUTH): wrong key, wrong code, keyless sender, key to a plain receiver; the one-shot receiver keeps waiting', async () => {
    const outbox = await tempFolder();
    const inbox = await tempFolder();
    const source = await randomFile(outbox, 'a.bin', 1000);
    const line = generateKey('web1');
    const rejection = (promise: Promise<unknown>) => promise.then(() => undefined, (error: unknown) => error);
    const expectAuth = (error: unknown, message: RegExp) => {
      expect(error).toBeInstanceOf(AuthError);
      expect(isFtxError(error)).toBe(true);
      expect(error).toMatchObject({ code: 'FTX_ERR_AUTH', message: expect.stringMatching(message) });
    };

    const keyed = await startReceiver({ target: join(inbox, 'keyed.bin'), keys: line });
    expectAuth(await rejection(sendTo(keyed.port, source, { key: generateKey('web1') })), /did not accept the key of "web1"/);
    expectAuth(await rejection(sendTo(keyed.port, source)), /takes only senders with a key/);
    expectAuth(await rejection(sendTo(keyed.port, source, { code: newCode() })), /did not accept the code/);
    expect(await listFolder(inbox)).toEqual([]);
    await sendTo(keyed.port, source, { key: line });
    expect((await keyed.result).identity).toBe('web1');

    const plain = await startReceiver({ target: join(inbox, 'plain.bin') });
    expectAuth(await rejection(sendTo(plain.port, source, { key: line })), /takes senders without a key/);
    const plainResult = await sendTo(plain.port, source);
    expect(plainResult.identity).toBeUndefined();
    expect((await plain.result).identity).toBeUndefined();
  });

  it('generateKey, newCode and readKeyFile: formats, bad identities, private files only', async () => {
    const line = generateKey('web1');
    expect(line).toMatch(KEY_LINE);
    expect(generateKey('web1')).not.toBe(line);
    for (const bad of ['', 'a:b', '..', 'a/b']) expect(() => generateKey(bad), JSON.stringify(bad)).toThrow(UsageError);
    expect(newCode()).not.toBe(newCode());

    const folder = await tempFolder();
    const path = await keyFile(folder, 'k', line);
    expect((await readKeyFile(path)).trim()).toBe(line);
    await chmod(path, 0o640);
    const error = await readKeyFile(path).then(() => undefined, (caught: unknown) => caught);
    expect(error).toBeInstanceOf(AuthError);
    expect(String((error as Error).message)).toContain(`chmod 600 ${path}`);
  });

  it('key and code together, or code and keys together, are usage errors', async () => {
    const outbox = await tempFolder();
    const line = generateKey('web1');
    const source = await randomFile(outbox, 'x', 1);
    await expect(send({ path: source, to: { host: HOST, port: 9 }, key: line, code: newCode(), timeoutMs: 2_000 })).rejects.toBeInstanceOf(UsageError);
    await expect(receive({ target: outbox, port: 0, host: HOST, keys: line, code: newCode() })).rejects.toBeInstanceOf(UsageError);
  });
});
