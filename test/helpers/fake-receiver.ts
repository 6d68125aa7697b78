/**
 * A scripted ftx receiver for sender-side tests: it greets like `ftx recv`, decodes the
 * sender's first frame, and hands it to the test, which answers with whatever bytes it
 * wants (an Error frame with hostile text, an Accept glued to a Receipt, a reset
 * mid-data). Listens on 127.0.0.1, port 0.
 */
import { once } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';
import { FrameType } from '../../src/framing.js';
import { jsonFrame } from '../../src/protocol/messages.js';

export interface FakeConnection {
  socket: Socket;
  /** The sender's first frame (a Header or a Ping): its type byte and its JSON body. */
  opening: { type: number; body: Record<string, unknown> };
  /** Bytes that arrived after the first frame (raw data, when the test accepted). */
  onData(listener: (chunk: Buffer) => void): void;
}

export interface FakeReceiver {
  port: number;
  server: Server;
  close(): Promise<void>;
}

export async function fakeReceiver(onOpening: (connection: FakeConnection) => void): Promise<FakeReceiver> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    socket.write(jsonFrame(FrameType.Greeting, { protocol: 'ftx', version: 1, software: 'fake-receiver' }));
    const dataListeners: Array<(chunk: Buffer) => void> = [];
    // Decoded by hand (type u8, length u32be, JSON), independent of src/framing.ts.
    let buffered = Buffer.alloc(0);
    let opened = false;
    socket.on('data', (chunk: Buffer) => {
      if (opened) {
        for (const listener of dataListeners) listener(chunk);
        return;
      }
      buffered = Buffer.concat([buffered, chunk]);
      if (buffered.length < 5) return;
      const end = 5 + buffered.readUInt32BE(1);
      if (buffered.length < end) return;
      opened = true;
      const opening = { type: buffered[0] as number, body: JSON.parse(buffered.subarray(5, end).toString('utf8')) as Record<string, unknown> };
      onOpening({ socket, opening, onData: (listener) => dataListeners.push(listener) });
      const rest = buffered.subarray(end);
      if (rest.length > 0) for (const listener of dataListeners) listener(rest);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as { port: number }).port,
    server,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
