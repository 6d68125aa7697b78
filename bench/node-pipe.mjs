#!/usr/bin/env node
/**
 * The Node ceiling: raw bytes over TCP with no protocol and no hash, written the way
 * Node moves bytes fastest, so the benchmark can tell Node's cost from ftx's.
 *
 *   node bench/node-pipe.mjs recv OUT_PATH [--port 0]   prints "listening on PORT", exits after one connection
 *   node bench/node-pipe.mjs send FILE HOST PORT
 *
 * Why these settings: the sender reads 1 MiB at a time (the default 64 KiB makes the
 * thread-pool round trip, not the network, the limit); the receiver's write stream has a
 * 4 MiB high-water mark (the default 16 KiB pauses the socket after every chunk).
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { connect, createServer } from 'node:net';
import { pipeline } from 'node:stream/promises';

const READ_CHUNK_BYTES = 1024 * 1024;
const WRITE_HIGH_WATER_MARK = 4 * 1024 * 1024;

async function receive(outPath, port) {
  const server = createServer();
  const connection = new Promise((resolve) => server.once('connection', resolve));
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port, host: '127.0.0.1' }, resolve);
  });
  process.stdout.write(`listening on ${server.address().port}\n`);
  const socket = await connection;
  server.close();
  await pipeline(socket, createWriteStream(outPath, { highWaterMark: WRITE_HIGH_WATER_MARK }));
}

async function send(filePath, host, port) {
  const socket = connect({ host, port });
  await new Promise((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  // pipeline ends the socket after the last byte (a FIN, like nc -N) and settles on close.
  await pipeline(createReadStream(filePath, { highWaterMark: READ_CHUNK_BYTES }), socket);
}

const [mode, ...rest] = process.argv.slice(2);
const portFlag = rest.indexOf('--port');
try {
  if (mode === 'recv' && rest[0]) {
    await receive(rest[0], portFlag === -1 ? 0 : Number(rest[portFlag + 1]));
  } else if (mode === 'send' && rest.length >= 3) {
    await send(rest[0], rest[1], Number(rest[2]));
  } else {
    process.stderr.write('usage: node-pipe.mjs recv OUT_PATH [--port N] | send FILE HOST PORT\n');
    process.exitCode = 2;
  }
} catch (error) {
  process.stderr.write(`node-pipe: ${error.message}\n`);
  process.exitCode = 1;
}
