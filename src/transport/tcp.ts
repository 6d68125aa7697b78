/**
 * Addresses, connecting and listening, with the errors users actually hit turned
 * into messages that say what to do.
 */
import { connect as netConnect, createServer, isIPv6, Socket, type Server } from 'node:net';
import type { Duplex } from 'node:stream';
import { networkInterfaces } from 'node:os';
import { abortReason, ConnectError, ListenError } from '../errors.js';
import { whenAborted } from '../util/timers.js';

import { formatHostPort, type HostPort } from '../util/address.js';

export { formatHostPort, parseHostPort, parsePort, type HostPort } from '../util/address.js';

/** Who is at the other end of a stream, for logs: "address:port" for a socket, "stream" otherwise (tests). */
export function peerOf(stream: Duplex): string {
  return stream instanceof Socket ? remoteOf(stream) : 'stream';
}

/** "address:port" of the far end of a socket, for logs. */
export function remoteOf(socket: Socket): string {
  const host = socket.remoteAddress?.replace(/^::ffff:/, '') ?? 'unknown';
  return formatHostPort({ host, port: socket.remotePort ?? 0 });
}

/** Opens a TCP connection, or rejects with a ConnectError that says what to check. */
export function connect(target: HostPort, options: { timeoutMs: number; signal?: AbortSignal | undefined }): Promise<Socket> {
  const where = formatHostPort(target);
  return new Promise((resolve, reject) => {
    if (options.signal?.aborted) {
      reject(abortReason(options.signal));
      return;
    }
    const socket = netConnect({ host: target.host, port: target.port });
    const timer = options.timeoutMs > 0 ? setTimeout(() => fail(timedOut()), options.timeoutMs) : undefined;
    const stopListening = whenAborted(options.signal, () => fail(abortReason(options.signal)));

    function cleanup(): void {
      clearTimeout(timer);
      stopListening();
      socket.removeListener('error', onError);
      socket.removeListener('connect', onConnect);
    }
    function fail(error: Error): void {
      cleanup();
      socket.destroy();
      reject(error);
    }
    function onError(error: NodeJS.ErrnoException): void {
      fail(describeConnectError(error, target));
    }
    function onConnect(): void {
      cleanup();
      socket.setNoDelay(true);
      resolve(socket);
    }
    function timedOut(): ConnectError {
      return new ConnectError(`no answer from ${where} within ${options.timeoutMs / 1000} s; check the address and that no firewall drops the port`);
    }
    socket.once('error', onError);
    socket.once('connect', onConnect);
  });
}

function describeConnectError(error: NodeJS.ErrnoException, target: HostPort): ConnectError {
  const where = formatHostPort(target);
  switch (error.code) {
    case 'ECONNREFUSED':
      return new ConnectError(`connection refused by ${where}: nothing listens there; start the receiver on that machine first, or check the port`, { cause: error });
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EAI_NONAME':
      return new ConnectError(`unknown host "${target.host}": check the name, or use the receiver's IP address`, { cause: error });
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return new ConnectError(`${where} is unreachable: check the network and the address`, { cause: error });
    case 'ETIMEDOUT':
      return new ConnectError(`connecting to ${where} timed out; check the address and that no firewall drops the port`, { cause: error });
    default:
      return new ConnectError(`cannot connect to ${where}: ${error.message}`, { cause: error });
  }
}

/**
 * Listens on `host` (all interfaces, IPv6 and IPv4, when undefined) and resolves once
 * bound. Port 0 picks a free port; read it from server.address().
 */
export async function listen(port: number, host?: string): Promise<Server> {
  if (host !== undefined) return listenOn(port, host, false);
  try {
    return await listenOn(port, '::', false);
  } catch (error) {
    // A machine without IPv6 cannot bind '::'; fall back to every IPv4 address.
    const code = ((error as ListenError).cause as NodeJS.ErrnoException | undefined)?.code;
    if (code === 'EAFNOSUPPORT' || code === 'EADDRNOTAVAIL') return listenOn(port, '0.0.0.0', false);
    throw error;
  }
}

function listenOn(port: number, host: string, ipv6Only: boolean): Promise<Server> {
  return new Promise((resolve, reject) => {
    // allowHalfOpen: a sender may half-close after its trailer; the receipt must still go out.
    // pauseOnConnect: nothing is read before the receiver takes the connection, so it can
    // move it to a socket that reads into its own buffers (direct-reads.ts).
    const server = createServer({ noDelay: true, allowHalfOpen: true, pauseOnConnect: true });
    const onError = (error: NodeJS.ErrnoException) => {
      server.close();
      reject(describeListenError(error, port, host));
    };
    server.once('error', onError);
    server.listen({ port, host, ipv6Only, exclusive: true }, () => {
      server.removeListener('error', onError);
      resolve(server);
    });
  });
}

function describeListenError(error: NodeJS.ErrnoException, port: number, host: string): ListenError {
  const where = formatHostPort({ host, port });
  switch (error.code) {
    case 'EADDRINUSE':
      return new ListenError(`port ${port} is already in use on ${host === '::' ? 'this machine' : host}: is another receiver running?`, { cause: error, remedy: 'choose-port' });
    case 'EACCES':
    case 'EPERM':
      return new ListenError(`not allowed to listen on ${where}: ports below 1024 need root`, { cause: error, remedy: 'choose-port' });
    case 'EADDRNOTAVAIL':
      return new ListenError(`cannot listen on ${host}: it is not an address of this machine`, { cause: error, remedy: 'check-bind' });
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new ListenError(`cannot listen on "${host}": unknown host name`, { cause: error, remedy: 'check-bind' });
    default:
      return new ListenError(`cannot listen on ${where}: ${error.message}`, { cause: error });
  }
}

type Interfaces = ReturnType<typeof networkInterfaces>;

/** This machine's addresses that other machines on the LAN can likely reach, IPv4 first. */
export function lanAddresses(interfaces: Interfaces = networkInterfaces()): string[] {
  const v4: string[] = [];
  const v6: string[] = [];
  for (const entries of Object.values(interfaces)) {
    for (const entry of entries ?? []) {
      if (entry.internal) continue;
      if (entry.family === 'IPv4') v4.push(entry.address);
      else if (!entry.address.toLowerCase().startsWith('fe80:')) v6.push(entry.address);
    }
  }
  return [...v4, ...v6];
}

/**
 * What to tell senders to connect to, for a server listening on `bound` (the address
 * server.address() reports). A wildcard is no address to connect to: 0.0.0.0 stands
 * for this machine's IPv4 addresses, and :: for all of them (ftx listens on :: for
 * IPv4 too, as the default does). Any other address is itself.
 */
export function addressesToAnnounce(bound: string, interfaces: Interfaces = networkInterfaces()): string[] {
  if (bound === '0.0.0.0') return lanAddresses(interfaces).filter((address) => !isIPv6(address));
  if (bound === '::') return lanAddresses(interfaces);
  return [bound];
}
