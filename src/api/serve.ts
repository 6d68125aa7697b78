/**
 * Serve mode: a long-running receiver that stores every sender's file in one folder,
 * many at once (the tutorial's ThreadingTCPServer, as a backup box).
 *
 * Each connection runs handleConnection on its own; a failure is that connection's
 * alone. The shared state is what the policy guards:
 * - admission (admission.ts): connections per host, and a capped pool of connections
 *   still in their handshake, from which the oldest of the busiest host is dropped when
 *   a newcomer needs room; connections that have not sent a header never take a
 *   transfer slot;
 * - transfers in flight, in all and per host, so one address cannot take every slot;
 * - target paths being written (two senders of one name under --on-conflict refuse
 *   must not both be told yes, and rename must not pick the same free name twice);
 * - free space: each transfer in flight reserves only what it has still to write
 *   (statfs already counts what it wrote), so nothing is counted twice.
 */
import type { Server, Socket } from 'node:net';
import { adjustCount, Admission, DEFAULT_MAX_PENDING, DEFAULT_PER_HOST_CONNECTIONS, type Ticket } from '../transport/admission.js';
import { FtxError, InterruptedError, TimeoutError } from '../errors.js';
import { silentLog } from '../util/log.js';
import type { Protocol } from '../protocol/messages.js';
import { remoteOf } from '../transport/tcp.js';
import {
  handleConnection,
  refuseConnection,
  type ConnectionOutcome,
  type ConnectionPolicy,
  type ReceiveOptions,
  type Refusal,
  type TransferRequest,
} from '../receiver.js';
import { foldsCase } from '../fs/case-folding.js';
import { caseFoldKey } from '../fs/names.js';
import { removeStaleLeftovers, type Leftover } from '../fs/staged-file.js';
import { formatBytes } from '../util/units.js';

export { DEFAULT_MAX_CONNS } from '../defaults.js';

/** Transfers in flight at once from one host. */
export const DEFAULT_PER_HOST_TRANSFERS = 8;

/** How often serve mode looks for stale temporary files once running. */
const STALE_SWEEP_EVERY_MS = 60 * 60 * 1000;

/**
 * Per-transfer write buffer in serve mode: smaller than a one-shot receiver's, since it
 * is multiplied by the transfers in flight (see DEFAULT_WRITE_BUFFER_BYTES).
 */
const SERVE_WRITE_BUFFER_BYTES = 256 * 1024;

/** Room for connections being refused or closing, beyond transfers and the pending pool. */
const SOCKET_SLACK = 256;

export interface ServeOptions extends Omit<ReceiveOptions, 'target' | 'onStart' | 'onProgress' | 'onOpened'> {
  folder: string;
  /** Transfers in flight at once; more senders are refused as busy. */
  maxConns: number;
  /** Connections at once from one host, handshaking or transferring (default 16). */
  perHostConnections?: number;
  /** Transfers in flight at once from one host (default 8). */
  perHostTransfers?: number;
  /** Connections still in their handshake, all hosts together (default 128). */
  maxPending?: number;
  /** Temporary files older than this are removed, now and every hour; 0 keeps them. */
  partialMaxAgeMs?: number;
  onTransferStart?: (transfer: TransferInfo) => void;
  onTransferProgress?: (id: number, bytesReceived: number) => void;
  /**
   * Every connection ends here: a file stored, a ping, a silent probe, or an error
   * (`transferring` tells whether its file had been accepted). Whatever this throws is
   * logged, never left to crash the receiver.
   */
  onConnectionEnd?: (id: number, peer: string, outcome: ConnectionOutcome | { kind: 'error'; error: FtxError; transferring: boolean }) => void;
  /** A connection turned away before its conversation (its host is over its share). */
  onConnectionRefused?: (peer: string, message: string) => void;
  /** Stale temporary files removed by the periodic sweep. */
  onStaleRemoved?: (removed: Leftover[]) => void;
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
  readonly #admission: Admission;
  readonly #connections = new Map<number, LiveConnection>();
  /** Transfers in flight (each knows what it still has to write), with the key of their path. */
  readonly #inFlight = new Map<TransferRequest, string>();
  /** Target path -> transfers writing it (more than one only under overwrite). */
  readonly #pathsInFlight = new Map<string, number>();
  /** Host -> transfers in flight from it. */
  readonly #transfersPerHost = new Map<string, number>();
  readonly #sweeper: NodeJS.Timeout | undefined;
  /** Whether the folder treats "A.txt" and "a.txt" as one file: names in flight are then keyed by their fold. */
  #foldsCase = false;
  #nextId = 1;
  #stopping = false;

  constructor(server: Server, options: ServeOptions) {
    this.#server = server;
    this.#options = options;
    this.#admission = new Admission({
      perHostConnections: options.perHostConnections ?? DEFAULT_PER_HOST_CONNECTIONS,
      maxPending: options.maxPending ?? DEFAULT_MAX_PENDING,
    });
    // A hard bound on sockets (file descriptors), above what admission lets in.
    server.maxConnections = options.maxConns + (options.maxPending ?? DEFAULT_MAX_PENDING) + SOCKET_SLACK;
    server.on('connection', (socket) => this.#accept(socket));
    // Accept errors (EMFILE: out of file descriptors) are the moment's, not fatal: without
    // a listener the process would crash; with one, the server keeps listening.
    server.on('error', (error: NodeJS.ErrnoException) => {
      (options.log ?? silentLog).warn({ event: 'accept-error', code: error.code }, `could not accept a connection (${error.code ?? error.message}); still serving`);
    });
    void foldsCase(options.folder).then((folds) => {
      this.#foldsCase = folds;
    });
    const maxAgeMs = options.partialMaxAgeMs ?? 0;
    if (maxAgeMs > 0) {
      this.#sweeper = setInterval(() => void this.#sweep(maxAgeMs), STALE_SWEEP_EVERY_MS);
      this.#sweeper.unref();
    }
  }

  /** Transfers in flight now. */
  get activeTransfers(): number {
    return this.#inFlight.size;
  }

  /**
   * Stops accepting, lets transfers in flight finish for up to `graceMs`, then cuts
   * the rest (their partial files are removed). Resolves with how many were cut.
   * Calling it again with a shorter grace cuts sooner.
   */
  async shutdown(graceMs: number, reason = new InterruptedError('the receiver is shutting down')): Promise<number> {
    this.#stopping = true;
    clearInterval(this.#sweeper);
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

  async #sweep(maxAgeMs: number): Promise<void> {
    const { removed } = await removeStaleLeftovers(this.#options.folder, maxAgeMs);
    if (removed.length > 0) this.#notify(() => this.#options.onStaleRemoved?.(removed));
  }

  #accept(socket: Socket): void {
    const log = this.#options.log ?? silentLog;
    if (this.#stopping) {
      socket.destroy();
      return;
    }
    const peer = remoteOf(socket);
    const live: LiveConnection = { socket, abort: new AbortController(), handled: Promise.resolve(), transferring: false };
    const ticket = this.#admission.admit(socket.remoteAddress ?? 'unknown', () =>
      live.abort.abort(new TimeoutError('too many connections are waiting to send their header; this one was the oldest from the busiest address, and was dropped')),
    );
    if (!ticket) {
      const limit = this.#options.perHostConnections ?? DEFAULT_PER_HOST_CONNECTIONS;
      const message = `too many connections from your address (${limit} at once); try again when some have finished`;
      refuseConnection(socket, 'busy', message);
      this.#notify(() => this.#options.onConnectionRefused?.(peer, message));
      return;
    }
    const id = this.#nextId++;
    this.#connections.set(id, live);
    log.debug({ id, peer }, 'connection');

    const options: ReceiveOptions = {
      writeBufferBytes: SERVE_WRITE_BUFFER_BYTES,
      ...this.#options,
      target: this.#options.folder,
      signal: live.abort.signal,
      onOpened: () => ticket.opened(),
      onStart: (transfer) => {
        live.transferring = true;
        this.#notify(() => this.#options.onTransferStart?.({ ...transfer, id }));
      },
      onProgress: (bytes) => this.#options.onTransferProgress?.(id, bytes),
    };
    live.handled = handleConnection(socket, options, this.#policy(ticket)).then(
      (outcome) => this.#notify(() => this.#options.onConnectionEnd?.(id, peer, outcome)),
      (error: unknown) => this.#notify(() => this.#options.onConnectionEnd?.(id, peer, { kind: 'error', error: error as FtxError, transferring: live.transferring })),
    ).finally(() => {
      ticket.release();
      this.#connections.delete(id);
    });
  }

  /** Runs a caller's callback; what it throws is logged, not left to crash the process. */
  #notify(callback: () => void): void {
    try {
      callback();
    } catch (error) {
      (this.#options.log ?? silentLog).error({ event: 'callback-error', cause: String(error) }, `a serve-mode callback failed: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  /** One policy per connection, all sharing the receiver's counters. */
  #policy(ticket: Ticket): ConnectionPolicy {
    const host = ticket.host;
    return {
      claim: (request: TransferRequest): Refusal | undefined => {
        if (this.#stopping) return { reason: 'busy', message: 'the receiver is shutting down; try again later' };
        if (this.#inFlight.size >= this.#options.maxConns) {
          return { reason: 'busy', message: `the receiver is busy (${this.#inFlight.size} transfers in progress, its limit); try again later` };
        }
        const perHost = this.#options.perHostTransfers ?? DEFAULT_PER_HOST_TRANSFERS;
        if ((this.#transfersPerHost.get(host) ?? 0) >= perHost) {
          return { reason: 'busy', message: `your address already has ${perHost} transfers in progress, its limit; try again when one has finished` };
        }
        const pathKey = this.#pathKey(request.path);
        if (this.#pathsInFlight.has(pathKey) && this.#options.onConflict !== 'overwrite') {
          return { reason: 'exists', message: 'a file of that name is being received right now; send under another name (--name)' };
        }
        if (request.freeBytes !== undefined && request.size + this.#stillToWrite() > request.freeBytes) {
          return { reason: 'no-space', message: `not enough free space on the receiver for ${formatBytes(request.size)} besides the transfers in progress; try again later` };
        }
        this.#inFlight.set(request, pathKey);
        adjustCount(this.#transfersPerHost, host, +1);
        adjustCount(this.#pathsInFlight, pathKey, +1);
        return undefined;
      },
      release: (request: TransferRequest) => {
        const pathKey = this.#inFlight.get(request);
        if (pathKey === undefined) return;
        this.#inFlight.delete(request);
        adjustCount(this.#transfersPerHost, host, -1);
        adjustCount(this.#pathsInFlight, pathKey, -1);
      },
      isInFlight: (path) => this.#pathsInFlight.has(this.#pathKey(path)),
    };
  }

  /** How a target path is known among those in flight: by its case fold where the folder folds case. */
  #pathKey(path: string): string {
    return this.#foldsCase ? caseFoldKey(path) : path;
  }

  /** Bytes the transfers in flight have still to write: what free space must keep for them. */
  #stillToWrite(): number {
    let bytes = 0;
    for (const request of this.#inFlight.keys()) bytes += Math.max(0, request.size - request.bytesWritten());
    return bytes;
  }
}
