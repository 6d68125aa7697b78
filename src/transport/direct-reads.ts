/**
 * Reading an accepted TCP connection straight into the receiver's own buffers.
 *
 * Why: Node reads an accepted socket 64 KiB at a time into a freshly allocated buffer,
 * and that per-read work (allocation, a stream stage, a later garbage collection) was
 * most of what a receiver spent per GiB beyond the kernel's copy: measured on the 2-core
 * build machine, 1.5-2.0 CPU s/GiB for every design that takes Node's chunks, against
 * 1.1-1.2 for reads into the receiver's own file buffers, with BLAKE3 included (nc: 1.1).
 * Reads then come in at whatever the kernel has queued, 0.5-1 MiB, with no allocation.
 *
 * How: `new net.Socket({ onread })` reads into buffers the caller supplies, but only
 * sockets created that way have it; a server's accepted sockets do not. So the accepted
 * socket's handle is moved to a new Socket that has it. That takes two things Node does
 * not document: the server must be created with `pauseOnConnect` (so nothing is read
 * before the move), and the handle is taken from `socket._handle`. adopt() checks what it
 * relies on and returns undefined when it cannot (another Node, a TLS socket, a test's
 * Duplex), and the caller keeps the ordinary stream path; direct-reads.test.ts fails
 * loudly if a Node upgrade changes the ground under it.
 *
 * Two modes, switched by the reader:
 * - control: reads go into a small scratch buffer and are handed out as copies (next()),
 *   a handful of frames per connection, so a copy costs nothing; reading pauses while
 *   more than CONTROL_QUEUE_BYTES wait unread, as a stream's highWaterMark would;
 * - data (readInto): reads go straight into the regions a DataSink hands out, each bounded
 *   by the bytes of data still to come, so a read never takes in what follows the data
 *   (the trailer stays in the kernel for the control mode to read).
 */
import { Socket } from 'node:net';
import { ConnectionLostError, isFtxError } from '../errors.js';
import { CONNECTION_CLOSED, type ByteSource, type DataSink } from './byte-source.js';

/** The scratch buffer control-mode reads land in; a frame larger than it spans reads. */
const CONTROL_READ_BYTES = 64 * 1024;

/** Control-mode bytes that may wait unread before reading pauses (TCP then pushes back). */
const CONTROL_QUEUE_BYTES = 256 * 1024;

export interface DirectReadSocket {
  /** The connection, as a Socket to write to, time out, end and destroy. */
  socket: Socket;
  /** Its incoming bytes, for the Channel. */
  source: DirectReads;
}

/**
 * Moves an accepted, not yet read socket (its server created with pauseOnConnect) to a
 * Socket that reads into caller-supplied buffers. Returns undefined, leaving `socket`
 * untouched, when that is not possible.
 */
export function adoptForDirectReads(socket: Socket): DirectReadSocket | undefined {
  const internals = socket as unknown as { _handle?: { readStart?: unknown; readStop?: unknown; useUserBuffer?: unknown } | null };
  const handle = internals._handle;
  if (!handle || typeof handle.useUserBuffer !== 'function' || typeof handle.readStart !== 'function' || socket.constructor !== Socket) return undefined;
  const source = new DirectReads();
  let adopted: Socket;
  try {
    internals._handle = null; // the accepted Socket must never touch the handle again
    adopted = new Socket({
      handle: handle as never,
      readable: true,
      writable: true,
      allowHalfOpen: true,
      onread: { buffer: () => source.nextRegion(), callback: (bytes: number, buffer: Uint8Array) => source.arrived(bytes, buffer) },
    } as never);
  } catch {
    internals._handle = handle as never;
    return undefined;
  }
  socket.destroy();
  adopted.setNoDelay(true);
  source.attach(adopted);
  return { socket: adopted, source };
}

interface DataRead {
  remaining: number;
  sink: DataSink;
  resolve: () => void;
  reject: (error: unknown) => void;
  /** Bytes read into the scratch buffer that the sink had no room for yet. */
  carry: Buffer | undefined;
}

export class DirectReads implements ByteSource {
  #socket: Socket | undefined;
  readonly #scratch = Buffer.allocUnsafeSlow(CONTROL_READ_BYTES);
  readonly #queue: Buffer[] = [];
  #queuedBytes = 0;
  #ended = false;
  #error: unknown;
  #paused = false;
  #waiter: { resolve: (chunk: Buffer | null) => void; reject: (error: unknown) => void } | undefined;
  #data: DataRead | undefined;

  attach(socket: Socket): void {
    this.#socket = socket;
    socket.on('end', () => this.#finish(undefined));
    socket.on('error', (error) => this.#finish(error));
    socket.on('close', () => this.#finish(new ConnectionLostError(CONNECTION_CLOSED)));
  }

  /** The next control-mode bytes (a copy), or null at EOF. */
  next(): Promise<Buffer | null> {
    const chunk = this.#queue.shift();
    if (chunk) {
      this.#queuedBytes -= chunk.length;
      this.#resume();
      return Promise.resolve(chunk);
    }
    if (this.#error !== undefined) return Promise.reject(this.#error);
    if (this.#ended) return Promise.resolve(null);
    this.#resume();
    return new Promise((resolve, reject) => {
      this.#waiter = { resolve, reject };
    });
  }

  /** Control-mode bytes read but not yet handed out, taken all at once. */
  takeQueued(): Buffer[] {
    const queued = this.#queue.splice(0);
    this.#queuedBytes = 0;
    return queued;
  }

  /**
   * Reads exactly `byteCount` bytes into the regions `sink` hands out, then goes back to
   * control mode. The caller delivers whatever it already holds (takeQueued()) first.
   */
  readInto(byteCount: number, sink: DataSink): Promise<void> {
    if (byteCount === 0) return Promise.resolve();
    if (this.#error !== undefined) return Promise.reject(this.#error);
    if (this.#ended) return Promise.reject(new ConnectionLostError(CONNECTION_CLOSED));
    return new Promise((resolve, reject) => {
      this.#data = { remaining: byteCount, sink, resolve, reject, carry: undefined };
      this.#resume();
    });
  }

  /** Called by the socket before each read: where the bytes go. */
  nextRegion(): Uint8Array {
    const data = this.#data;
    if (data && data.remaining > 0 && !data.carry) return data.sink.region(data.remaining);
    return this.#scratch;
  }

  /** Called by the socket after each read; returning false stops reading. */
  arrived(bytes: number, buffer: Uint8Array): boolean {
    const data = this.#data;
    if (data && buffer !== this.#scratch) {
      // Straight into the sink's region: the common case, no copy.
      data.remaining -= bytes;
      return this.#filled(data, Buffer.from(buffer.buffer, buffer.byteOffset, bytes));
    }
    // Into the scratch buffer: control bytes, or the first data bytes of a transfer that
    // began while a control-mode read was pending. Copied out, since it is read into again.
    const chunk = Buffer.from(this.#scratch.subarray(0, bytes));
    if (data) return this.#feed(data, chunk);
    this.#queueControl(chunk);
    return this.#queuedBytes <= CONTROL_QUEUE_BYTES || this.#stop();
  }

  /** Copies `chunk` into the sink's regions; bytes beyond the data are control bytes. */
  #feed(data: DataRead, chunk: Buffer): boolean {
    let offset = 0;
    while (offset < chunk.length && data.remaining > 0) {
      const region = data.sink.region(Math.min(data.remaining, chunk.length - offset));
      const take = Math.min(region.length, chunk.length - offset);
      chunk.copy(region, 0, offset, offset + take);
      offset += take;
      data.remaining -= take;
      const more = this.#filled(data, region.subarray(0, take));
      if (this.#data !== data) break; // done, or failed
      if (!more) {
        data.carry = offset < chunk.length ? chunk.subarray(offset) : undefined;
        return false;
      }
    }
    if (offset < chunk.length) this.#queueControl(chunk.subarray(offset));
    return true;
  }

  /** The sink got `bytes`; settles the read when it is complete. Returns whether to read on. */
  #filled(data: DataRead, bytes: Buffer): boolean {
    let more: boolean;
    try {
      more = data.sink.filled(bytes);
    } catch (error) {
      this.#data = undefined;
      data.reject(error);
      return this.#stop();
    }
    if (data.remaining === 0) {
      this.#data = undefined;
      data.resolve();
      return true;
    }
    if (more) return true;
    // No room until a write completes: wait for it, then go on.
    data.sink.room().then(
      () => {
        if (this.#data !== data) return;
        const carry = data.carry;
        data.carry = undefined;
        if (carry && !this.#feed(data, carry)) return;
        this.#resume();
      },
      (error: unknown) => {
        if (this.#data === data) this.#data = undefined;
        data.reject(error);
      },
    );
    return this.#stop();
  }

  #queueControl(chunk: Buffer): void {
    if (this.#waiter) {
      const waiter = this.#waiter;
      this.#waiter = undefined;
      waiter.resolve(chunk);
      return;
    }
    this.#queue.push(chunk);
    this.#queuedBytes += chunk.length;
  }

  #stop(): false {
    this.#paused = true;
    return false;
  }

  #resume(): void {
    if (!this.#paused || this.#ended || this.#error !== undefined) return;
    this.#paused = false;
    this.#socket?.resume();
  }

  #finish(error: unknown): void {
    if (this.#ended || this.#error !== undefined) return;
    if (error === undefined) this.#ended = true;
    else this.#error = error;
    const waiter = this.#waiter;
    this.#waiter = undefined;
    if (waiter) {
      if (error === undefined) waiter.resolve(null);
      else waiter.reject(error);
    }
    const data = this.#data;
    this.#data = undefined;
    data?.reject(error ?? new ConnectionLostError(CONNECTION_CLOSED));
  }
}
