/**
 * The layering docs/ARCHITECTURE.md describes, checked on the source: every import
 * points down (or sideways within a layer), there are no cycles, pure validation does
 * not touch the file system, and the CLI uses the library only through its public API.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const SRC = fileURLToPath(new URL('../src/', import.meta.url));

/** Bottom to top. A module may import from its own layer or any layer below. */
const LAYERS: Array<[string, (path: string) => boolean]> = [
  ['base', (path) => ['errors.ts', 'defaults.ts'].includes(path) || path.startsWith('util/') || path === 'digest/names.ts'],
  ['codec', (path) => path === 'framing.ts'],
  ['resources', (path) => path.startsWith('digest/') || path.startsWith('fs/') || path.startsWith('transport/')],
  ['protocol', (path) => path.startsWith('protocol/')],
  ['conversation', (path) => path === 'handshake.ts'],
  ['session', (path) => path.startsWith('session/')],
  ['ends', (path) => path === 'sender.ts' || path === 'receiver.ts'],
  ['api', (path) => path.startsWith('api/') || path === 'index.ts'],
  ['cli', (path) => path.startsWith('cli/')],
];

function layerOf(path: string): number {
  const index = LAYERS.findIndex(([, matches]) => matches(path));
  if (index === -1) throw new Error(`${path} belongs to no layer: add it to LAYERS and docs/ARCHITECTURE.md`);
  return index;
}

function sourceFiles(folder = SRC): string[] {
  return readdirSync(folder, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? sourceFiles(join(folder, entry.name)) : entry.name.endsWith('.ts') ? [relative(SRC, join(folder, entry.name))] : [],
  );
}

/** The project modules a file imports (static and dynamic), as paths under src/. */
function importsOf(path: string): string[] {
  const text = readFileSync(join(SRC, path), 'utf8');
  const specifiers = [...text.matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)].map((match) => match[1] as string);
  return specifiers.map((specifier) => relative(SRC, resolve(SRC, dirname(path), specifier)).replace(/\.js$/, '.ts'));
}

const files = sourceFiles();
const graph = new Map(files.map((path) => [path, importsOf(path)]));

describe('architecture', () => {
  it('every import points down the layers (or within its own)', () => {
    const upward = [...graph].flatMap(([path, imports]) =>
      imports.filter((target) => layerOf(target) > layerOf(path)).map((target) => `${path} (${LAYERS[layerOf(path)]?.[0]}) imports ${target} (${LAYERS[layerOf(target)]?.[0]})`),
    );
    expect(upward).toEqual([]);
  });

  it('has no import cycles', () => {
    const cycles: string[] = [];
    const state = new Map<string, 'visiting' | 'done'>();
    const visit = (path: string, trail: string[]) => {
      if (state.get(path) === 'done') return;
      if (state.get(path) === 'visiting') {
        cycles.push([...trail.slice(trail.indexOf(path)), path].join(' -> '));
        return;
      }
      state.set(path, 'visiting');
      for (const target of graph.get(path) ?? []) visit(target, [...trail, path]);
      state.set(path, 'done');
    };
    for (const path of files) visit(path, []);
    expect(cycles).toEqual([]);
  });

  it('every import resolves to a source file', () => {
    const missing = [...graph].flatMap(([path, imports]) => imports.filter((target) => !graph.has(target)).map((target) => `${path} imports ${target}`));
    expect(missing).toEqual([]);
  });

  it('pure validation (names, framing, messages) never imports the file system or the network', () => {
    for (const path of ['fs/names.ts', 'fs/temp-names.ts', 'framing.ts', 'protocol/messages.ts']) {
      const text = readFileSync(join(SRC, path), 'utf8');
      expect(text, path).not.toMatch(/from 'node:(fs|net|fs\/promises|tls)'/);
      for (const target of graph.get(path) ?? []) expect(['fs/staged-file.ts', 'fs/case-folding.ts', 'fs/source.ts', 'fs/file-pump.ts', 'transport/tcp.ts'], `${path} imports ${target}`).not.toContain(target);
    }
  });

  it('the CLI reaches the library only through index.ts (and the base layer: errors, defaults, util/, digest names)', () => {
    const wrong = [...graph]
      .filter(([path]) => path.startsWith('cli/'))
      .flatMap(([path, imports]) => imports.filter((target) => !target.startsWith('cli/') && target !== 'index.ts' && layerOf(target) !== 0).map((target) => `${path} imports ${target}`));
    expect(wrong).toEqual([]);
  });

  it('library messages never name a CLI flag: the CLI adds those, keyed on the error code and remedy (src/cli/hints.ts)', () => {
    // A string that holds " --word" or starts with "--word", outside comments; V8's own flag is not a CLI flag.
    const flag = /(['"`]|\s)--[a-z][a-z-]+/;
    const named = sourceFiles()
      .filter((path) => !path.startsWith('cli/'))
      .flatMap((path) =>
        readFileSync(join(SRC, path), 'utf8')
          .split('\n')
          .map((line, index) => ({ at: `${path}:${index + 1}`, line: line.trim() }))
          .filter(({ line }) => !line.startsWith('*') && !line.startsWith('//') && !line.startsWith('/*') && flag.test(line) && !line.includes("'--expose-gc'")),
      )
      .map(({ at, line }) => `${at}: ${line}`);
    expect(named).toEqual([]);
  });

  it('the four files the design fixes are at the top of src/, each the face of its layer', () => {
    for (const [path, layer] of [['framing.ts', 'codec'], ['handshake.ts', 'conversation'], ['sender.ts', 'ends'], ['receiver.ts', 'ends']] as const) {
      expect(LAYERS[layerOf(path)]?.[0], path).toBe(layer);
    }
  });
});
