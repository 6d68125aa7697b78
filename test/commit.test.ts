/**
 * How a received file gets its final name (staged-file.ts, receiver.ts): never clobbering
 * what is there, on file systems with hard links and without (exFAT, FAT, some SMB
 * shares), with names that fold case, and with failures that are bugs reported as bugs.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT_CODES } from '../src/cli/exit-codes.js';
import { listen } from '../src/transport/tcp.js';
import { receiveConnection } from '../src/receiver.js';
import { serve } from '../src/index.js';
import { isNameTaken, pickFreeName, StagedFile } from '../src/fs/staged-file.js';
import { exfatUnavailable, mountExfat, type ExfatMount } from './helpers/exfat.js';
import { expectSameFile, listFolder, randomFile, tempFolder } from './helpers/files.js';
import { sendTo, startReceiver } from './helpers/loopback.js';
import { headerFrame } from './helpers/raw-peer.js';

describe('pickFreeName: the first free numbered name, in a few probes', () => {
  it('is the name itself when it is free, and skips names the caller has in flight', async () => {
    const folder = await tempFolder();
    expect(await pickFreeName(join(folder, 'db.dump'), () => false)).toBe(join(folder, 'db.dump'));
    const inFlight = new Set([join(folder, 'db.dump'), join(folder, 'db-1.dump')]);
    expect(await pickFreeName(join(folder, 'db.dump'), (path) => inFlight.has(path))).toBe(join(folder, 'db-2.dump'));
  });

  it('finds k+1 after k contiguous copies, for k from 0 to 40', async () => {
    const folder = await tempFolder();
    await writeFile(join(folder, 'a.tar.gz'), '');
    for (let k = 0; k <= 40; k++) {
      if (k > 0) await writeFile(join(folder, `a-${k}.tar.gz`), '');
      expect(await pickFreeName(join(folder, 'a.tar.gz'), () => false), `after ${k} copies`).toBe(join(folder, `a-${k + 1}.tar.gz`));
    }
  });

  // Regression (issue 10): each "-N" was tried in turn, a thousand link() calls for a
  // thousand copies. The search doubles, then bisects: about 2·log2(n) probes.
  it('after 1000 numbered copies it probes about 20 names, not 1000', async () => {
    const folder = await tempFolder();
    await writeFile(join(folder, 'db.dump'), '');
    await Promise.all(Array.from({ length: 1000 }, (_, i) => writeFile(join(folder, `db-${i + 1}.dump`), '')));
    let probes = 0;
    const picked = await pickFreeName(join(folder, 'db.dump'), () => (probes++, false));
    expect(picked).toBe(join(folder, 'db-1001.dump'));
    expect(probes).toBeLessThanOrEqual(2 * Math.ceil(Math.log2(1001)) + 2);
  });

  it('with holes it still finds a free name right after a taken one', async () => {
    const folder = await tempFolder();
    for (const n of [0, 1, 2, 3, 5, 6, 7, 8]) await writeFile(join(folder, n === 0 ? 'x' : `x-${n}`), '');
    const picked = await pickFreeName(join(folder, 'x'), () => false);
    expect([join(folder, 'x-4'), join(folder, 'x-9')]).toContain(picked);
  });
});

describe('StagedFile.place never clobbers', () => {
  it('a name taken since the file was staged fails with EEXIST and leaves both files as they are', async () => {
    const folder = await tempFolder();
    const staged = await StagedFile.create(join(folder, 'x.bin'));
    await staged.writeAt(Buffer.from('mine'), 0);
    await staged.seal();
    await writeFile(join(folder, 'x.bin'), 'theirs');
    const failure = await staged.place(join(folder, 'x.bin'), { replace: false }).catch((error: unknown) => error);
    expect(isNameTaken(failure)).toBe(true);
    // Still staged: another name can be tried.
    await staged.place(join(folder, 'x-1.bin'), { replace: false });
    expect(await readFile(join(folder, 'x.bin'), 'utf8')).toBe('theirs');
    expect(await readFile(join(folder, 'x-1.bin'), 'utf8')).toBe('mine');
    expect(await listFolder(folder)).toEqual(['x-1.bin', 'x.bin']);
  });
});

// Regression (issue 10): commit relied on link(), which file systems without hard links
// refuse (EPERM): every transfer into such a folder failed after all its data arrived.
describe.skipIf(exfatUnavailable() !== undefined)(`on a file system without hard links and with case folding (exFAT${exfatUnavailable() ? `: ${exfatUnavailable()}` : ''})`, () => {
  let exfat: ExfatMount | undefined;
  beforeAll(async () => {
    exfat = await mountExfat();
  }, 60_000);
  afterAll(async () => {
    await exfat?.unmount();
  });

  it('a file is stored (placeholder + rename instead of link), and an existing name is still never clobbered', async () => {
    const inbox = join(exfat?.folder as string, 'no-links');
    await import('node:fs/promises').then((fs) => fs.mkdir(inbox));
    await writeFile(join(inbox, 'kept.bin'), 'precious');
    const source = await randomFile(await tempFolder(), 'kept.bin', 300_000);

    const renaming = await startReceiver({ target: inbox, onConflict: 'rename' });
    const result = await sendTo(renaming.port, source);
    expect(result.name).toBe('kept-1.bin');
    await renaming.result;
    await expectSameFile(join(inbox, 'kept-1.bin'), source);
    expect(await readFile(join(inbox, 'kept.bin'), 'utf8')).toBe('precious');

    const fresh = await startReceiver({ target: inbox });
    await sendTo(fresh.port, source, { name: 'new.bin' });
    await fresh.result;
    await expectSameFile(join(inbox, 'new.bin'), source);
    expect(await listFolder(inbox)).toEqual(['kept-1.bin', 'kept.bin', 'new.bin']);
  });

  it('two senders of "Report.txt" and "report.txt" at once, into a folder that folds case: one stored, the other refused', async () => {
    const inbox = join(exfat?.folder as string, 'folds');
    await import('node:fs/promises').then((fs) => fs.mkdir(inbox));
    const receiver = await serve({ folder: inbox, port: 0, host: '127.0.0.1', timeoutMs: 5_000 });
    const port = receiver.port;
    const outbox = await tempFolder();
    const upper = await randomFile(outbox, 'upper', 2_000_000);
    const lower = await randomFile(outbox, 'lower', 2_000_000);
    const settled = await Promise.allSettled([sendTo(port, upper, { name: 'Report.txt' }), sendTo(port, lower, { name: 'report.txt' })]);
    expect(settled.map((outcome) => outcome.status).sort()).toEqual(['fulfilled', 'rejected']);
    const refused = settled.find((outcome) => outcome.status === 'rejected') as PromiseRejectedResult;
    expect(refused.reason).toMatchObject({ code: 'FTX_ERR_REFUSED', reason: 'exists' });
    expect(await listFolder(inbox)).toHaveLength(1);
    await receiver.close({ graceMs: 1000 });
  });
});

// Regression (issue 10): anything that was not an FtxError was reported as a lost
// connection (exit 9), so a bug looked like a network fault. It is an internal error
// (exit 1), and the sender hears that the receiver failed, not that the line dropped.
describe('a bug is reported as a bug', () => {
  it('an unexpected exception while receiving rejects with FTX_ERR_INTERNAL (exit 1), and the sender is told in an Error frame', async () => {
    const folder = await tempFolder();
    const written: Buffer[] = [];
    const stream = new Duplex({
      read() {},
      write(chunk: Buffer, _encoding, callback) {
        written.push(chunk);
        callback();
      },
    });
    const handled = receiveConnection(stream, {
      target: join(folder, 'out.bin'),
      onConflict: 'refuse',
      idleTimeoutMs: 0,
      onStart: () => {
        throw new TypeError("Cannot read properties of undefined (reading 'size')");
      },
    });
    stream.push(headerFrame({ name: 'out.bin', size: 10 }));
    const failure = await handled.catch((error: unknown) => error);
    expect(failure).toMatchObject({ code: 'FTX_ERR_INTERNAL', message: expect.stringMatching(/unexpected failure.*reading 'size'/) });
    expect(EXIT_CODES.FTX_ERR_INTERNAL).toBe(1);
    const told = Buffer.concat(written).toString('latin1');
    expect(told).toContain('"code":"FTX_ERR_INTERNAL"');
    expect(await listFolder(folder)).toEqual([]);
  });

  it('a sender told of the receiver\'s bug reports the receiver failing (exit 10), not a lost connection', async () => {
    const folder = await tempFolder();
    // A receiving end whose own code throws (the API guards callers' callbacks; this is below it).
    const server = await listen(0, '127.0.0.1');
    const failures: unknown[] = [];
    server.on('connection', (socket) => {
      receiveConnection(socket, {
        target: join(folder, 'out.bin'),
        onConflict: 'refuse',
        idleTimeoutMs: 5_000,
        onStart: () => {
          throw new TypeError('boom');
        },
      }).catch((error: unknown) => failures.push(error));
    });
    try {
      const source = await randomFile(await tempFolder(), 'x.bin', 1000);
      const failure = await sendTo((server.address() as { port: number }).port, source).catch((error: unknown) => error);
      expect(failure).toMatchObject({ code: 'FTX_ERR_REMOTE_IO', fromPeer: true, message: expect.stringMatching(/^the receiver failed unexpectedly \(a bug on its side\)/) });
      expect(EXIT_CODES.FTX_ERR_REMOTE_IO).toBe(10);
      await expect.poll(() => failures).toHaveLength(1);
      expect(failures[0]).toMatchObject({ code: 'FTX_ERR_INTERNAL' });
      expect(await listFolder(folder)).toEqual([]);
    } finally {
      server.close();
    }
  });

});
