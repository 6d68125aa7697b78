/**
 * The docs cannot rot: README's library example is run as written (extracted from
 * README.md, saved in the project folder so `import 'ftx'` resolves to this package, and
 * run with `node`), and docs/API.md documents every name the package exports.
 */
import { execFile } from 'node:child_process';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import * as api from '../src/index.js';

const run = promisify(execFile);
const PROJECT = fileURLToPath(new URL('..', import.meta.url));

/** The first ```js block after a heading. */
async function exampleUnder(heading: string): Promise<string> {
  const readme = await readFile(join(PROJECT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf(`\n${heading}\n`));
  const block = /```js\n([\s\S]*?)```/.exec(section);
  if (!block?.[1]) throw new Error(`no js example under "${heading}" in README.md`);
  return block[1];
}

describe('README', () => {
  it('the Library example runs as written and stores a verified file', async () => {
    const folder = join(PROJECT, 'test-results');
    await mkdir(folder, { recursive: true });
    const script = join(folder, 'readme-library-example.mjs');
    await writeFile(script, await exampleUnder('## Library'));
    try {
      const { stdout, stderr } = await run(process.execPath, [script], { cwd: PROJECT, timeout: 30_000 });
      expect(stderr).toBe('');
      expect(stdout).toMatch(/^stored \S+\/inbox\/hello\.txt \(18 bytes\), blake3 [0-9a-f]{64}, verified: true\n$/);
    } finally {
      await rm(script, { force: true });
    }
  });
});

describe('docs/API.md', () => {
  it('documents every name src/index.ts exports, values and types alike', async () => {
    const doc = await readFile(join(PROJECT, 'docs', 'API.md'), 'utf8');
    const index = await readFile(join(PROJECT, 'src', 'index.ts'), 'utf8');
    // Types leave no trace at run time: read them off the export statements.
    const typeNames = [...index.matchAll(/\btype (\w+)/g)].map((match) => match[1] as string);
    const names = [...new Set([...Object.keys(api), ...typeNames, ...Object.keys(api.defaults)])];
    const missing = names.filter((name) => !doc.includes(`\`${name}\``));
    expect(missing, 'exported names docs/API.md does not mention (as `Name`)').toEqual([]);
  });
});
