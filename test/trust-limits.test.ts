/**
 * Keys in use beyond one transfer: a ping that proves its key, and the throttle on an
 * address whose key checks keep failing (src/transport/auth-throttle.ts).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createServer as createTlsServer } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { FrameType } from '../src/framing.js';
import { jsonFrame } from '../src/protocol/messages.js';
import { runCli, summaryOf } from './helpers/cli.js';
import { AuthError, ping, RefusedError, send, serve } from '../src/index.js';
import { FAILURES_ALLOWED } from '../src/transport/auth-throttle.js';
import { generateKey } from '../src/transport/keys.js';
import { listFolder, randomFile, tempFolder } from './helpers/files.js';

const HOST = '127.0.0.1';

describe('keys beyond one transfer', () => {
  it('ping with a listed key is answered inside TLS; with another key it is an AuthError', async () => {
    const web1 = generateKey('web1');
    const box = await serve({ folder: await tempFolder(), port: 0, host: HOST, keys: web1 });
    try {
      const pong = await ping({ to: { host: HOST, port: box.port }, key: web1, message: 'up?' });
      expect(pong).toMatchObject({ protocol: 'ftx', reply: expect.stringMatching(/\] up\?$/), software: expect.stringMatching(/^ftx\//) });
      await expect(ping({ to: { host: HOST, port: box.port }, key: generateKey('web1') })).rejects.toBeInstanceOf(AuthError);
    } finally {
      await box.close({ graceMs: 1000 });
    }
  });

  it(`after ${FAILURES_ALLOWED} failed key checks an address is turned away (busy, saying why) even with the right key`, async () => {
    const web1 = generateKey('web1');
    const turnedAway: string[] = [];
    const box = await serve({
      folder: await tempFolder(),
      port: 0,
      host: HOST,
      keys: web1,
      onConnection: (event) => {
        if (event.kind === 'turned-away') turnedAway.push(event.message);
      },
    });
    try {
      const source = await randomFile(await tempFolder(), 'x.bin', 100);
      for (let attempt = 0; attempt < FAILURES_ALLOWED; attempt++) {
        await expect(send({ path: source, to: { host: HOST, port: box.port }, key: generateKey('web1') })).rejects.toBeInstanceOf(AuthError);
      }
      const blocked = await send({ path: source, to: { host: HOST, port: box.port }, key: web1 }).catch((error: unknown) => error);
      expect(blocked).toBeInstanceOf(RefusedError);
      expect(blocked).toMatchObject({ reason: 'busy', message: expect.stringMatching(/too many failed key checks from your address; try again in \d+ s/) });
      expect(turnedAway).toHaveLength(1);
    } finally {
      await box.close({ graceMs: 1000 });
    }
  });
});

describe('stopping a keyed transfer', () => {
  it('aborting a keyed send mid-stream stops it at once, and the receiver hears why inside TLS', async () => {
    const { Readable } = await import('node:stream');
    const web1 = generateKey('web1');
    const failures: string[] = [];
    const box = await serve({ folder: await tempFolder(), port: 0, host: HOST, keys: web1, onTransferFailed: ({ error }) => failures.push(error.message) });
    try {
      const chunk = Buffer.alloc(64 * 1024, 1);
      const stream = new Readable({
        read() {
          setTimeout(() => this.push(chunk), 5);
        },
      });
      const stop = new AbortController();
      let started!: () => void;
      const flowing = new Promise<void>((resolve) => (started = resolve));
      const sending = send({ stream, name: 's.bin', to: { host: HOST, port: box.port }, key: web1, signal: stop.signal, onProgress: () => started() }).catch((error: unknown) => error);
      await flowing;
      stop.abort();
      const outcome = await sending;
      stream.destroy();
      expect(outcome).toMatchObject({ code: 'FTX_ERR_INTERRUPTED' });
      await expect.poll(() => failures.length, { timeout: 5000 }).toBe(1);
      expect(failures[0]).toMatch(/interrupted|stopped/i);
    } finally {
      await box.close({ graceMs: 1000 });
    }
  });
});

describe('an impostor receiver with a certificate', () => {
  const CERT = fileURLToPath(new URL('./fixtures/impostor-cert.pem', import.meta.url));
  const KEY = fileURLToPath(new URL('./fixtures/impostor-key.pem', import.meta.url));

  /**
   * Greets as a receiver with keys, then answers the TLS handshake with a certificate
   * (for 127.0.0.1) instead of the pre-shared key; records what it decrypts.
   */
  async function impostor(): Promise<{ port: number; received: () => Buffer; close: () => Promise<void> }> {
    const chunks: Buffer[] = [];
    const tlsServer = createTlsServer({ cert: readFileSync(CERT), key: readFileSync(KEY), minVersion: 'TLSv1.3' });
    tlsServer.on('secureConnection', (socket) => {
      socket.on('data', (chunk: Buffer) => chunks.push(chunk));
      socket.on('error', () => {});
    });
    tlsServer.on('tlsClientError', () => {});
    const server = createServer((socket) => {
      socket.on('error', () => {});
      socket.write(jsonFrame(FrameType.Greeting, { protocol: 'ftx', version: 2, versions: [1, 2], tls: 'psk' }));
      socket.once('data', (first: Buffer) => {
        socket.pause();
        socket.unshift(first);
        tlsServer.emit('connection', socket);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
    return {
      port: (server.address() as AddressInfo).port,
      received: () => Buffer.concat(chunks),
      close: () => new Promise((resolve) => server.close(() => resolve())),
    };
  }

  it('a sender with a key refuses a receiver that shows a certificate, even one its CAs trust: exit 13, nothing sent', async () => {
    const keys = await tempFolder();
    const keyFile = join(keys, 'web1.key');
    writeFileSync(keyFile, `${generateKey('web1')}\n`, { mode: 0o600 });
    const source = await randomFile(await tempFolder(), 'secret-name.bin', 1000);
    const fake = await impostor();
    try {
      for (const env of [{ NODE_EXTRA_CA_CERTS: CERT }, {}]) {
        const run = runCli(['send', source, `${HOST}:${fake.port}`, '--key-file', keyFile, '--json'], { env: { ...process.env, ...env } });
        expect(await run.exit, run.stderr()).toBe(13);
        expect(summaryOf(run)).toMatchObject({ error: { code: 'FTX_ERR_AUTH', message: expect.stringMatching(/showed a TLS certificate instead of proving the key/) } });
      }
      expect(fake.received().length, 'bytes the impostor decrypted').toBe(0);
    } finally {
      await fake.close();
    }
  });
});

describe('a quota holds for streams too', () => {
  it('a stream of unknown size is cut once it grows past what the quota leaves: refused no-space, nothing kept', async () => {
    const { Readable } = await import('node:stream');
    const inbox = await tempFolder();
    const web1 = generateKey('web1');
    const box = await serve({ folder: inbox, port: 0, host: HOST, keys: `${web1} quota=100K\n` });
    try {
      let sent = 0;
      const stream = new Readable({
        read() {
          if (sent >= 1024 * 1024) return this.push(null);
          sent += 64 * 1024;
          this.push(Buffer.alloc(64 * 1024, 3));
        },
      });
      const outcome = await send({ stream, name: 'dump.bin', to: { host: HOST, port: box.port }, key: web1 }).catch((error: unknown) => error);
      expect(outcome).toBeInstanceOf(RefusedError);
      expect(outcome).toMatchObject({ reason: 'no-space', message: expect.stringMatching(/grew past what the quota of "web1" \(100\.0+ KiB\) leaves/) });
      expect(await listFolder(join(inbox, 'web1'))).toEqual([]);
    } finally {
      await box.close({ graceMs: 1000 });
    }
  });
});
