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

  // Regression: the write stream was an fs.WriteStream on the FileHandle's numeric fd with
  // autoClose: false, but a *destroyed* fs stream closes its fd anyway (autoClose only
  // governs a stream that ends). pipeline() destroys it when the connection dies mid-file,
  // so the fd was closed behind the FileHandle and discard() closed the same number again,
  // by then possibly another transfer's file (serve mode): that file's fd was closed, or,
  // if yet another file reused the number, its writes went to the wrong file.
  it("discarding after the write stream was destroyed (connection lost mid-file) leaves other files' descriptors alone", async () => {
    const folder = await tempFolder();
    const staged = await StagedFile.create(join(folder, 'lost.bin'));
    const stream = staged.createWriteStream();
    const closed = new Promise<void>((resolve) => stream.once('close', () => resolve()));
    stream.on('error', () => {}); // the error pipeline() would report
    stream.write(Buffer.alloc(1000));
    stream.destroy(new Error('the sender vanished')); // what pipeline() does when the socket dies
    await closed;
    // Other transfers open their temporary files; the kernel hands out the lowest free fds,
    // so a descriptor the stream closed behind the StagedFile goes to the first of these.
    const others: FileHandle[] = [];
    try {
      for (let index = 0; index < 4; index++) others.push(await open(join(folder, `other-${index}.bin`), 'w'));
      await staged.discard();
      for (const other of others) await other.write('still mine');
    } finally {
      await Promise.all(others.map((other) => other.close().catch(() => {})));
    }
  });
});
