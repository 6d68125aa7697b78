/** Small file systems of their own for tests that need one (a full disk, little free space). Root only. */
import { execFileSync } from 'node:child_process';
import { afterEach } from 'vitest';
import { tempFolder } from './files.js';

/** True when this process may mount file systems (root, with mount(8) installed). */
export function canMount(): boolean {
  if (process.getuid?.() !== 0) return false;
  try {
    execFileSync('mount', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const mounted: string[] = [];

afterEach(() => {
  for (const mountPoint of mounted.splice(0)) execFileSync('umount', ['-l', mountPoint]);
});

/** A fresh tmpfs (options as mount -o takes them), unmounted after the current test. */
export async function mountTmpfs(options = 'size=4m'): Promise<string> {
  const mountPoint = await tempFolder('ftx-tmpfs-');
  execFileSync('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', mountPoint]);
  mounted.push(mountPoint);
  return mountPoint;
}
