/**
 * The receiver's conversation (src/receiver.ts), in-process: invariants that the CLI
 * cases in faults.test.ts and crashes.test.ts depend on but can only hit by chance (a
 * connection that dies around the commit, a write stream destroyed mid-file), driven
 * here deterministically through a scripted socket.
 *
 * Tests headed "Regression" reproduce a bug the reliability suite found (fixed in
 * 7c25d83); the comment above each says what used to happen.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { FrameDecoder, FrameType, type Frame } from '../src/framing.js';
import { receiveConnection } from '../src/receiver.js';
import { StagedFile } from '../src/fs/staged-file.js';
import { listFolder, tempFolder } from './helpers/files.js';
import { trailerFor } from './helpers/harness.js';
import { headerFrame } from './helpers/raw-peer.js';

describe('invariants the races above depend on (in-process)', () => {
  /** A Duplex standing in for a socket: the test feeds the sender's bytes; writes whose first byte is `failOn` fail with ECONNRESET. */
  function scriptedSocket(failOn: number) {
    const frames: Frame[] = [];
    const decoder = new FrameDecoder();
    const stream = new Duplex({
      read() {},
      write(chunk: Buffer, _encoding, callback) {
        if (chunk[0] === failOn) {
          callback(Object.assign(new Error('write ECONNRESET'), { code: 'ECONNRESET' }));
          return;
        }
        frames.push(...decoder.push(chunk));
        callback();
      },
    });
    return { stream, frames };
  }

  // Regression: when the receipt could not be sent after the commit (the connection reset
  // while the file was being fsync'd and renamed), the receiver rejected with
  // ConnectionLostError (CLI: exit 9, --json ok:false) although the file was complete,
  // verified and under its final name. Seen through the proxy as "receiver 9 with out.bin
  // present". Its verdict must match its disk.
  it("a receipt that cannot be sent after the commit: the receiver's verdict matches its disk", async () => {
    const folder = await tempFolder();
    const { stream, frames } = scriptedSocket(FrameType.Receipt);
    const handled = receiveConnection(stream, { target: join(folder, 'out.bin'), onConflict: 'refuse', idleTimeoutMs: 0 });
    const data = Buffer.from('the whole file');
    stream.push(headerFrame({ name: 'out.bin', size: data.length }));
    await expect.poll(() => frames.some((frame) => frame.type === FrameType.Accept)).toBe(true);
    stream.push(Buffer.concat([data, trailerFor(data)]));
    const verdict = await handled.then(
      () => 'stored',
      () => 'failed',
    );
    const stored = (await listFolder(folder)).includes('out.bin');
    expect(await listFolder(folder), 'no temp file either way').toEqual(stored ? ['out.bin'] : []);
    expect(verdict).toBe(stored ? 'stored' : 'failed');
  });

  // Regression (the stream writer of 0.1): a destroyed fs.WriteStream closed its fd behind
  // the FileHandle, and discard() closed the same number again, by then possibly another
  // transfer's file (serve mode). The data path now writes through the FileHandle itself;
  // this keeps guarding the same invariant: a transfer lost while a write is in flight is
  // discarded without touching any other file's descriptor.
  it("discarding while a write is in flight (connection lost mid-file) leaves other files' descriptors alone", async () => {
    const folder = await tempFolder();
    const staged = await StagedFile.create(join(folder, 'lost.bin'));
    const inFlight = staged.writeAt(Buffer.alloc(8 * 1024 * 1024), 0).catch((error: unknown) => error);
    const discarded = staged.discard();
    // Other transfers open their temporary files; the kernel hands out the lowest free fds,
    // so a descriptor closed behind the StagedFile goes to the first of these.
    const others: FileHandle[] = [];
    try {
      for (let index = 0; index < 4; index++) others.push(await open(join(folder, `other-${index}.bin`), 'w'));
      await discarded;
      await inFlight;
      for (const other of others) await other.write('still mine');
      for (let index = 0; index < 4; index++) expect((await open(join(folder, `other-${index}.bin`), 'r').then(async (handle) => (await handle.stat()).size + (await handle.close(), 0)))).toBe(10);
    } finally {
      await Promise.all(others.map((other) => other.close().catch(() => {})));
    }
    expect((await listFolder(folder)).filter((name) => name.startsWith('.'))).toEqual([]);
  });
});
