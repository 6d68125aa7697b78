#!/usr/bin/env node
/**
 * A deliberately slow receiver, without touching the receiver: a one-connection TCP
 * proxy that forwards sender -> receiver bytes at most RATE MB/s (receiver -> sender
 * replies pass at full speed). While it holds back, it stops reading its socket, the
 * kernel buffers fill, and the sender's writes stop draining: if the sender honours
 * backpressure its memory stays flat; if not, it buffers the file.
 *
 *   node bench/throttle-proxy.mjs --to HOST:PORT [--rate 20] [--port 0]
 * prints "listening on PORT", exits once the proxied connection has closed.
 */
import { connect, createServer } from 'node:net';
import { performance } from 'node:perf_hooks';
import { setTimeout as delay } from 'node:timers/promises';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    to: { type: 'string' },
    rate: { type: 'string', default: '20' },
    port: { type: 'string', default: '0' },
  },
});
if (!values.to || !/^.+:\d+$/.test(values.to)) {
  process.stderr.write('usage: throttle-proxy.mjs --to HOST:PORT [--rate MB/s] [--port N]\n');
  process.exit(2);
}
const colon = values.to.lastIndexOf(':');
const upstreamHost = values.to.slice(0, colon);
const upstreamPort = Number(values.to.slice(colon + 1));
const bytesPerMs = (Number(values.rate) * 1e6) / 1000;

const server = createServer((client) => {
  server.close(); // One connection is the whole job.
  const upstream = connect({ host: upstreamHost, port: upstreamPort });
  const startedAt = performance.now();
  let forwarded = 0;
  let holding = false;

  const fail = (error) => {
    process.stderr.write(`throttle-proxy: ${error.message}\n`);
    process.exitCode = 1;
    client.destroy();
    upstream.destroy();
  };
  client.on('error', fail);
  upstream.on('error', fail);
  upstream.pipe(client);

  client.on('data', async (chunk) => {
    forwarded += chunk.length;
    const drained = upstream.write(chunk);
    // How far ahead of the allowed rate we are: wait that long before reading more.
    const aheadMs = forwarded / bytesPerMs - (performance.now() - startedAt);
    if (drained && aheadMs <= 0) return;
    if (holding) return;
    holding = true;
    client.pause();
    if (!drained) await new Promise((resolve) => upstream.once('drain', resolve));
    const stillAheadMs = forwarded / bytesPerMs - (performance.now() - startedAt);
    if (stillAheadMs > 0) await delay(stillAheadMs);
    holding = false;
    if (!client.destroyed) client.resume();
  });
  client.on('end', () => upstream.end());
});

server.listen({ port: Number(values.port), host: '127.0.0.1' }, () => {
  process.stdout.write(`listening on ${server.address().port}\n`);
});
