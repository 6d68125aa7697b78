/**
 * The one-shot receiver behind `ftx recv`: accepts connections until one file has
 * been received. Each connection runs handleConnection (receiver.ts); this file
 * decides which outcomes end the wait.
 */
import type { Server, Socket } from 'node:net';
import { interruptionOf, type FtxError } from './errors.js';
import { silentLog } from './log.js';
import { remoteOf } from './net.js';
import { handleConnection, type ConnectionPolicy, type ReceiveOptions, type ReceiveResult } from './receiver.js';

/**
 * Accepts connections on `server` until one file has been received, then closes it.
 * Silent connections (port scans) are ignored and pings answered; while a file is
 * coming in, other senders are refused as busy. A failed transfer, or garbage while
 * no transfer is under way, ends the wait with its error. Aborting `signal` cuts any
 * transfer in flight, waits for it to remove its partial file, and rejects with
 * InterruptedError.
 */
export function receiveOne(server: Server, options: ReceiveOptions): Promise<ReceiveResult> {
  const log = options.log ?? silentLog;
  const sockets = new Set<Socket>();
  const inFlight = new Set<Promise<unknown>>();
  let claimed = false;

  return new Promise<ReceiveResult>((resolve, reject) => {
    let settled = false;
    const finish = (outcome: () => void) => {
      if (settled) return;
      settled = true;
      options.signal?.removeEventListener('abort', onAbort);
      server.removeListener('connection', onConnection);
      server.close();
      for (const socket of sockets) socket.destroy();
      outcome();
    };

    const onConnection = (socket: Socket) => {
      const peer = remoteOf(socket);
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
      log.debug({ peer }, 'connection');
      let carriesTheFile = false;
      const policy: ConnectionPolicy = {
        claim: () => {
          if (claimed) return { reason: 'busy', message: 'the receiver is busy with another file; try again when it is done' };
          claimed = true;
          carriesTheFile = true;
          return undefined;
        },
        // A one-shot receiver takes one file, whatever becomes of it.
        release: () => {},
      };
      const handled = handleConnection(socket, options, policy).then(
        (outcome) => {
          if (outcome.kind === 'silent') log.info({ peer }, `connection from ${peer} closed without a word (a port scan or health check?); still waiting`);
          else if (outcome.kind === 'ping') log.info({ peer, message: outcome.message }, `answered a ping from ${peer}; still waiting`);
          else finish(() => resolve(outcome.result));
        },
        (error: unknown) => {
          const failure = error as FtxError;
          if (carriesTheFile || !claimed) {
            finish(() => reject(failure));
          } else {
            // A stray connection failed while another one carries the file: not fatal.
            log.warn({ peer, code: failure.code }, `connection from ${peer} failed: ${failure.message}`);
          }
        },
      );
      inFlight.add(handled);
      void handled.finally(() => inFlight.delete(handled));
    };

    const onAbort = () => {
      const interrupted = interruptionOf(options.signal);
      server.removeListener('connection', onConnection);
      // Each connection's handler hears the same signal: it tells its peer and hangs up.
      // Let transfers in flight remove their partial files before reporting.
      void Promise.allSettled([...inFlight]).finally(() => finish(() => reject(interrupted)));
    };

    server.on('connection', onConnection);
    if (options.signal?.aborted) onAbort();
    else options.signal?.addEventListener('abort', onAbort, { once: true });
  });
}
