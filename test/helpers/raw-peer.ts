/**
 * A hand-driven ftx peer for hostile and edge-case tests: it connects, reads the
 * receiver's greeting, and then writes exactly the bytes a test gives it.
 */
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';
import { FrameDecoder, FrameType, type Frame } from '../../src/framing.js';
import { jsonFrame } from '../../src/protocol/messages.js';

export interface RawPeer {
  socket: Socket;
  /** Frames received so far (the greeting first). */
  frames: Frame[];
  /** Resolves with the next frame of the given type (or rejects if the socket closes first). */
  nextFrame(type?: number): Promise<Frame>;
  write(bytes: Buffer | string): Promise<void>;
  /** Resolves when the receiver closed the connection (end or reset). */
  closed: Promise<void>;
}

/** `localAddress`: connect from this loopback address (127.0.0.0/8), for per-address limits. */
export async function rawPeer(port: number, host = '127.0.0.1', localAddress?: string): Promise<RawPeer> {
  const socket = connect({ host, port, ...(localAddress === undefined ? {} : { localAddress }) });
  await once(socket, 'connect');
  const decoder = new FrameDecoder();
  const frames: Frame[] = [];
  const waiters: Array<() => void> = [];
  let ended = false;
  socket.on('data', (chunk: Buffer) => {
    try {
      frames.push(...decoder.push(chunk));
    } catch {
      // Not frames (a classic peer): tests read `frames` only for ftx receivers.
    }
    for (const wake of waiters.splice(0)) wake();
  });
  const closed = new Promise<void>((resolve) => {
    const done = () => {
      ended = true;
      for (const wake of waiters.splice(0)) wake();
      resolve();
    };
    socket.on('close', done);
    socket.on('error', () => {});
  });
  let consumed = 0;
  const nextFrame = async (type?: number): Promise<Frame> => {
    for (;;) {
      while (consumed < frames.length) {
        const frame = frames[consumed++] as Frame;
        if (type === undefined || frame.type === type) return frame;
      }
      if (ended) throw new Error(`connection closed before a frame of type ${type ?? 'any'}`);
      await new Promise<void>((resolve) => waiters.push(resolve));
    }
  };
  const write = (bytes: Buffer | string) =>
    new Promise<void>((resolve, reject) => socket.write(bytes, (error) => (error ? reject(error) : resolve())));
  await nextFrame(FrameType.Greeting);
  return { socket, frames, nextFrame, write, closed };
}

export function headerFrame(fields: Record<string, unknown>): Buffer {
  return jsonFrame(FrameType.Header, { hash: 'sha256', ...fields });
}

export function parseFrame(frame: Frame): Record<string, unknown> {
  return JSON.parse(frame.payload.toString('utf8')) as Record<string, unknown>;
}
