/**
 * Hostile peers for the attack tests: connections from many loopback source addresses
 * (all of 127.0.0.0/8 is loopback, so each attacker can be its own "host" for the
 * receiver's per-address limits), dribbling bytes one TCP segment at a time, or idling.
 * Every attacker stops when the test says so; nothing here outlives stopAll().
 */
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { FrameType } from '../../src/framing.js';

/** The i-th attacker address: 127.0.1.1, 127.0.1.2, … (never 127.0.0.1, the good senders' address). */
export function sourceAddress(i: number): string {
  return `127.0.${1 + Math.floor(i / 250)}.${1 + (i % 250)}`;
}

/** A Header frame whose payload is exactly `payloadBytes` bytes of valid JSON (padded). */
export function paddedHeader(payloadBytes: number, fields: Record<string, unknown> = { name: 'x.bin', size: 1, hash: 'sha256' }): Buffer {
  const base = { ...fields, pad: '' };
  base.pad = 'a'.repeat(Math.max(0, payloadBytes - Buffer.byteLength(JSON.stringify(base))));
  const payload = Buffer.from(JSON.stringify(base));
  const frame = Buffer.alloc(5 + payload.length);
  frame[0] = FrameType.Header;
  frame.writeUInt32BE(payload.length, 1);
  payload.copy(frame, 5);
  return frame;
}

export interface AttackStats {
  /** Connections that got through to the receiver. */
  connects: number;
  /** Connections the receiver closed (deadline, eviction, refusal). */
  closedByReceiver: number;
  /** Bytes written, one segment each. */
  bytesSent: number;
}

export interface Attack {
  stats: AttackStats;
  /** Stops reconnecting and destroys every connection; resolves once all are closed. */
  stopAll(): Promise<void>;
}

export interface AttackPlan {
  port: number;
  /** How many connections to keep open at once (each reconnects when the receiver closes it). */
  connections: number;
  /** Source addresses to spread them over (connection i uses sourceAddress(i % addresses)). */
  addresses: number;
  /** What each connection dribbles, one byte per segment; empty: it idles. */
  bytes: Buffer;
  /** Pause between two bytes on one connection. */
  everyMs: number;
  /** Wait before reconnecting a closed connection. */
  reconnectMs?: number;
}

/**
 * Keeps `connections` hostile connections open until stopAll(): each writes `bytes` one
 * byte at a time (Nagle off, one write per tick, so one segment per byte), and reconnects
 * when the receiver hangs up, as a slowloris does.
 */
export function attack(plan: AttackPlan): Attack {
  const stats: AttackStats = { connects: 0, closedByReceiver: 0, bytesSent: 0 };
  const live = new Set<{ socket: Socket; sent: number }>();
  let running = true;
  const timers = new Set<NodeJS.Timeout>();

  const open = (i: number) => {
    if (!running) return;
    const socket = connect({ host: '127.0.0.1', port: plan.port, localAddress: sourceAddress(i % plan.addresses) });
    socket.setNoDelay(true);
    const connection = { socket, sent: 0 };
    let connected = false;
    socket.on('connect', () => {
      connected = true;
      stats.connects += 1;
      live.add(connection);
    });
    socket.on('data', () => {}); // the greeting, a refusal, an error: read and dropped
    socket.on('error', () => {});
    socket.on('close', () => {
      live.delete(connection);
      if (!running) return;
      if (connected) stats.closedByReceiver += 1;
      const timer = setTimeout(() => {
        timers.delete(timer);
        open(i);
      }, plan.reconnectMs ?? 100);
      timers.add(timer);
    });
  };

  const ticker =
    plan.bytes.length > 0
      ? setInterval(() => {
          for (const connection of live) {
            const { socket } = connection;
            // One byte in flight at a time: a byte queued behind another would share its segment.
            if (connection.sent >= plan.bytes.length || socket.destroyed || socket.writableLength > 0) continue;
            socket.write(plan.bytes.subarray(connection.sent, connection.sent + 1));
            connection.sent += 1;
            stats.bytesSent += 1;
          }
        }, plan.everyMs)
      : undefined;

  for (let i = 0; i < plan.connections; i++) open(i);

  return {
    stats,
    stopAll: async () => {
      running = false;
      clearInterval(ticker);
      for (const timer of timers) clearTimeout(timer);
      const closing = [...live].map(({ socket }) => new Promise<void>((resolve) => {
        socket.once('close', () => resolve());
        socket.destroy();
      }));
      await Promise.all(closing);
    },
  };
}

/** A process's memory from /proc: resident now, and its high-water mark, in MB. */
export function memoryOf(pid: number): { rssMB: number; peakMB: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rssMB: (kib('VmRSS') * 1024) / 1e6, peakMB: (kib('VmHWM') * 1024) / 1e6 };
}
