/** Checks of the options every API call shares; a bad one is a UsageError naming the option. */
import { UsageError } from '../errors.js';
import { parseHostPort, type HostPort } from '../transport/tcp.js';
import { DEFAULT_PORT } from '../defaults.js';

/** Where a receiver listens: "host", "host:port", "[ipv6]:port", or { host, port }. */
export type Destination = string | { host: string; port?: number | undefined };

export function resolveDestination(to: Destination): HostPort {
  if (typeof to === 'string') return parseHostPort(to);
  if (typeof to?.host !== 'string' || to.host.length === 0) throw new UsageError('the destination needs a host');
  return { host: to.host, port: validatePort('port', to.port ?? DEFAULT_PORT, false) };
}

/** Longest wait a Node timer can hold (2^31 - 1 ms); a longer one would fire at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** A duration in ms a timer can wait: 0 (never) or more, up to MAX_TIMER_MS. */
export function validateTimeout(option: string, ms: number): number {
  if (!(Number.isFinite(ms) && ms >= 0 && ms <= MAX_TIMER_MS)) throw new UsageError(`${option} must be a number of milliseconds from 0 to ${MAX_TIMER_MS}, not ${ms}`);
  return ms;
}

export function validatePort(option: string, port: number, allowZero: boolean): number {
  if (!(Number.isInteger(port) && port >= (allowZero ? 0 : 1) && port <= 65535)) throw new UsageError(`${option} must be a port number from ${allowZero ? 0 : 1} to 65535, not ${port}`);
  return port;
}

export function validateCount(option: string, value: number, minimum = 1): number {
  if (!(Number.isInteger(value) && value >= minimum)) throw new UsageError(`${option} must be a whole number of at least ${minimum}, not ${value}`);
  return value;
}

export function validateBytes(option: string, value: number): number {
  if (!(Number.isSafeInteger(value) && value >= 0)) throw new UsageError(`${option} must be a whole number of bytes, 0 or more, not ${value}`);
  return value;
}
