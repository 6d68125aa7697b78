/**
 * Serve mode: a long-running receiver that stores every sender's file in one folder,
 * many at once (the tutorial's ThreadingTCPServer, as a backup box).
 *
 * Each connection runs handleConnection on its own; a failure is that connection's
 * alone. The shared state is what the policy guards: how many transfers run, which
 * target paths are being written (two senders of one name under --on-conflict refuse
 * must not both be told yes), and how much free space transfers in flight have
 * already spoken for.
 */
import type { Server, Socket } from 'node:net';
import { FtxError, InterruptedError } from './errors.js';
import { silentLog } from './log.js';
import type { Protocol } from './messages.js';
import { remoteOf } from './net.js';
import {
  handleConnection,
  type ConnectionOutcome,
  type ConnectionPolicy,
  type ReceiveOptions,
  type Refusal,
  type TransferRequest,
} from './receiver.js';
import { formatBytes } from './units.js';

export { DEFAULT_MAX_CONNS } from './serve-defaults.js';

/**
 * Per-transfer write buffer in serve mode: smaller than a one-shot receiver's, since it
 * is multiplied by the transfers in flight (see DEFAULT_WRITE_BUFFER_BYTES).
 */
const SERVE_WRITE_BUFFER_BYTES = 256 * 1024;

/** Sockets beyond this many are dropped at once, so a flood cannot exhaust memory. */
const SOCKET_SLACK = 64;

export interface ServeOptions extends Omit<ReceiveOptions, 'target' | 'onStart' | 'onProgress'> {
  folder: string;
  /** Transfers in flight at once; more senders are refused as busy. */
  maxConns: number;
  onTransferStart?: (transfer: TransferInfo) => void;
  onTransferProgress?: (id: number, bytesReceived: number) => void;
  /** Every connection ends here: a file stored, a ping, a silent probe, or an error. */
  onConnectionEnd?: (id: number, peer: string, outcome: ConnectionOutcome | { kind: 'error'; error: FtxError }) => void;
}

export interface TransferInfo {
  id: number;
  peer: string;
  name: string;
  path: string;
  size: number;
  protocol: Protocol;
}

interface LiveConnection {
  socket: Socket;
  /** Cuts this connection, telling the peer why. */
  abort: AbortController;
  handled: Promise<void>;
  /** True once a file was accepted on it: shutdown lets these finish. */
  transferring: boolean;
}

export class ServeReceiver {
  readonly #server: Server;
  readonly #options: ServeOptions;
  readonly #connections = new Map<number, LiveConnection>();
  /** Target path -> transfers writing it (more than one only with rename/overwrite). */
  readonly #pathsInFlight = new Map<string, number>();
  #reservedBytes = 0;
  #transfers = 0;
  #nextId = 1;
  #stopping = false;

  constructor(server: Server, options: ServeOptions) {
    this.#server = server;
    this.#options = options;
    server.maxConnections = options.maxConns + SOCKET_SLACK;
    server.on('connection', (socket) => this.#accept(socket));
  }

  /** Transfers in flight now. */
  get activeTransfers(): number {
    return this.#transfers;
  }

  /**
   * Stops accepting, lets transfers in flight finish for up to `graceMs`, then cuts
   * the rest (their partial files are removed). Resolves with how many were cut.
   * Calling it again with a shorter grace cuts sooner.
   */
  async shutdown(graceMs: number, reason = new InterruptedError('the receiver is shutting down')): Promise<number> {
    this.#stopping = true;
    this.#server.close();
    // Connections that carry no file yet (waiting for a header, a ping) go at once.
    for (const connection of this.#connections.values()) {
      if (!connection.transferring) connection.abort.abort(reason);
    }
    const inFlight = () => [...this.#connections.values()].map((connection) => connection.handled);
    let timer: NodeJS.Timeout | undefined;
    const graceOver = new Promise<'grace-over'>((resolve) => {
      timer = setTimeout(() => resolve('grace-over'), graceMs);
    });
    const finished = await Promise.race([Promise.allSettled(inFlight()).then(() => 'finished' as const), graceOver]);
    clearTimeout(timer);
    if (finished === 'finished') return 0;
    const cut = [...this.#connections.values()].filter((connection) => connection.transferring);
    for (const connection of cut) connection.abort.abort(reason);
    await Promise.allSettled(inFlight());
    return cut.length;
  }

  #accept(socket: Socket): void {
    const log = this.#options.log ?? silentLog;
    if (this.#stopping) {
      socket.destroy();
      return;
    }
    const id = this.#nextId++;
    const peer = remoteOf(socket);
    const live: LiveConnection = { socket, abort: new AbortController(), handled: Promise.resolve(), transferring: false };
    this.#connections.set(id, live);
    log.debug({ id, peer }, 'connection');

    const options: ReceiveOptions = {
      writeBufferBytes: SERVE_WRITE_BUFFER_BYTES,
      ...this.#options,
      target: this.#options.folder,
      signal: live.abort.signal,
      onStart: (transfer) => {
        live.transferring = true;
        this.#options.onTransferStart?.({ ...transfer, id });
      },
      onProgress: (bytes) => this.#options.onTransferProgress?.(id, bytes),
    };
    live.handled = handleConnection(socket, options, this.#policy()).then(
      (outcome) => this.#options.onConnectionEnd?.(id, peer, outcome),
      (error: unknown) => this.#options.onConnectionEnd?.(id, peer, { kind: 'error', error: error as FtxError }),
    ).finally(() => {
      this.#connections.delete(id);
    });
  }

  /** One policy per connection, all sharing the receiver's counters. */
  #policy(): ConnectionPolicy {
    return {
      claim: (request: TransferRequest): Refusal | undefined => {
        if (this.#stopping) return { reason: 'busy', message: 'the receiver is shutting down; try again later' };
        if (this.#transfers >= this.#options.maxConns) {
          return { reason: 'busy', message: `the receiver is busy (${this.#transfers} transfers in progress, its limit); try again later` };
        }
        if (this.#pathsInFlight.has(request.path) && this.#options.onConflict === 'refuse') {
          return { reason: 'exists', message: `a file named ${request.path} is being received right now; send under another name (--name)` };
        }
        // Conservative: statfs already excludes what transfers in flight have written so far.
        if (request.freeBytes !== undefined && request.size + this.#reservedBytes > request.freeBytes) {
          return {
            reason: 'no-space',
            message: `not enough free space for ${formatBytes(request.size)} on the receiver once the transfers in flight are stored (${formatBytes(request.freeBytes - this.#reservedBytes)} left)`,
          };
        }
        this.#transfers += 1;
        this.#reservedBytes += request.size;
        this.#pathsInFlight.set(request.path, (this.#pathsInFlight.get(request.path) ?? 0) + 1);
        return undefined;
      },
      release: (request: TransferRequest) => {
        this.#transfers -= 1;
        this.#reservedBytes -= request.size;
        const writers = (this.#pathsInFlight.get(request.path) ?? 1) - 1;
        if (writers > 0) this.#pathsInFlight.set(request.path, writers);
        else this.#pathsInFlight.delete(request.path);
      },
    };
  }
}
