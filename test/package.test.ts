/**
 * The package as a user gets it: `npm pack`, installed into a fresh folder, imported as
 * 'ftx' (ESM, with its TypeScript declarations), and its `ftx` command run. Dependencies
 * come from npm's cache when they are there (`npm ci` put them there).
 */
import { execFile } from 'node:child_process';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { tempFolder } from './helpers/files.js';

const run = promisify(execFile);
const PROJECT = fileURLToPath(new URL('..', import.meta.url));

describe('the npm package', () => {
  it('installs into a fresh folder, where import("ftx") sends a file and `ftx --version` runs', async () => {
    const packed = await tempFolder('ftx-pack-');
    // --ignore-scripts: dist/ is built already (npm test builds first), and a rebuild would pull it from under the other tests.
    await run('npm', ['pack', '--ignore-scripts', '--pack-destination', packed], { cwd: PROJECT, timeout: 60_000 });
    const [tarball] = (await readdir(packed)).filter((name) => name.endsWith('.tgz'));
    expect(tarball).toMatch(/^ftx-\d+\.\d+\.\d+\.tgz$/);
    const { stdout: listing } = await run('tar', ['-tzf', join(packed, tarball as string)]);
    expect(listing).toContain('package/dist/index.js');
    expect(listing).toContain('package/dist/types/index.d.ts');
    expect(listing).toContain('package/bin/ftx.js');
    expect(listing).not.toContain('package/src/');
    expect(listing).not.toContain('package/test/');

    const app = await tempFolder('ftx-app-');
    await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
    await run('npm', ['install', '--ignore-scripts', '--no-audit', '--no-fund', '--prefer-offline', join(packed, tarball as string)], { cwd: app, timeout: 120_000 });
    const script = `
      import { mkdir, writeFile } from 'node:fs/promises';
      import { receive, send, isFtxError } from 'ftx';
      await mkdir('inbox');
      await writeFile('hello.txt', 'hello');
      const receiver = await receive({ target: 'inbox', port: 0, host: '127.0.0.1' });
      const sent = await send({ path: 'hello.txt', to: { host: '127.0.0.1', port: receiver.port } });
      const stored = await receiver.done;
      console.log(JSON.stringify({ verified: sent.verified, bytes: stored.bytes, brand: isFtxError(new Error()) }));
    `;
    await writeFile(join(app, 'use.mjs'), script);
    const { stdout } = await run(process.execPath, ['use.mjs'], { cwd: app, timeout: 30_000 });
    expect(JSON.parse(stdout)).toEqual({ verified: true, bytes: 5, brand: false });
    expect(await readFile(join(app, 'inbox', 'hello.txt'), 'utf8')).toBe('hello');
    const { stdout: version } = await run(join(app, 'node_modules', '.bin', 'ftx'), ['--version'], { cwd: app, timeout: 30_000 });
    expect(version.trim()).toMatch(/^\d+\.\d+\.\d+$/);
    const manifest = JSON.parse(await readFile(join(app, 'node_modules', 'ftx', 'package.json'), 'utf8')) as { exports: Record<string, unknown>; types: string };
    expect(manifest.exports['.']).toEqual({ types: './dist/types/index.d.ts', import: './dist/index.js' });
  }, 180_000);
});
