/**
 * Reading an accepted connection straight into the receiver's buffers
 * (src/transport/direct-reads.ts). It rests on two things Node does not document (a
 * server's pauseOnConnect plus moving `socket._handle` to a Socket created with `onread`),
 * so the first test is the canary: if a Node upgrade takes that ground away, it fails
 * here, loudly, rather than every receiver silently falling back to the slower path.
 */
import { once } from 'node:events';
import { connect, type Server, type Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeFrame, FrameType } from '../src/framing.js';
import { Channel, type DataSink } from '../src/protocol/channel.js';
import { adoptForDirectReads, type DirectReadSocket } from '../src/transport/direct-reads.js';
import { listen } from '../src/transport/tcp.js';

const servers: Server[] = [];
const sockets: Socket[] = [];
afterEach(() => {
  for (const socket of sockets.splice(0)) socket.destroy();
  for (const server of servers.splice(0)) server.close();
});

/** A loopback server whose next connection is adopted; resolves with it and a client socket. */
async function adoptedPair(): Promise<{ adopted: DirectReadSocket; client: Socket }> {
  const server = await listen(0, '127.0.0.1');
  servers.push(server);
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const client = connect({ host: '127.0.0.1', port: (server.address() as { port: number }).port });
  sockets.push(client);
  const [socket] = await accepted;
  const adopted = adoptForDirectReads(socket);
  if (!adopted) throw new Error('this Node no longer lets ftx read an accepted socket into its own buffers (see src/transport/direct-reads.ts)');
  sockets.push(adopted.socket);
  return { adopted, client };
}

/** A sink of two buffers that records what it got and, when `stingy`, makes the reader wait for room. */
function recordingSink(bufferBytes: number, stingy = false) {
  const buffers = [Buffer.alloc(bufferBytes), Buffer.alloc(bufferBytes)];
  const received: Buffer[] = [];
  const reads: number[] = [];
  let current = 0;
  let filled = 0;
  let waiting: Promise<void> | undefined;
  const sink: DataSink = {
    region: (limit) => (buffers[current] as Buffer).subarray(filled, filled + Math.min(limit, bufferBytes - filled)),
    filled: (bytes) => {
      reads.push(bytes.length);
      received.push(Buffer.from(bytes));
      filled += bytes.length;
      if (filled < bufferBytes) return true;
      current = current === 0 ? 1 : 0;
      filled = 0;
      if (!stingy) return true;
      waiting = new Promise((resolve) => setTimeout(resolve, 5));
      return false;
    },
    room: () => waiting ?? Promise.resolve(),
  };
  return { sink, received, reads };
}

describe('direct reads', () => {
  it('an accepted connection moves to a socket that reads into our buffers, in reads far larger than 64 KiB', async () => {
    const { adopted, client } = await adoptedPair();
    const channel = new Channel(adopted.socket, { source: adopted.source, peerRole: 'the sender' });
    const data = randomBytes(16 * 1024 * 1024);
    const trailer = encodeFrame(FrameType.Trailer, Buffer.from('{"after":"the data"}'));
    client.end(Buffer.concat([data, trailer]));
    const { sink, received, reads } = recordingSink(4 * 1024 * 1024);
    await channel.readDataInto(data.length, sink);
    expect(Buffer.concat(received).equals(data)).toBe(true);
    // Node's own reads of an accepted socket are 64 KiB; into our buffers they are whatever the kernel holds.
    expect(Math.max(...reads)).toBeGreaterThan(64 * 1024);
    const frame = await channel.readFrame();
    expect(frame?.payload.toString()).toBe('{"after":"the data"}');
    expect(await channel.readFrame()).toBeNull();
  });

  it('a sink without room pauses reading, and nothing is lost or reordered', async () => {
    const { adopted, client } = await adoptedPair();
    const channel = new Channel(adopted.socket, { source: adopted.source, peerRole: 'the sender' });
    const data = randomBytes(3 * 1024 * 1024 + 123);
    client.end(data);
    const { sink, received } = recordingSink(64 * 1024 + 7, true);
    await channel.readDataInto(data.length, sink);
    expect(Buffer.concat(received).equals(data)).toBe(true);
  });

  it('data glued to control bytes in one read (the header and the first data together) is split exactly', async () => {
    const { adopted, client } = await adoptedPair();
    const channel = new Channel(adopted.socket, { source: adopted.source, peerRole: 'the sender' });
    const header = encodeFrame(FrameType.Header, Buffer.from('{"name":"x"}'));
    const data = randomBytes(300_000);
    client.end(Buffer.concat([header, data, encodeFrame(FrameType.Trailer, Buffer.from('{}'))]));
    expect((await channel.readFrame())?.type).toBe(FrameType.Header);
    const { sink, received } = recordingSink(100_000);
    await channel.readDataInto(data.length, sink);
    expect(Buffer.concat(received).equals(data)).toBe(true);
    expect((await channel.readFrame())?.type).toBe(FrameType.Trailer);
  });

  it('a sender that closes early is reported with how far it got', async () => {
    const { adopted, client } = await adoptedPair();
    const channel = new Channel(adopted.socket, { source: adopted.source, peerRole: 'the sender' });
    client.end(Buffer.alloc(1000));
    const { sink } = recordingSink(4096);
    await expect(channel.readDataInto(5000, sink)).rejects.toThrow('the sender closed the connection after 1000 B of 4.88 KiB (20%)');
  });
});
