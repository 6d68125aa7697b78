/**
 * A fresh exFAT file system for tests of what differs there from ext4 and tmpfs: it has
 * no hard links (link() fails with EPERM) and names that differ only by case are one file.
 *
 * Made from a 64 MiB image: mkfs.exfat, then losetup (the FUSE driver wants a block
 * device), then mount.exfat-fuse. Needs root and the exfatprogs and exfat-fuse packages;
 * exfatUnavailable() says why not when they are missing, so tests can `it.skipIf` it.
 * Every command runs with a timeout, so a stuck mount fails the test instead of hanging it.
 *
 *   const exfat = await mountExfat();        // in beforeAll
 *   await exfat?.unmount();                  // in afterAll (idempotent)
 */
import { spawn } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

export interface ExfatMount {
  /** The root folder of the mounted file system (empty when mounted). */
  readonly folder: string;
  /** The loop device it is mounted from. */
  readonly device: string;
  /** Unmounts it, detaches the loop device and removes the image. Safe to call twice. */
  unmount(): Promise<void>;
}

const IMAGE_BYTES = 64 * 1024 * 1024;
/** Long enough for a loaded 2-core CI machine; mkfs of 64 MiB takes well under a second. */
const COMMAND_TIMEOUT_MS = 20_000;
/** Where the tools live on Debian, in case the test runner's PATH lacks the sbin folders. */
const SYSTEM_FOLDERS = ['/usr/local/sbin', '/usr/sbin', '/sbin', '/usr/bin', '/bin'];

function findProgram(name: string): string | undefined {
  const folders = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), ...SYSTEM_FOLDERS];
  for (const folder of folders) {
    const path = join(folder, name);
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // not here
    }
  }
  return undefined;
}

interface Programs {
  mkfs: string;
  losetup: string;
  mount: string;
  umount: string;
}

function findPrograms(): Programs | string {
  const found: Partial<Programs> = {};
  const wanted: Record<keyof Programs, string> = { mkfs: 'mkfs.exfat', losetup: 'losetup', mount: 'mount.exfat-fuse', umount: 'umount' };
  for (const [key, program] of Object.entries(wanted) as Array<[keyof Programs, string]>) {
    const path = findProgram(program);
    if (!path) return `${program} is not installed (apt-get install exfatprogs exfat-fuse)`;
    found[key] = path;
  }
  return found as Programs;
}

/** Why an exFAT file system cannot be mounted here, or undefined if it can be tried. */
export function exfatUnavailable(): string | undefined {
  if (process.platform !== 'linux') return 'exFAT mounts are only set up on Linux';
  if (process.getuid?.() !== 0) return 'mounting needs root';
  if (!existsSync('/dev/fuse')) return 'there is no /dev/fuse';
  if (!existsSync('/dev/loop-control')) return 'there is no /dev/loop-control';
  const programs = findPrograms();
  return typeof programs === 'string' ? programs : undefined;
}

/**
 * Runs a command with a timeout and resolves with its stdout. Settles on 'exit', not
 * 'close': the FUSE driver leaves a daemon behind, which could hold inherited pipes open.
 */
function run(program: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(program, args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: COMMAND_TIMEOUT_MS, killSignal: 'SIGKILL' });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (text: string) => (stdout += text));
    child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      child.stdout.destroy();
      child.stderr.destroy();
      if (code === 0) resolve(stdout);
      else {
        const how = signal === 'SIGKILL' ? `was killed after ${COMMAND_TIMEOUT_MS} ms` : `exited with ${code ?? signal}`;
        reject(new Error(`${program} ${args.join(' ')} ${how}: ${stderr.trim()}`));
      }
    });
  });
}

async function isMountPoint(folder: string): Promise<boolean> {
  const mounts = await readFile('/proc/self/mounts', 'utf8');
  // Fields are space-separated, with spaces in paths written as \040; ours have none.
  return mounts.split('\n').some((line) => line.split(' ')[1] === folder);
}

/**
 * Mounts a fresh, empty exFAT file system; undefined when exfatUnavailable() says why not.
 * Rejects (after undoing what it did) when the tools are there but mounting fails.
 */
export async function mountExfat(): Promise<ExfatMount | undefined> {
  if (exfatUnavailable() !== undefined) return undefined;
  const programs = findPrograms() as Programs;
  const root = await mkdtemp(join(tmpdir(), 'ftx-exfat-'));
  const image = join(root, 'exfat.img');
  const folder = join(root, 'mnt');
  let device: string | undefined;
  let mounted = false;

  let unmounting: Promise<void> | undefined;
  const unmount = (): Promise<void> => {
    unmounting ??= (async () => {
      if (mounted) {
        // A lazy unmount if something still has a file open there: the test is over either way.
        await run(programs.umount, [folder])
          .catch(() => run(programs.umount, ['-l', folder]))
          .catch(() => undefined);
      }
      // Detaching a loop device still held by the exiting driver only marks it for
      // detaching; the kernel frees it when the driver lets go.
      if (device) await run(programs.losetup, ['-d', device]).catch(() => undefined);
      // Never delete through a mount that is still there.
      if (!(await isMountPoint(folder))) await rm(root, { recursive: true, force: true });
    })();
    return unmounting;
  };

  try {
    await mkdir(folder);
    await writeFile(image, '');
    await truncate(image, IMAGE_BYTES);
    await run(programs.mkfs, [image]);
    device = (await run(programs.losetup, ['-f', '--show', image])).trim();
    if (!device.startsWith('/dev/loop')) throw new Error(`losetup gave ${JSON.stringify(device)} instead of a loop device`);
    await run(programs.mount, [device, folder]);
    mounted = true;
    if (!(await isMountPoint(folder))) throw new Error(`mount.exfat-fuse succeeded but ${folder} is not a mount point`);
  } catch (error) {
    await unmount().catch(() => undefined);
    throw error;
  }
  return { folder, device, unmount };
}
