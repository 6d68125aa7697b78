/**
 * Disk trouble on the receiver (issue 6): a read-only folder (before and after the
 * receiver started), a folder the user may not write (before and after), and a folder
 * deleted mid-transfer, each case recorded in docs/RELIABILITY.md. (Disk full is in
 * cli.test.ts.) The read-only cases need root and mount(8), the permission cases root
 * (to run the receiver as nobody); they are skipped otherwise.
 *
 * Every case checks the exit code of each side against README's table and that nothing
 * is written: no file, no temporary file, nothing beside the target folder.
 */
import { execFileSync, spawn } from 'node:child_process';
import { chmod, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { FTX_BIN, summaryOf, type CliRun } from './helpers/cli.js';
import { listFolder, randomFile, tempFolder } from './helpers/files.js';
import { cli, errorOf, expectLanded, FIXTURE_JPEG, HOST, killAfterTest, landing, proxyTo, recvCli, type Landing } from './helpers/harness.js';
import { canMount, mountTmpfs } from './helpers/mounts.js';

const ROOT_WITH_MOUNT = canMount();
const tmpfs = mountTmpfs;

describe('disk trouble on the receiver', () => {
  it.skipIf(!ROOT_WITH_MOUNT)('a read-only folder (tmpfs mounted ro): one-shot and serve mode exit 8 before listening', async () => {
    const readOnly = await tmpfs('ro,size=1m');
    const oneShot = cli(['recv', join(readOnly, 'out.bin'), '--port', '0', '--json']);
    expect(await oneShot.exit).toBe(8);
    expect(summaryOf(oneShot)).toMatchObject({ ok: false, exitCode: 8, error: { code: 'FTX_ERR_LOCAL_IO', message: expect.stringMatching(/read-only/) } });
    expect(oneShot.logs().some((record) => record.event === 'listening')).toBe(false);
    const serve = cli(['recv', readOnly, '--serve', '--insecure', '--port', '0', '--json']);
    expect(await serve.exit).toBe(8);
    expect(summaryOf(serve)).toMatchObject({ ok: false, exitCode: 8, error: { code: 'FTX_ERR_LOCAL_IO' } });
    expect(await listFolder(readOnly)).toEqual([]);
  });

  it.skipIf(!ROOT_WITH_MOUNT)('the folder turns read-only after the receiver started: receiver 8, sender 10, nothing written', async () => {
    const mountPoint = await tmpfs('size=4m');
    const recv = await recvCli([join(mountPoint, 'out.bin')]);
    execFileSync('mount', ['-o', 'remount,ro', mountPoint]);
    const send = cli(['send', FIXTURE_JPEG, `${HOST}:${recv.port}`, '--json']);
    expect(await recv.exit, errorOf(recv)).toBe(8);
    expect(errorOf(recv)).toMatch(/read-only/);
    expect(await send.exit, errorOf(send)).toBe(10);
    expect(summaryOf(send)).toMatchObject({ ok: false, error: { code: 'FTX_ERR_REMOTE_IO', message: expect.stringMatching(/^the receiver reports: .*read-only/) } });
    expect(await listFolder(mountPoint)).toEqual([]);
  });

  describe('permission denied (the receiver runs as an unprivileged user)', () => {
    const NOBODY = 65534;
    const asRoot = process.getuid?.() === 0;

    /** `ftx recv` as uid/gid 65534, which cannot write a root-owned 0555 folder even though root could. */
    function recvAsNobody(args: string[]): CliRun {
      const child = spawn(process.execPath, [FTX_BIN, 'recv', ...args, '--port', '0', '--bind', HOST, '--json'], {
        uid: NOBODY,
        gid: NOBODY,
        stdio: ['ignore', 'pipe', 'pipe'],
        cwd: tmpdir(),
      });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (text: string) => (stdout += text));
      child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
      const exit = new Promise<number>((resolve) => child.on('close', (code) => resolve(code ?? -1)));
      const logs = () => stderr.split('\n').filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as Record<string, unknown>);
      const waitForLog = async (match: (record: Record<string, unknown>) => boolean) => {
        for (let waited = 0; waited < 10_000; waited += 20) {
          const found = logs().find(match);
          if (found) return found;
          if (child.exitCode !== null) break;
          await sleep(20);
        }
        throw new Error(`no matching log line; stderr was:\n${stderr}`);
      };
      const run: CliRun = { child, stdout: () => stdout, stderr: () => stderr, logs, exit, waitForLog };
      return killAfterTest(run);
    }

    async function lockedLanding(): Promise<Landing> {
      const where = await landing();
      await chmod(where.parent, 0o755); // mkdtemp makes it 0700: nobody could not even look in
      return where;
    }

    it.skipIf(!asRoot)('a folder the user may not write: exit 8 before listening, "permission denied"', async () => {
      const where = await lockedLanding();
      await chmod(where.inbox, 0o555);
      const recv = recvAsNobody([join(where.inbox, 'out.bin')]);
      expect(await recv.exit, recv.stderr()).toBe(8);
      expect(summaryOf(recv)).toMatchObject({ ok: false, exitCode: 8, error: { code: 'FTX_ERR_LOCAL_IO', message: expect.stringMatching(/permission denied/) } });
      await expectLanded(where, []);
    });

    it.skipIf(!asRoot)('write permission taken away after the receiver started: receiver 8, sender 10, nothing written', async () => {
      const where = await lockedLanding();
      await chmod(where.inbox, 0o777);
      const recv = recvAsNobody([join(where.inbox, 'out.bin')]);
      const listening = await recv.waitForLog((record) => record.event === 'listening');
      await chmod(where.inbox, 0o555);
      const send = cli(['send', FIXTURE_JPEG, `${HOST}:${String(listening.port)}`, '--json']);
      expect(await recv.exit, recv.stderr()).toBe(8);
      expect(errorOf(recv)).toMatch(/permission denied/);
      expect(await send.exit, errorOf(send)).toBe(10);
      expect(summaryOf(send)).toMatchObject({ ok: false, error: { code: 'FTX_ERR_REMOTE_IO', message: expect.stringMatching(/permission denied/) } });
      await expectLanded(where, []);
    });
  });

  it('the target folder is deleted mid-file: receiver 8, sender 10, no file anywhere', async () => {
    const source = await randomFile(await tempFolder(), 'doomed.bin', 512 * 1024);
    const where = await landing();
    const recv = await recvCli([join(where.inbox, 'out.bin')]);
    // The stall holds the data back long enough to delete the folder while the file is open.
    const proxy = await proxyTo(recv.port, { up: { stallAfterBytes: 200_000, stallMs: 1500 } });
    const send = cli(['send', source, `${HOST}:${proxy.port}`, '--json']);
    await recv.waitForLog((record) => record.event === 'receiving');
    await rm(where.inbox, { recursive: true });
    expect(await recv.exit, errorOf(recv)).toBe(8);
    expect(errorOf(recv)).toMatch(/cannot store .*out\.bin: no such file or folder/);
    expect(await send.exit, errorOf(send)).toBe(10);
    expect(summaryOf(send)).toMatchObject({ ok: false, exitCode: 10, error: { code: 'FTX_ERR_REMOTE_IO' } });
    expect(await listFolder(where.parent)).toEqual([]);
  });
});
