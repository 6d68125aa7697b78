/**
 * The package as a user gets it: `npm pack`, installed into a fresh folder, imported as
 * 'ftx' (ESM, with its TypeScript declarations), and its `ftx` command run. Dependencies
 * come from npm's cache when they are there (`npm ci` put them there).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { runCli, startRecvCli, summaryOf } from './helpers/cli.js';
import { blake3Of, tempFolder } from './helpers/files.js';

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

  // Where the prebuilt BLAKE3 binary cannot load (a platform without one; here, an install
  // that skipped optional dependencies, which is how that binary ships), ftx still works
  // with the WebAssembly build, says so at debug level, and computes the same digest.
  it('without its native BLAKE3 binary it falls back to WebAssembly: same digest, and it says so', async () => {
    const packed = await tempFolder('ftx-pack-');
    await run('npm', ['pack', '--ignore-scripts', '--pack-destination', packed], { cwd: PROJECT, timeout: 60_000 });
    const [tarball] = (await readdir(packed)).filter((name) => name.endsWith('.tgz'));
    const app = await tempFolder('ftx-app-');
    await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
    await run('npm', ['install', '--omit=optional', '--ignore-scripts', '--no-audit', '--no-fund', '--prefer-offline', join(packed, tarball as string)], { cwd: app, timeout: 120_000 });
    const installed = await readdir(join(app, 'node_modules', '@napi-rs'));
    expect(installed, 'only the loader, no platform binary').toEqual(['blake-hash']);
    const data = join(app, 'data.bin');
    await writeFile(data, randomBytes(300_000));
    const bin = join(app, 'node_modules', 'ftx', 'bin', 'ftx.js');
    const recv = await startRecvCli([join(app, 'copy.bin'), '--log-level', 'debug'], { bin, cwd: app });
    const send = runCli(['send', data, `127.0.0.1:${recv.port}`, '--json', '--log-level', 'debug'], { bin, cwd: app });
    expect(await send.exit, send.stderr()).toBe(0);
    expect(await recv.exit, recv.stderr()).toBe(0);
    const digest = await blake3Of(data);
    expect(summaryOf(send)).toMatchObject({ hash: 'blake3', digest, digestEngine: 'wasm', verified: true });
    expect(summaryOf(recv)).toMatchObject({ hash: 'blake3', digest, digestEngine: 'wasm' });
    for (const side of [send, recv]) {
      expect(side.logs().find((record) => record.digestEngine === 'wasm')?.msg).toMatch(/^BLAKE3: the native module cannot load \(.*\); using the WebAssembly build, several times slower$/);
    }
    expect(await blake3Of(join(app, 'copy.bin'))).toBe(digest);
  }, 180_000);
});
