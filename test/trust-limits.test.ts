/**
 * Keys in use beyond one transfer: a ping that proves its key, and the throttle on an
 * address whose key checks keep failing (src/transport/auth-throttle.ts).
 */
import { describe, expect, it } from 'vitest';
import { AuthError, ping, RefusedError, send, serve } from '../src/index.js';
import { FAILURES_ALLOWED } from '../src/transport/auth-throttle.js';
import { generateKey } from '../src/transport/keys.js';
import { randomFile, tempFolder } from './helpers/files.js';

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
