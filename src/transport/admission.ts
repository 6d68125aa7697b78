/**
 * Who gets a connection slot, so that no one peer can keep the others out.
 *
 * Every accepted connection is counted against its address (per-host limit), and until
 * it has sent its header it is "pending". Pending connections cost little (a few KiB
 * for at most the handshake deadline) but a flood of them could still exhaust sockets
 * and memory, so their number is capped: when the pool is full, a newcomer is let in
 * and the oldest pending connection of the address holding the most is dropped. An
 * attacker's idle or dribbling connections are thus the ones that go, while a good
 * sender, whose header follows its connect within a round trip, is past the pool
 * before it can be chosen.
 *
 * Addresses: an IPv4 address is one host; IPv6 hosts are grouped by their /64 prefix,
 * since one machine on a LAN can take any number of addresses in its own /64.
 */
import { isIPv6 } from 'node:net';
import { DEFAULT_MAX_PENDING, DEFAULT_PER_HOST_CONNECTIONS } from '../defaults.js';


export interface AdmissionLimits {
  perHostConnections: number;
  maxPending: number;
}

/** One admitted connection's place. */
export interface Ticket {
  /** The host it is counted against (an IPv4 address, or an IPv6 /64 prefix). */
  readonly host: string;
  /** The connection sent its header: it leaves the pending pool (it cannot be evicted any more). */
  opened(): void;
  /** The connection is over. Idempotent. */
  release(): void;
}

interface PendingEntry {
  host: string;
  evict: () => void;
}

export class Admission {
  readonly #limits: AdmissionLimits;
  readonly #perHost = new Map<string, number>();
  /** Insertion order is age: the first entry is the oldest. */
  readonly #pending = new Set<PendingEntry>();
  readonly #pendingPerHost = new Map<string, number>();

  constructor(limits: Partial<AdmissionLimits> = {}) {
    this.#limits = {
      perHostConnections: limits.perHostConnections ?? DEFAULT_PER_HOST_CONNECTIONS,
      maxPending: limits.maxPending ?? DEFAULT_MAX_PENDING,
    };
  }

  get pending(): number {
    return this.#pending.size;
  }

  /** Connections counted against `host` now. */
  connectionsFrom(host: string): number {
    return this.#perHost.get(host) ?? 0;
  }

  /**
   * Admits a connection from `address`, or returns undefined when its host already has
   * its share. `evict` is called (at most once) if the connection is dropped to make
   * room for a newer one while still pending.
   */
  admit(address: string, evict: () => void): Ticket | undefined {
    const host = hostKey(address);
    const count = this.#perHost.get(host) ?? 0;
    if (count >= this.#limits.perHostConnections) return undefined;
    this.#perHost.set(host, count + 1);
    if (this.#pending.size >= this.#limits.maxPending) this.#evictOne();

    const entry: PendingEntry = { host, evict };
    this.#pending.add(entry);
    adjustCount(this.#pendingPerHost, host, +1);
    let state: 'pending' | 'open' | 'released' = 'pending';
    const leavePending = () => {
      // Already gone if it was evicted.
      if (state === 'pending' && this.#pending.delete(entry)) adjustCount(this.#pendingPerHost, host, -1);
    };
    return {
      host,
      opened: () => {
        leavePending();
        if (state === 'pending') state = 'open';
      },
      release: () => {
        if (state === 'released') return;
        leavePending();
        state = 'released';
        adjustCount(this.#perHost, host, -1);
      },
    };
  }

  /** Drops the oldest pending connection of the host with the most pending connections. */
  #evictOne(): void {
    let busiest: string | undefined;
    let most = 0;
    for (const [host, count] of this.#pendingPerHost) {
      if (count > most) {
        most = count;
        busiest = host;
      }
    }
    for (const entry of this.#pending) {
      if (entry.host !== busiest) continue;
      this.#pending.delete(entry);
      adjustCount(this.#pendingPerHost, entry.host, -1);
      entry.evict();
      return;
    }
  }
}

/** Adds `delta` to a count, dropping the key at zero so maps of hosts do not grow forever. */
export function adjustCount(counts: Map<string, number>, key: string, delta: number): void {
  const next = (counts.get(key) ?? 0) + delta;
  if (next > 0) counts.set(key, next);
  else counts.delete(key);
}

/** The host a remote address is counted against: IPv4 as is, IPv6 by its /64. */
export function hostKey(address: string): string {
  const bare = address.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, '');
  if (!isIPv6(bare)) return bare;
  return `${expandIPv6(bare).slice(0, 4).join(':')}::/64`;
}

/** "fe80::1" -> ["fe80","0","0","0","0","0","0","1"] (zone index dropped). */
function expandIPv6(address: string): string[] {
  const [head = '', tail] = address.split('%')[0]!.split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const missing = tail === undefined ? 0 : 8 - left.length - right.length;
  return [...left, ...Array<string>(missing).fill('0'), ...right].map((group) => group.toLowerCase().replace(/^0+(?=.)/, ''));
}
