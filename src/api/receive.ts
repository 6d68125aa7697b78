/**
 * receive(): listen, take one file, stop. The handle it resolves with owns the listening
 * socket and every connection; close() (or the signal) stops it all.
 *
 * Only a transfer that was accepted ends the wait, with its result or its error. Whatever
 * happens before an Accept is reported through onStray and the receiver keeps waiting:
 * silent connections (port scans), pings, garbage (a browser, a stray script), handshakes
 * that time out, and refusals (the name exists, too large): the sender was told why and
 * may try again under another name, so the receiver must still be there. The exception
 * is a receiver that cannot work at all (its folder cannot be written), which fails.
 *
 * While a file is coming in, other senders are refused as busy.
 */
import { dirname } from 'node:path';
import type { Server, Socket } from 'node:net';
import { InterruptedError, isFtxError, LocalIoError, TimeoutError, UsageError, type FtxError } from '../errors.js';
import { AuthThrottle } from '../transport/auth-throttle.js';
import { KeyCheckError } from '../transport/tls.js';
import type { DigestName } from '../digest/registry.js';
import type { Protocol } from '../protocol/messages.js';
import { receiveConnection, type ReceivedFile } from '../receiver.js';
import { refuseConnection } from '../handshake.js';
import type { ConnectionPolicy } from '../session/policy.js';
import { Admission, hostKey } from '../transport/admission.js';
import { addressesToAnnounce, formatHostPort, listen, remoteOf } from '../transport/tcp.js';
import { silentLog } from '../util/log.js';
import { DEFAULT_PORT } from '../defaults.js';
import { foldsCase } from '../fs/case-folding.js';
import type { EntryOutcome } from '../session/receive-session.js';
import { sessionFailure } from '../session/verdict.js';
import { guarded } from './callbacks.js';
import { keyFromCode, wireIdentity } from '../transport/keys.js';
import { whenAborted } from '../util/timers.js';
import { checkTarget, connectionOptions, partialCallbacks, perHostConnections, sweepLeftovers, takeConnection, type ReceivingOptions } from './receiving.js';

export interface ReceiveOptions extends ReceivingOptions {
  /**
   * A file path (one file), or an existing folder where what is sent is stored under the
   * sender's names: a file, or a session's files and folders (default: the current
   * folder). A trailing slash says it must be a folder.
   */
  target?: string | undefined;
  /**
   * Write the one incoming file or stream to this stream instead (`ftx recv -`): not
   * staged, so a digest mismatch is known only at the end (`done` rejects); a consumer
   * must wait for `done` before trusting the bytes.
   */
  output?: NodeJS.WritableStream | undefined;
  /**
   * Take only the sender that knows this code (newCode() makes one; the receiver shows it
   * to the person at the other machine): the conversation runs inside TLS 1.3 with a key
   * derived from it, as with `keys`. Not with `keys`.
   */
  code?: string | undefined;
  /** A session's entry is done: stored, refused, or failed. */
  onEntry?: ((entry: EntryOutcome & { peer: string }) => void) | undefined;
  /** A session was accepted (files and folders are coming): how many entries and bytes, when its sender knows. */
  onSession?: ((session: { peer: string; entries: number | null; bytes: number | null; hash: DigestName }) => void) | undefined;
  /** Called once a file is accepted, before its bytes arrive. */
  onStart?: ((transfer: { name: string; path: string; size: number; peer: string; protocol: Protocol }) => void) | undefined;
  /** Called as the file's bytes arrive. */
  onProgress?: ((progress: { bytes: number; total: number }) => void) | undefined;
  /** A connection that did not bring the file; the receiver keeps waiting. */
  onStray?: ((stray: Stray) => void) | undefined;
}

/** A connection that ended without bringing the file. */
export type Stray =
  /** Connected and closed without a word: a port scan or a health probe. */
  | { kind: 'silent'; peer: string }
  /** A ping, answered. */
  | { kind: 'ping'; peer: string; message: string }
  /** Refused (the name exists, too large, busy…), or failed before its Accept (garbage, a timeout). */
  | { kind: 'failed'; peer: string; error: FtxError }
  /** Turned away on arrival: its host already has its share of connections. */
  | { kind: 'turned-away'; peer: string; message: string };

export interface ReceiveHandle {
  /** The port it listens on (the one chosen, when asked for port 0). */
  readonly port: number;
  /** The address it listens on ('::' for every interface). */
  readonly address: string;
  /** What a sender on another machine can connect to: "192.0.2.2:9999", "[fd00::2]:9999" (this machine's addresses when listening on all of them). */
  readonly endpoints: string[];
  /**
   * Settles once a file has arrived (complete, verified, durable under its final name),
   * or rejects: with the transfer's error, or with InterruptedError once closed.
   */
  readonly done: Promise<ReceivedFile>;
  /** Stops listening and cuts a transfer in flight (its partial file is kept to resume, or removed: see PROTOCOL.md, Resume). Resolves once all is closed. */
  close(): Promise<void>;
}

/** Listens for one file. Resolves once listening (the sender may connect from then on). */
export async function receive(options: ReceiveOptions = {}): Promise<ReceiveHandle> {
  options.signal?.throwIfAborted();
  if (options.output && options.target !== undefined) throw new UsageError('give either target or output, not both: output writes the one incoming file to a stream instead of a target');
  if (options.code !== undefined && options.keys !== undefined) throw new UsageError('give either code or keys, not both');
  const log = options.log ?? silentLog;
  const perConnection = connectionOptions('', options);
  if (options.code !== undefined) {
    const fromCode = await keyFromCode(options.code);
    perConnection.auth = { keys: new Map([[wireIdentity(fromCode), fromCode]]) };
  }
  const { target, isFolder } = options.output ? { target: '-', isFolder: false } : await checkTarget(options.target ?? '.', perConnection.onConflict !== 'refuse');
  perConnection.target = target;
  if (options.output) perConnection.output = { stream: options.output, label: '-' };
  if (isFolder) perConnection.foldsCase = await foldsCase(target);
  const onSession = guarded(log, 'onSession', options.onSession);
  const onEntry = guarded(log, 'onEntry', options.onEntry);
  const onStart = guarded(log, 'onStart', options.onStart);
  const onProgress = guarded(log, 'onProgress', options.onProgress);
  const onStray = guarded(log, 'onStray', options.onStray);
  const server = await listen(options.port ?? DEFAULT_PORT, options.host);
  const stopper = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, stopper.signal]) : stopper.signal;
  const sockets = new Set<Socket>();
  const inFlight = new Set<Promise<unknown>>();
  const admission = new Admission({ perHostConnections: perHostConnections(options) });
  const throttle = new AuthThrottle();
  let claimed = false;

  const done = new Promise<ReceivedFile>((resolve, reject) => {
    let settled = false;
    const finish = (outcome: () => void) => {
      if (settled) return;
      settled = true;
      stopListening();
      server.removeListener('connection', onConnection);
      server.removeListener('error', onServerError);
      server.close();
      for (const socket of sockets) socket.destroy();
      outcome();
    };

    const onConnection = (accepted: Socket) => {
      const peer = remoteOf(accepted);
      // Counted by host, as admission does: an IPv6 host has a whole /64 to pick addresses from.
      const address = hostKey(accepted.remoteAddress ?? 'unknown');
      const blockedMs = perConnection.auth ? throttle.blockedFor(address) : 0;
      if (blockedMs > 0) {
        const message = `too many failed key checks from your address; try again in ${Math.ceil(blockedMs / 1000)} s`;
        refuseConnection(accepted, 'busy', message, { keyed: true });
        onStray?.({ kind: 'turned-away', peer, message });
        return;
      }
      const dropped = new AbortController();
      const ticket = admission.admit(accepted.remoteAddress ?? 'unknown', () =>
        dropped.abort(new TimeoutError('too many connections are waiting to send their header; this one was dropped')),
      );
      if (!ticket) {
        const message = `too many connections from your address (${perHostConnections(options)} at once); try again when some have finished`;
        refuseConnection(accepted, 'busy', message, { keyed: perConnection.auth !== undefined });
        onStray?.({ kind: 'turned-away', peer, message });
        return;
      }
      const taken = takeConnection(accepted, perConnection.auth !== undefined);
      const socket = taken.socket;
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
      log.debug({ peer, direct: taken.source !== undefined }, 'connection');
      let carriesTheFile = false;
      const policy: ConnectionPolicy = {
        claimSlot: () => {
          if (claimed) return { reason: 'busy', message: 'the receiver is busy with another transfer; try again when it is done' };
          claimed = true;
          return undefined;
        },
        // Refused before its Accept (say its temporary file could not be created): free again.
        releaseSlot: () => {
          if (!carriesTheFile) claimed = false;
        },
        claim: () => undefined,
        release: () => {},
      };
      let total = 0;
      const handled = receiveConnection(
        socket,
        {
          ...perConnection,
          ...(taken.source ? { source: taken.source } : {}),
          signal: AbortSignal.any([signal, dropped.signal]),
          onOpened: () => ticket.opened(),
          onIdentity: () => throttle.succeeded(address),
          onStart: (transfer) => {
            carriesTheFile = true;
            total = transfer.size;
            onStart?.(transfer);
          },
          onProgress: onProgress && ((bytes) => onProgress({ bytes, total })),
          onSession: (session) => {
            carriesTheFile = true;
            total = session.bytes ?? 0;
            onSession?.(session);
          },
          onEntry: onEntry && ((entry) => onEntry({ ...entry, peer })),
          ...partialCallbacks(options, peer),
        },
        policy,
      ).then(
        (outcome) => {
          if (outcome.kind === 'file') finish(() => resolve(outcome.result));
          else if (outcome.kind === 'session') {
            const failure = sessionFailure(outcome.result.session);
            // A session of one file that was refused is a refused sender: keep waiting.
            if (!carriesTheFile && failure) onStray?.({ kind: 'failed', peer, error: failure });
            else finish(() => (failure ? reject(failure) : resolve(outcome.result)));
          }
          else onStray?.(outcome.kind === 'ping' ? { kind: 'ping', peer, message: outcome.message } : { kind: 'silent', peer });
        },
        (error: unknown) => {
          const failure = error as FtxError;
          // A failed key check (not a keyless sender saying so): one more guess from that address.
          if (failure instanceof KeyCheckError) throttle.failed(address);
          if (carriesTheFile || failure instanceof LocalIoError || signal.aborted) finish(() => reject(failure));
          else onStray?.({ kind: 'failed', peer, error: failure });
        },
      ).finally(() => ticket.release());
      inFlight.add(handled);
      void handled.finally(() => inFlight.delete(handled));
    };

    // Accept errors (EMFILE) are the moment's: report them and keep listening.
    const onServerError = (error: NodeJS.ErrnoException) => {
      log.warn({ code: error.code }, `could not accept a connection (${error.code ?? error.message}); still waiting`);
    };

    const stopListening = whenAborted(signal, () => {
      const reason: unknown = options.signal?.aborted ? options.signal.reason : stopper.signal.reason;
      server.removeListener('connection', onConnection);
      // Each connection's handler hears the same signal: it tells its peer and hangs up.
      // Let transfers in flight keep (or remove) their partial files before settling.
      void Promise.allSettled([...inFlight]).finally(() => finish(() => reject(isFtxError(reason) ? reason : new InterruptedError('the receiver was closed'))));
    });

    server.on('connection', onConnection);
    server.on('error', onServerError);
  });
  done.catch(() => {}); // The caller may never await it (close() alone is enough).

  // A folder target's leftovers are inside it; a file target's, beside it.
  if (!options.output) await sweepLeftovers(isFolder ? target : dirname(target), options).catch(() => {});
  const { address, port } = server.address() as { address: string; port: number };
  return {
    port,
    address,
    endpoints: addressesToAnnounce(address).map((host) => formatHostPort({ host, port })),
    done,
    close: async () => {
      stopper.abort(new InterruptedError('the receiver was closed'));
      await done.catch(() => {});
    },
  };
}
