/**
 * serve(): a long-running receiver that stores every sender's file in one folder, many
 * at once (the tutorial's ThreadingTCPServer, as a backup box). The handle owns the
 * listening socket and every connection; close() drains and stops.
 *
 * Each connection runs receiveConnection on its own; a failure is that connection's
 * alone. The shared state is what the policy guards:
 * - admission (transport/admission.ts): connections per host, and a capped pool of
 *   connections still in their handshake, from which the oldest of the busiest host is
 *   dropped when a newcomer needs room; connections that have not sent a header never
 *   take a transfer slot;
 * - transfers in flight, in all and per host, so one address cannot take every slot;
 * - target paths being written (two senders of one name under 'refuse' must not both be
 *   told yes, and 'rename' must not pick the same free name twice), by their case fold
 *   where the folder folds case;
 * - free space: each transfer in flight reserves only what it has still to write
 *   (statfs already counts what it wrote), so nothing is counted twice.
 */
import { lstat, mkdir, stat } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { countTree } from '../fs/walk.js';
import type { Server, Socket } from 'node:net';
import { DEFAULT_GRACE_MS, DEFAULT_MAX_PENDING, DEFAULT_MAX_TRANSFERS, DEFAULT_PARTIAL_MAX_AGE_MS, DEFAULT_PER_HOST_TRANSFERS, DEFAULT_PORT } from '../defaults.js';
import { InterruptedError, LocalIoError, localIoError, TimeoutError, UsageError, type FtxError } from '../errors.js';
import { AuthThrottle } from '../transport/auth-throttle.js';
import { foldsCase } from '../fs/case-folding.js';
import { caseFoldKey } from '../fs/names.js';
import { refuseConnection } from '../handshake.js';
import type { Protocol } from '../protocol/messages.js';
import { receiveConnection, type ConnectionOptions, type ReceivedFile } from '../receiver.js';
import type { EntryOutcome } from '../session/receive-session.js';
import { sessionFailure } from '../session/verdict.js';
import type { ConnectionPolicy, Refusal, TransferRequest } from '../session/policy.js';
import { adjustCount, Admission, hostKey, type Ticket } from '../transport/admission.js';
import { KeyCheckError } from '../transport/tls.js';
import { addressesToAnnounce, formatHostPort, listen, remoteOf } from '../transport/tcp.js';
import { silentLog, type Log } from '../util/log.js';
import { whenAborted, within } from '../util/timers.js';
import { formatBytes, plural } from '../util/units.js';
import { validateCount, validateTimeout } from './options.js';
import { connectionOptions, partialCallbacks, perHostConnections, requireWritable, sweepLeftovers, takeConnection, type ReceivingOptions } from './receiving.js';

/** How often serve mode looks for stale temporary files once running. */
const STALE_SWEEP_EVERY_MS = 60 * 60 * 1000;

/**
 * Each of a transfer's two file buffers in serve mode: smaller than a one-shot
 * receiver's (DEFAULT_FILE_BUFFER_BYTES), since it is multiplied by the transfers in flight.
 */
const SERVE_FILE_BUFFER_BYTES = 512 * 1024;

/** Room for connections being refused or closing, beyond transfers and the pending pool. */
const SOCKET_SLACK = 256;

export interface ServeOptions extends ReceivingOptions {
  /** The folder every file is stored in, under the name its sender gives. */
  folder: string;
  /** Transfers in flight at once; more senders are refused as busy (default 64). */
  maxTransfers?: number | undefined;
  /** Transfers in flight at once from one host (default 8). */
  perHostTransfers?: number | undefined;
  /** Connections still in their handshake, all hosts together; beyond it the oldest of the busiest host is dropped (default 128). */
  maxPending?: number | undefined;
  /** A file was accepted; its bytes are coming. */
  onTransferStart?: ((transfer: TransferInfo) => void) | undefined;
  /** A transfer's bytes arrive. */
  onTransferProgress?: ((progress: { id: number; bytes: number; total: number }) => void) | undefined;
  /** A session's entry is done (stored, refused or failed). */
  onEntry?: ((entry: EntryOutcome & { peer: string; id: number }) => void) | undefined;
  /** A file is stored: complete, verified, durable under `path`; or a session has ended (see its `session` counts: some entries may have failed). */
  onTransferDone?: ((transfer: ReceivedFile & { id: number }) => void) | undefined;
  /** A sender's file was refused, or its transfer failed (`accepted`: after its Accept; its partial file was kept to resume, or removed). */
  onTransferFailed?: ((failure: { id: number; peer: string; error: FtxError; accepted: boolean; identity?: string | undefined }) => void) | undefined;
  /** A connection that brought no file: a ping, a silent probe, or one dropped before its header (garbage, too slow, too many from its address). */
  onConnection?: ((event: ConnectionEvent) => void) | undefined;
}

export interface TransferInfo {
  id: number;
  peer: string;
  /** The name the sender gave. */
  name: string;
  /** Where it is being stored. */
  path: string;
  size: number;
  protocol: Protocol;
  /** A session (files and folders): its entries, when its sender knows; `name` is then empty and `path` the served folder. */
  entries?: number | null | undefined;
  /** With `keys`: the sender's identity (it writes under `folder/<identity>/`). */
  identity?: string | undefined;
}

export type ConnectionEvent =
  | { kind: 'ping'; id: number; peer: string; message: string }
  | { kind: 'silent'; id: number; peer: string }
  /** Dropped before its header: garbage, a handshake timeout, evicted for a newer connection. */
  | { kind: 'dropped'; id: number; peer: string; error: FtxError }
  /** Turned away on arrival: its host already has its share of connections. */
  | { kind: 'turned-away'; peer: string; message: string };

export interface ServeHandle {
  /** The port it listens on (the one chosen, when asked for port 0). */
  readonly port: number;
  /** The address it listens on ('::' for every interface). */
  readonly address: string;
  /** What a sender on another machine can connect to: "192.0.2.2:9999", "[fd00::2]:9999" (this machine's addresses when listening on all of them). */
  readonly endpoints: string[];
  /** Transfers in flight now. */
  readonly activeTransfers: number;
  /**
   * Stops accepting, lets transfers in flight finish for up to `graceMs` (default 30 s;
   * 0: cut them now), then cuts the rest (their partial files kept to resume, or removed). Resolves with
   * how many were cut. Calling it again with a shorter grace cuts sooner; every call
   * resolves with the same count once all is closed.
   */
  close(options?: { graceMs?: number }): Promise<{ cut: number }>;
}

/** Starts serving `folder`. Resolves once listening. */
export async function serve(options: ServeOptions): Promise<ServeHandle> {
  options.signal?.throwIfAborted();
  // Every option is checked before anything is opened.
  connectionOptions(options.folder, options);
  const stats = await stat(options.folder).catch((error: unknown) => {
    throw localIoError(error, 'serve into', options.folder);
  });
  if (!stats.isDirectory()) throw new UsageError(`serving needs a folder to store files in; ${options.folder} is not one`);
  await requireWritable(options.folder);
  if (options.maxTransfers !== undefined) validateCount('maxTransfers', options.maxTransfers);
  if (options.perHostTransfers !== undefined) validateCount('perHostTransfers', options.perHostTransfers);
  if (options.maxPending !== undefined) validateCount('maxPending', options.maxPending);
  const folds = await foldsCase(options.folder);
  await sweepLeftovers(options.folder, options, true).catch(() => {});
  const server = await listen(options.port ?? DEFAULT_PORT, options.host);
  const receiver = new ServeReceiver(server, options, folds);
  const stopListening = whenAborted(options.signal, () => void receiver.shutdown(0));
  const { address, port } = server.address() as { address: string; port: number };
  return {
    port,
    address,
    endpoints: addressesToAnnounce(address).map((host) => formatHostPort({ host, port })),
    get activeTransfers() {
      return receiver.activeTransfers;
    },
    close: async (closing = {}) => {
      const cut = await receiver.shutdown(validateTimeout('graceMs', closing.graceMs ?? DEFAULT_GRACE_MS));
      stopListening();
      return { cut };
    },
  };
}

interface LiveConnection {
  socket: Socket;
  /** Cuts this connection, telling the peer why. */
  abort: AbortController;
  handled: Promise<void>;
  /** Its header is in: a failure from here is a transfer's, not a stray connection's. */
  opened: boolean;
  /** Its file was accepted: shutdown lets these finish. */
  transferring: boolean;
  /** Who it is, once it proved a key. */
  identity?: string | undefined;
}

/** The receiver behind serve(), exported for tests that drive its server directly. */
export class ServeReceiver {
  readonly #server: Server;
  readonly #options: ServeOptions;
  readonly #perConnection: Omit<ConnectionOptions, 'signal' | 'onOpened' | 'onStart' | 'onProgress'>;
  readonly #log: Log;
  readonly #admission: Admission;
  readonly #throttle = new AuthThrottle();
  /** With keys: the identities that have a quota (bytes), and what each has stored. */
  readonly #quotas = new Map<string, number>();
  readonly #stored = new Map<string, number>();
  readonly #connections = new Map<number, LiveConnection>();
  /** Transfer slots held: a file (protocol 1) or a session (protocol 2) each. */
  #slots = 0;
  /** Files being written (each knows what it still has to write), with the key of their path. */
  readonly #inFlight = new Map<TransferRequest, string>();
  /** Target path key -> transfers writing it (more than one only under overwrite). */
  readonly #pathsInFlight = new Map<string, number>();
  /** Host -> transfers in flight from it. */
  readonly #transfersPerHost = new Map<string, number>();
  readonly #sweeper: NodeJS.Timeout | undefined;
  /** Whether the folder treats "A.txt" and "a.txt" as one file: names in flight are then keyed by their fold. */
  readonly #foldsCase: boolean;
  #nextId = 1;
  #stopping = false;
  /** Transfers cut by shutdown(), whichever call cut them. */
  #cut = 0;

  constructor(server: Server, options: ServeOptions, foldsCase: boolean) {
    this.#server = server;
    this.#options = options;
    this.#perConnection = connectionOptions(options.folder, options);
    // Each identity writes under its own folder: one sender can never replace, rename
    // over or squat another's files, whatever the conflict policy.
    const auth = this.#perConnection.auth;
    if (auth) {
      for (const key of auth.keys.values()) {
        if (key.quota !== undefined) this.#quotas.set(key.identity, Math.min(key.quota, this.#quotas.get(key.identity) ?? Number.POSITIVE_INFINITY));
      }
      auth.targetFor = async (identity) => {
        const folder = await identityFolder(options.folder, identity);
        const quota = this.#quotas.get(identity);
        if (quota === undefined) return { target: folder };
        // What the identity has stored: measured once a run (at its first connection), then
        // kept up to date as its files are committed.
        if (!this.#stored.has(identity)) this.#stored.set(identity, (await countTree([folder])).bytes);
        const room = Math.max(0, quota - (this.#stored.get(identity) ?? 0) - this.#inFlightOf(identity));
        return { target: folder, streamLimit: { bytes: room, why: `what the quota of ${JSON.stringify(identity)} (${formatBytes(quota)}) leaves (${formatBytes(room)})` } };
      };
    }
    this.#log = options.log ?? silentLog;
    this.#foldsCase = foldsCase;
    const maxPending = options.maxPending ?? DEFAULT_MAX_PENDING;
    this.#admission = new Admission({ perHostConnections: perHostConnections(options), maxPending });
    // A hard bound on sockets (file descriptors), above what admission lets in.
    server.maxConnections = (options.maxTransfers ?? DEFAULT_MAX_TRANSFERS) + maxPending + SOCKET_SLACK;
    server.on('connection', (socket) => this.#accept(socket));
    // Accept errors (EMFILE: out of file descriptors) are the moment's, not fatal: without
    // a listener the process would crash; with one, the server keeps listening.
    server.on('error', (error: NodeJS.ErrnoException) => {
      this.#log.warn({ event: 'accept-error', code: error.code }, `could not accept a connection (${error.code ?? error.message}); still serving`);
    });
    const maxAgeMs = options.partialMaxAgeMs ?? DEFAULT_PARTIAL_MAX_AGE_MS;
    if (maxAgeMs > 0) {
      this.#sweeper = setInterval(() => void sweepLeftovers(options.folder, options, true).catch(() => {}), STALE_SWEEP_EVERY_MS);
      this.#sweeper.unref();
    }
  }

  get activeTransfers(): number {
    return this.#slots;
  }

  async shutdown(graceMs: number, reason = new InterruptedError('the receiver is shutting down')): Promise<number> {
    this.#stopping = true;
    clearInterval(this.#sweeper);
    this.#server.close();
    // Connections that carry no file yet (waiting for a header, a ping) go at once.
    for (const connection of this.#connections.values()) {
      if (!connection.transferring) connection.abort.abort(reason);
    }
    const inFlight = () => [...this.#connections.values()].map((connection) => connection.handled);
    const finished = await within(Promise.allSettled(inFlight()).then(() => 'finished' as const), graceMs, () => 'grace over' as const);
    if (finished === 'grace over') {
      for (const connection of this.#connections.values()) {
        if (!connection.transferring || connection.abort.signal.aborted) continue;
        this.#cut += 1;
        connection.abort.abort(reason);
      }
      await Promise.allSettled(inFlight());
    }
    return this.#cut;
  }

  #accept(socket: Socket): void {
    if (this.#stopping) {
      socket.destroy();
      return;
    }
    const peer = remoteOf(socket);
    const live: LiveConnection = { socket, abort: new AbortController(), handled: Promise.resolve(), opened: false, transferring: false };
    // Counted by host, as admission does: an IPv6 host has a whole /64 to pick addresses from.
    const address = hostKey(socket.remoteAddress ?? 'unknown');
    const blockedMs = this.#perConnection.auth ? this.#throttle.blockedFor(address) : 0;
    if (blockedMs > 0) {
      const message = `too many failed key checks from your address; try again in ${Math.ceil(blockedMs / 1000)} s`;
      refuseConnection(socket, 'busy', message, { keyed: true });
      this.#notify(() => this.#options.onConnection?.({ kind: 'turned-away', peer, message }));
      return;
    }
    const ticket = this.#admission.admit(socket.remoteAddress ?? 'unknown', () =>
      live.abort.abort(new TimeoutError('too many connections are waiting to send their header; this one was the oldest from the busiest address, and was dropped')),
    );
    if (!ticket) {
      const limit = perHostConnections(this.#options);
      const message = `too many connections from your address (${limit} at once); try again when some have finished`;
      refuseConnection(socket, 'busy', message, { keyed: this.#perConnection.auth !== undefined });
      this.#notify(() => this.#options.onConnection?.({ kind: 'turned-away', peer, message }));
      return;
    }
    const taken = takeConnection(socket, this.#perConnection.auth !== undefined);
    live.socket = taken.socket;
    const id = this.#nextId++;
    this.#connections.set(id, live);
    this.#log.debug({ id, peer, direct: taken.source !== undefined }, 'connection');
    let total = 0;
    const options: ConnectionOptions = {
      fileBufferBytes: SERVE_FILE_BUFFER_BYTES,
      ...this.#perConnection,
      ...(taken.source ? { source: taken.source } : {}),
      signal: live.abort.signal,
      onOpened: () => {
        live.opened = true;
        ticket.opened();
      },
      onIdentity: (identity) => {
        live.identity = identity;
        this.#throttle.succeeded(address);
      },
      onStart: (transfer) => {
        live.transferring = true;
        total = transfer.size;
        this.#notify(() => this.#options.onTransferStart?.({ ...transfer, id, identity: live.identity }));
      },
      onProgress: this.#options.onTransferProgress && ((bytes) => this.#notify(() => this.#options.onTransferProgress?.({ id, bytes, total }))),
      foldsCase: this.#foldsCase,
      onSession: (session) => {
        live.transferring = true;
        total = session.bytes ?? 0;
        this.#notify(() =>
          this.#options.onTransferStart?.({ id, peer, name: '', path: this.#options.folder, size: total, protocol: 'ftx', entries: session.entries, identity: live.identity }),
        );
      },
      onEntry: this.#options.onEntry && ((entry) => this.#notify(() => this.#options.onEntry?.({ ...entry, peer, id }))),
      ...partialCallbacks(this.#options, peer, (call) => this.#notify(call)),
    };
    live.handled = receiveConnection(live.socket, options, this.#policy(ticket))
      .then(
        (outcome) => {
          if (outcome.kind === 'session' && outcome.result.session.entries === 1) {
            // One file in a session: reported as protocol 1's transfers are.
            const failure = sessionFailure(outcome.result.session);
            if (failure) {
              this.#notify(() => this.#options.onTransferFailed?.({ id, peer, error: failure, accepted: live.transferring, identity: live.identity }));
              return;
            }
          }
          if (outcome.kind === 'file' || outcome.kind === 'session') this.#notify(() => this.#options.onTransferDone?.({ ...outcome.result, id }));
          else if (outcome.kind === 'ping') this.#notify(() => this.#options.onConnection?.({ kind: 'ping', id, peer, message: outcome.message }));
          else this.#notify(() => this.#options.onConnection?.({ kind: 'silent', id, peer }));
        },
        (error: unknown) => {
          const failure = error as FtxError;
          // A failed key check (not a keyless sender saying so): one more guess from that address.
          if (failure instanceof KeyCheckError) this.#throttle.failed(address);
          if (live.opened) this.#notify(() => this.#options.onTransferFailed?.({ id, peer, error: failure, accepted: live.transferring, identity: live.identity }));
          else this.#notify(() => this.#options.onConnection?.({ kind: 'dropped', id, peer, error: failure }));
        },
      )
      .finally(() => {
        ticket.release();
        this.#connections.delete(id);
      });
  }

  /** Runs a caller's callback; what it throws is logged, not left to crash the process. */
  #notify(callback: () => void): void {
    try {
      callback();
    } catch (error) {
      this.#log.error({ event: 'callback-error', cause: String(error) }, `a serve-mode callback failed: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  /** One policy per connection, all sharing the receiver's counters. */
  #policy(ticket: Ticket): ConnectionPolicy {
    const host = ticket.host;
    const maxTransfers = this.#options.maxTransfers ?? DEFAULT_MAX_TRANSFERS;
    const perHost = this.#options.perHostTransfers ?? DEFAULT_PER_HOST_TRANSFERS;
    let holdsSlot = false;
    return {
      claimSlot: (): Refusal | undefined => {
        if (this.#stopping) return { reason: 'busy', message: 'the receiver is shutting down; try again later' };
        if (this.#slots >= maxTransfers) {
          return { reason: 'busy', message: `the receiver is busy (${plural(this.#slots, 'transfer')} in progress, its limit); try again later` };
        }
        if ((this.#transfersPerHost.get(host) ?? 0) >= perHost) {
          return { reason: 'busy', message: `your address already has ${plural(perHost, 'transfer')} in progress, its limit; try again when one has finished` };
        }
        holdsSlot = true;
        this.#slots += 1;
        adjustCount(this.#transfersPerHost, host, +1);
        return undefined;
      },
      releaseSlot: () => {
        if (!holdsSlot) return;
        holdsSlot = false;
        this.#slots -= 1;
        adjustCount(this.#transfersPerHost, host, -1);
      },
      claim: (request: TransferRequest): Refusal | undefined => {
        const pathKey = this.#pathKey(request.path);
        if (this.#pathsInFlight.has(pathKey) && this.#perConnection.onConflict !== 'overwrite') {
          return { reason: 'exists', message: 'a file of that name is being received right now' };
        }
        // A resumed file's kept bytes are on the disk already: only the rest needs room.
        if (request.freeBytes !== undefined && request.size - (request.held ?? 0) + this.#stillToWrite() > request.freeBytes) {
          return { reason: 'no-space', message: `not enough free space on the receiver for ${formatBytes(request.size)} besides the transfers in progress; try again later` };
        }
        const overQuota = this.#overQuota(request);
        if (overQuota) return overQuota;
        this.#inFlight.set(request, pathKey);
        adjustCount(this.#pathsInFlight, pathKey, +1);
        return undefined;
      },
      release: (request: TransferRequest) => {
        const pathKey = this.#inFlight.get(request);
        if (pathKey === undefined) return;
        this.#inFlight.delete(request);
        const identity = this.#identityOf(request.path);
        if (request.committed && identity !== undefined && this.#stored.has(identity)) {
          this.#stored.set(identity, (this.#stored.get(identity) ?? 0) + Math.max(request.size, request.bytesWritten()));
        }
        adjustCount(this.#pathsInFlight, pathKey, -1);
      },
      isInFlight: (path) => this.#pathsInFlight.has(this.#pathKey(path)),
    };
  }

  /** The identity whose folder `path` is in (keys only). */
  #identityOf(path: string): string | undefined {
    if (this.#quotas.size === 0) return undefined;
    const inside = relative(this.#options.folder, path);
    const first = inside.split(sep)[0];
    return first === undefined || first === '' || first === '..' ? undefined : first;
  }

  /** Bytes `identity`'s transfers in flight will add (committed ones count once released). */
  #inFlightOf(identity: string): number {
    let bytes = 0;
    for (const request of this.#inFlight.keys()) if (this.#identityOf(request.path) === identity) bytes += Math.max(request.size, request.bytesWritten());
    return bytes;
  }

  /** A refusal if storing `request` would take its identity past its quota. */
  #overQuota(request: TransferRequest): Refusal | undefined {
    const identity = this.#identityOf(request.path);
    const quota = identity === undefined ? undefined : this.#quotas.get(identity);
    if (identity === undefined || quota === undefined) return undefined;
    const inFlight = this.#inFlightOf(identity);
    const stored = this.#stored.get(identity) ?? 0;
    if (stored + inFlight + request.size <= quota) return undefined;
    return {
      reason: 'no-space',
      message: `${formatBytes(request.size)} would take ${JSON.stringify(identity)} past its quota of ${formatBytes(quota)} (${formatBytes(stored)} stored, ${formatBytes(inFlight)} on its way); remove old files on the receiver, or ask for a larger quota`,
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

/** Where an identity's files go: `folder/<identity>/`, made private on first use; never a link. */
async function identityFolder(folder: string, identity: string): Promise<string> {
  const path = join(folder, identity);
  try {
    await mkdir(path, { mode: 0o700 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw localIoError(error, 'create a folder in', folder);
    const stats = await lstat(path);
    if (!stats.isDirectory()) throw new LocalIoError(`${path} is not a folder (a file or a link is there): cannot store what ${JSON.stringify(identity)} sends`);
  }
  return path;
}
