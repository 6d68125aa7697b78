/**
 * Protocol 2 (sessions) by hand, for tests that must say exactly what goes on the wire: a
 * peer that opens a session and writes the Entry, Data, Trailer and End frames a test
 * gives it, and reads the receiver's replies one at a time (KeepAlives skipped). Frames
 * are built here from the field names PROTOCOL comments give (src/framing.ts,
 * src/protocol/messages.ts), not through the sender's code.
 *
 * Also what session tests check on disk: a folder's tree (types, sizes, modes, times) and
 * every ftx temporary file anywhere under a folder.
 *
 * Importing it registers an afterEach that destroys every peer a test opened.
 */
import { createHash } from 'node:crypto';
import { lstat, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, expect } from 'vitest';
import { FrameType, frameTypeName } from '../../src/framing.js';
import { jsonFrame } from '../../src/protocol/messages.js';
import { rawPeer, type RawPeer } from './raw-peer.js';

const peers: RawPeer[] = [];

afterEach(() => {
  for (const peer of peers.splice(0)) peer.socket.destroy();
});

/** Sessions opened by hand use SHA-256: node:crypto computes it, independent of ftx. */
export const HASH = 'sha256';

export const sha256Hex = (bytes: Buffer | string) => createHash('sha256').update(bytes).digest('hex');

export function openFrame(fields: Record<string, unknown> = {}): Buffer {
  return jsonFrame(FrameType.Open, { version: 2, hash: HASH, entries: null, bytes: null, ...fields });
}

export function fileEntry(id: number, path: string, size: number | null, fields: Record<string, unknown> = {}): Buffer {
  return jsonFrame(FrameType.Entry, { id, path, type: 'file', size, ...fields });
}

export function dirEntry(id: number, path: string, fields: Record<string, unknown> = {}): Buffer {
  return jsonFrame(FrameType.Entry, { id, path, type: 'dir', ...fields });
}

/** A Data frame: 'D', a u32be length, then that many raw bytes (not JSON). */
export function dataFrame(bytes: Buffer): Buffer {
  const header = Buffer.alloc(5);
  header.writeUInt8(FrameType.Data, 0);
  header.writeUInt32BE(bytes.length, 1);
  return Buffer.concat([header, bytes]);
}

/** An entry's Trailer for `data` (or for `digestOf`, to lie about it). */
export function trailerFrame(id: number, data: Buffer, digestOf: Buffer = data): Buffer {
  return jsonFrame(FrameType.Trailer, { id, bytes: data.length, hash: HASH, digest: sha256Hex(digestOf) });
}

export function endFrame(entries: number, bytes: number): Buffer {
  return jsonFrame(FrameType.End, { entries, bytes });
}

/** A file's whole conversation after its Decision: its Data (none when empty) and its Trailer. */
export function fileBody(id: number, data: Buffer): Buffer {
  return Buffer.concat([...(data.length > 0 ? [dataFrame(data)] : []), trailerFrame(id, data)]);
}

export interface Reply {
  /** The frame type's name: 'Accept', 'Refuse', 'Decision', 'Result', 'Summary', 'Error'. */
  type: string;
  body: Record<string, unknown>;
}

export interface SessionPeer {
  raw: RawPeer;
  write(bytes: Buffer): Promise<void>;
  /** The receiver's next frame other than a KeepAlive; rejects if the connection closes first. */
  reply(): Promise<Reply>;
  /** Writes an Open and returns the answer (Accept or Refuse). */
  open(fields?: Record<string, unknown>): Promise<Reply>;
  /** Resolves once the receiver closed the connection. */
  closed: Promise<void>;
  destroy(): void;
}

/** Connects to an ftx receiver and reads its greeting; the peer is destroyed after the test. */
export async function sessionPeer(port: number, host = '127.0.0.1'): Promise<SessionPeer> {
  const raw = await rawPeer(port, host);
  peers.push(raw);
  const reply = async (): Promise<Reply> => {
    for (;;) {
      const frame = await raw.nextFrame();
      if (frame.type === FrameType.KeepAlive) continue;
      return { type: frameTypeName(frame.type), body: JSON.parse(frame.payload.toString('utf8')) as Record<string, unknown> };
    }
  };
  const peer: SessionPeer = {
    raw,
    write: (bytes) => raw.write(bytes),
    reply,
    open: async (fields = {}) => {
      await raw.write(openFrame(fields));
      return reply();
    },
    closed: raw.closed,
    destroy: () => raw.socket.destroy(),
  };
  return peer;
}

/** Opens a session and expects it accepted. */
export async function acceptedSession(port: number, fields: Record<string, unknown> = {}): Promise<SessionPeer> {
  const peer = await sessionPeer(port);
  const answer = await peer.open(fields);
  expect(answer, 'the answer to the Open').toMatchObject({ type: 'Accept' });
  return peer;
}

// ---- on disk -----------------------------------------------------------------------------

export interface TreeNode {
  type: 'file' | 'dir' | 'symlink' | 'other';
  size: number;
  mode: number;
  mtimeMs: number;
}

/** Every entry under `root` (hidden ones included), by '/'-separated relative path, via lstat. */
export async function treeOf(root: string): Promise<Map<string, TreeNode>> {
  const tree = new Map<string, TreeNode>();
  const visit = async (folder: string, prefix: string): Promise<void> => {
    for (const name of (await readdir(folder)).sort()) {
      const path = join(folder, name);
      const relative = prefix === '' ? name : `${prefix}/${name}`;
      const stats = await lstat(path);
      const type = stats.isSymbolicLink() ? 'symlink' : stats.isDirectory() ? 'dir' : stats.isFile() ? 'file' : 'other';
      tree.set(relative, { type, size: type === 'file' ? stats.size : 0, mode: stats.mode & 0o7777, mtimeMs: stats.mtimeMs });
      if (type === 'dir') await visit(path, relative);
    }
  };
  await visit(root, '');
  return tree;
}

/** "file a/b.txt 3", "dir a": a tree as lines, for readable diffs. */
export function brief(tree: Map<string, TreeNode>): string[] {
  return [...tree].map(([path, node]) => (node.type === 'file' ? `file ${path} ${node.size}` : `${node.type} ${path}`));
}

/** ftx's temporary files (`.NAME.XXXXXXXX.ftx-part`), and anything else ending in .ftx-part, anywhere under `root`. */
export async function temporaryFilesUnder(root: string): Promise<string[]> {
  return [...(await treeOf(root)).keys()].filter((path) => path.endsWith('.ftx-part') || path.endsWith('.ftx-resume'));
}

/**
 * `actual` holds exactly what `expected` holds, under the names a receiver stores (NFC):
 * the same names, types, and for files the same bytes. With `metadata`, also each file's
 * mode (under `umask`) and modification time, and each folder's mode and time.
 */
export async function expectSameTree(actual: string, expected: string, options: { metadata?: boolean; umask?: number } = {}): Promise<void> {
  const [got, sent] = await Promise.all([treeOf(actual), treeOf(expected)]);
  const want = new Map([...sent].map(([path, node]) => [path.normalize('NFC'), { ...node, source: path }]));
  expect(brief(got).sort(), `the tree under ${actual}`).toEqual(brief(want).sort());
  const umask = options.umask ?? process.umask();
  for (const [path, node] of want) {
    const stored = got.get(path) as TreeNode;
    if (node.type === 'file') {
      const [a, b] = await Promise.all([readFile(join(actual, path)), readFile(join(expected, node.source))]);
      expect(a.equals(b), `bytes of ${path}`).toBe(true);
    }
    if (!options.metadata) continue;
    if (node.type === 'file') expect(stored.mode, `mode of ${path}`).toBe(node.mode & 0o777 & ~umask);
    if (node.type === 'dir') expect(stored.mode & 0o777, `mode of the folder ${path}`).toBe(node.mode & 0o777);
    expect(Math.abs(stored.mtimeMs - node.mtimeMs), `modification time of ${path}`).toBeLessThan(1);
  }
}
