/**
 * The one-shot receiver behind `ftx recv`: accepts connections until one file has
 * been received. Each connection runs handleConnection (receiver.ts); this file
 * decides which outcomes end the wait.
 */
import type { Server, Socket } from 'node:net';
import { Admission } from '../transport/admission.js';
import { interruptionOf, LocalIoError, RefusedError, TimeoutError, type FtxError } from '../errors.js';
import { silentLog } from '../util/log.js';
import { remoteOf } from '../transport/tcp.js';
import { handleConnection, refuseConnection, type ConnectionPolicy, type ReceiveOptions, type ReceiveResult } from '../receiver.js';

/**
 * Accepts connections on `server` until one file has been received, then closes it.
 *
 * Only a transfer that was accepted ends the wait, with its result or its error. Whatever
 * happens before an Accept is logged and the receiver keeps waiting: silent connections
 * (port scans), pings, garbage (a browser, a stray script), handshakes that time out,
 * and refusals (the name exists, too large): the sender was told why and may try again
 * (with --name, say), so the receiver must still be there. The exception is a receiver
 * that cannot work at all (its folder cannot be written), which fails at once.
 *
 * While a file is coming in, other senders are refused as busy. Aborting `signal` cuts
 * any transfer in flight, waits for it to remove its partial file, and rejects with
 * InterruptedError.
 */
export interface ReceiveOneOptions extends ReceiveOptions {
  /** Connections at once from one host (default DEFAULT_PER_HOST_CONNECTIONS). */
  perHostConnections?: number;
}

export function receiveOne(server: Server, options: ReceiveOneOptions): Promise<ReceiveResult> {
  const log = options.log ?? silentLog;
  const sockets = new Set<Socket>();
  const inFlight = new Set<Promise<unknown>>();
  const admission = new Admission(options.perHostConnections === undefined ? {} : { perHostConnections: options.perHostConnections });
  let claimed = false;

  return new Promise<ReceiveResult>((resolve, reject) => {
    let settled = false;
    const finish = (outcome: () => void) => {
      if (settled) return;
      settled = true;
      options.signal?.removeEventListener('abort', onAbort);
      server.removeListener('connection', onConnection);
      server.removeListener('error', onServerError);
      server.close();
      for (const socket of sockets) socket.destroy();
      outcome();
    };

    const onConnection = (socket: Socket) => {
      const peer = remoteOf(socket);
      const connectionAbort = new AbortController();
      const ticket = admission.admit(socket.remoteAddress ?? 'unknown', () =>
        connectionAbort.abort(new TimeoutError('too many connections are waiting to send their header; this one was dropped')),
      );
      if (!ticket) {
        refuseConnection(socket, 'busy', 'too many connections from your address; try again when some have finished');
        log.info({ peer }, `refused a connection from ${peer}: too many at once from that address`);
        return;
      }
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
      log.debug({ peer }, 'connection');
      let carriesTheFile = false;
      const policy: ConnectionPolicy = {
        claim: () => {
          if (claimed) return { reason: 'busy', message: 'the receiver is busy with another file; try again when it is done' };
          claimed = true;
          return undefined;
        },
        // Refused before its Accept (say its temporary file could not be created): free again.
        release: () => {
          if (!carriesTheFile) claimed = false;
        },
      };
      const signal = options.signal ? AbortSignal.any([options.signal, connectionAbort.signal]) : connectionAbort.signal;
      const handled = handleConnection(socket, {
        ...options,
        signal,
        onOpened: () => ticket.opened(),
        onStart: (transfer) => {
          carriesTheFile = true;
          options.onStart?.(transfer);
        },
      }, policy).then(
        (outcome) => {
          if (outcome.kind === 'silent') log.info({ peer }, `connection from ${peer} closed without a word (a port scan or health check?); still waiting`);
          else if (outcome.kind === 'ping') log.info({ peer, message: outcome.message }, `answered a ping from ${peer}; still waiting`);
          else finish(() => resolve(outcome.result));
        },
        (error: unknown) => {
          const failure = error as FtxError;
          if (carriesTheFile || failure instanceof LocalIoError || options.signal?.aborted) {
            finish(() => reject(failure));
            return;
          }
          const what = failure instanceof RefusedError ? 'refused a file from' : 'connection from';
          const level = failure.code === 'FTX_ERR_INTERNAL' ? 'error' : 'warn';
          log[level]({ peer, code: failure.code }, `${what} ${peer}: ${failure.message}; still waiting`);
        },
      ).finally(() => ticket.release());
      inFlight.add(handled);
      void handled.finally(() => inFlight.delete(handled));
    };

    // Accept errors (EMFILE) are the moment's: log them and keep listening.
    const onServerError = (error: NodeJS.ErrnoException) => {
      log.warn({ code: error.code }, `could not accept a connection (${error.code ?? error.message}); still waiting`);
    };

    const onAbort = () => {
      const interrupted = interruptionOf(options.signal);
      server.removeListener('connection', onConnection);
      // Each connection's handler hears the same signal: it tells its peer and hangs up.
      // Let transfers in flight remove their partial files before reporting.
      void Promise.allSettled([...inFlight]).finally(() => finish(() => reject(interrupted)));
    };

    server.on('connection', onConnection);
    server.on('error', onServerError);
    if (options.signal?.aborted) onAbort();
    else options.signal?.addEventListener('abort', onAbort, { once: true });
  });
}
