/**
 * Crashes and signals (issue 6): kill -9, SIGINT and SIGTERM on either side while a file
 * is in flight (the real CLI on both ends, the fault proxy slowing the data so the
 * transfer lasts), each case recorded in docs/RELIABILITY.md.
 *
 * Every case checks the exit code of each side against README's table, that nothing is
 * left under the final name, that what a cut leaves is exactly the hidden partial kept to
 * resume (its data and its record, issue 15; reported by the next receiver, and resumed
 * by the next send), and that nothing is written beside the target folder (each test
 * receives into PARENT/inbox and checks PARENT too).
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { summaryOf } from './helpers/cli.js';
import { expectSameFile, keptPartialNames, listFolder, randomFile, tempFolder } from './helpers/files.js';
import { cli, errorOf, expectLanded, HOST, landing, proxyTo, recvCli } from './helpers/harness.js';

describe('crashes and signals mid-file (CLI)', () => {
  /** A sender and a receiver mid-file: the proxy delays upstream so the transfer lasts. */
  async function midFile(receiverArgs: string[] = []) {
    const source = await randomFile(await tempFolder(), 'big.bin', 24 * 1024 * 1024);
    const where = await landing();
    const recv = await recvCli([join(where.inbox, 'out.bin'), '--timeout', '5', ...receiverArgs]);
    // About 64 KiB per 20 ms: seconds for the whole file, and what the kernel buffered
    // before a kill still drains quickly.
    const proxy = await proxyTo(recv.port, { up: { delayMs: 20 } });
    const send = cli(['send', source, `${HOST}:${proxy.port}`, '--json', '--timeout', '5']);
    await recv.waitForLog((record) => record.event === 'receiving');
    // Some data is in: the receiver's partial file exists and holds bytes (its record comes at its first checkpoint).
    await expect.poll(() => proxy.forwarded.up, { timeout: 10_000 }).toBeGreaterThan(200_000);
    await expect.poll(async () => (await listFolder(where.inbox)).length).toBeGreaterThanOrEqual(1);
    return { source, where, recv, send, proxy, kept: keptPartialNames(join(where.inbox, 'out.bin')) };
  }

  it('kill -9 the sender: the receiver reports the lost connection (9, not a timeout), keeps no file, only the partial to resume', async () => {
    const { where, recv, send, kept } = await midFile();
    send.child.kill('SIGKILL');
    expect(await send.exit).toBe(128 + 9);
    expect(await recv.exit, errorOf(recv)).toBe(9);
    expect(summaryOf(recv)).toMatchObject({ ok: false, exitCode: 9, error: { code: 'FTX_ERR_CONNECTION_LOST' } });
    await expectLanded(where, kept);
  });

  it('kill -9 the receiver: the sender exits 9 (not a timeout); the hidden partial stays (its record only if a checkpoint came first, and the dead process\'s lock); no out.bin', async () => {
    const { where, recv, send } = await midFile();
    const kept = keptPartialNames(join(where.inbox, 'out.bin'), null, { lock: true });
    recv.child.kill('SIGKILL');
    expect(await recv.exit).toBe(128 + 9);
    expect(await send.exit, errorOf(send)).toBe(9);
    expect(summaryOf(send)).toMatchObject({ ok: false, exitCode: 9, error: { code: 'FTX_ERR_CONNECTION_LOST' } });
    const names = await listFolder(where.inbox);
    expect(names).toContain(kept.find((name) => name.endsWith('.ftx-part')));
    expect(kept).toEqual(expect.arrayContaining(names));
    expect(await listFolder(where.parent)).toEqual(['inbox']);
  });

  it('after a kill -9, a new receiver reports the partial, leaves it alone, and the same send stores the file whole, partial gone', async () => {
    const { source, where, recv, send } = await midFile();
    recv.child.kill('SIGKILL');
    await send.exit;
    const [partial] = (await listFolder(where.inbox)).filter((name) => name.endsWith('.ftx-part'));
    const again = await recvCli([join(where.inbox, 'out.bin')]);
    const leftover = await again.waitForLog((record) => record.event === 'leftover');
    expect(leftover).toMatchObject({ level: 30, path: join(where.inbox, String(partial)) });
    const resend = cli(['send', source, `${HOST}:${again.port}`]);
    expect(await resend.exit, errorOf(resend)).toBe(0);
    expect(await again.exit).toBe(0);
    await expectSameFile(join(where.inbox, 'out.bin'), source);
    expect(await listFolder(where.inbox)).toEqual(['out.bin']);
    expect(String(leftover.msg)).toMatch(/is kept from a transfer that was cut short/);
  });

  it('SIGINT the receiver with a real sender: receiver 130, sender 9, no file, only the partial to resume', async () => {
    const { where, recv, send, kept } = await midFile();
    recv.child.kill('SIGINT');
    expect(await recv.exit, errorOf(recv)).toBe(130);
    expect(await send.exit, errorOf(send)).toBe(9);
    await expectLanded(where, kept);
  });

  it('SIGTERM the one-shot receiver: 143, sender 9, no file, only the partial to resume', async () => {
    const { where, recv, send, kept } = await midFile();
    recv.child.kill('SIGTERM');
    expect(await recv.exit, errorOf(recv)).toBe(143);
    expect(await send.exit, errorOf(send)).toBe(9);
    await expectLanded(where, kept);
  });

  it('SIGTERM the sender: 143; the receiver reports the lost connection (9), no file, only the partial to resume', async () => {
    const { where, recv, send, kept } = await midFile();
    send.child.kill('SIGTERM');
    expect(await send.exit, errorOf(send)).toBe(143);
    expect(await recv.exit, errorOf(recv)).toBe(9);
    await expectLanded(where, kept);
  });

  it('--no-resume: a cut transfer leaves nothing at all, as before resume', async () => {
    const source = await randomFile(await tempFolder(), 'big.bin', 24 * 1024 * 1024);
    const where = await landing();
    const recv = await recvCli([join(where.inbox, 'out.bin'), '--timeout', '5']);
    const proxy = await proxyTo(recv.port, { up: { delayMs: 20 } });
    const send = cli(['send', source, `${HOST}:${proxy.port}`, '--json', '--timeout', '5', '--no-resume']);
    await recv.waitForLog((record) => record.event === 'receiving');
    await expect.poll(() => proxy.forwarded.up, { timeout: 10_000 }).toBeGreaterThan(200_000);
    send.child.kill('SIGKILL');
    expect(await recv.exit, errorOf(recv)).toBe(9);
    await expectLanded(where, []);
  });
});
