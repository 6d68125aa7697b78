/**
 * Destinations as people write them: "host", "host:port", "[ipv6]:port" or a bare IPv6
 * address. Pure string work (no DNS), so the CLI can check its arguments before anything
 * starts.
 */
import { isIPv6 } from 'node:net';
import { DEFAULT_PORT } from '../defaults.js';
import { UsageError } from '../errors.js';

export interface HostPort {
  host: string;
  port: number;
}

export function parsePort(text: string, allowZero = false): number {
  const port = /^\d{1,5}$/.test(text) ? Number(text) : NaN;
  if (!(port >= (allowZero ? 0 : 1) && port <= 65535)) {
    throw new UsageError(`"${text}" is not a port number; use ${allowZero ? '0' : '1'} to 65535`);
  }
  return port;
}

/** Parses `host`, `host:port`, `[v6addr]`, `[v6addr]:port` or a bare IPv6 address. */
export function parseHostPort(text: string, defaultPort = DEFAULT_PORT): HostPort {
  const bracketed = /^\[([^\]]+)\](?::(.*))?$/.exec(text);
  if (bracketed) {
    const host = bracketed[1] as string;
    if (!isIPv6(host)) throw new UsageError(`"${host}" in brackets is not an IPv6 address`);
    return { host, port: bracketed[2] === undefined ? defaultPort : parsePort(bracketed[2]) };
  }
  if (isIPv6(text)) return { host: text, port: defaultPort };
  const colon = text.lastIndexOf(':');
  const host = colon === -1 ? text : text.slice(0, colon);
  if (host.length === 0 || /[\s/]/.test(host)) {
    throw new UsageError(`"${text}" is not a destination; write host, host:port or [ipv6]:port`);
  }
  return { host, port: colon === -1 ? defaultPort : parsePort(text.slice(colon + 1)) };
}

export function formatHostPort({ host, port }: HostPort): string {
  return isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
}

