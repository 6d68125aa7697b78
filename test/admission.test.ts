/**
 * Who gets a connection slot (src/admission.ts): per-host shares, and which pending
 * connection is dropped when the pool is full. Pure bookkeeping, tested without sockets;
 * the same rules under attack over real sockets are in hostile.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { Admission, hostKey } from '../src/transport/admission.js';

describe('hostKey: what one "host" is for the per-address limits', () => {
  it('is the IPv4 address itself, also when it comes IPv4-mapped from a dual-stack socket', () => {
    expect(hostKey('192.168.1.7')).toBe('192.168.1.7');
    expect(hostKey('::ffff:192.168.1.7')).toBe('192.168.1.7');
  });

  it('groups IPv6 addresses by their /64, since one machine can use any address in its own /64', () => {
    expect(hostKey('2001:db8:1:2::1')).toBe(hostKey('2001:db8:1:2:ffff:ffff:ffff:fffe'));
    expect(hostKey('2001:db8:1:2::1')).toBe('2001:db8:1:2::/64');
    expect(hostKey('2001:db8:1:3::1')).not.toBe(hostKey('2001:db8:1:2::1'));
    expect(hostKey('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
    expect(hostKey('::1')).toBe('0:0:0:0::/64');
  });
});

describe('Admission', () => {
  it('gives each host at most its share of connections, and frees a place when one is released', () => {
    const admission = new Admission({ perHostConnections: 2, maxPending: 100 });
    const first = admission.admit('10.0.0.1', () => {});
    const second = admission.admit('10.0.0.1', () => {});
    expect(first && second).toBeTruthy();
    expect(admission.admit('10.0.0.1', () => {})).toBeUndefined();
    expect(admission.admit('10.0.0.2', () => {})).toBeDefined();
    first?.release();
    first?.release(); // idempotent: does not free a second place
    expect(admission.admit('10.0.0.1', () => {})).toBeDefined();
    expect(admission.admit('10.0.0.1', () => {})).toBeUndefined();
  });

  it('when the pending pool is full, drops the oldest pending connection of the host holding the most, never an opened one', () => {
    const admission = new Admission({ perHostConnections: 10, maxPending: 4 });
    const evicted: string[] = [];
    const admit = (address: string, label: string) => admission.admit(address, () => evicted.push(label));
    admit('10.0.0.9', 'attacker-1');
    const good = admit('10.0.0.1', 'good');
    admit('10.0.0.9', 'attacker-2');
    admit('10.0.0.9', 'attacker-3');
    good?.opened(); // sent its header: out of the pool
    admit('10.0.0.5', 'newcomer-1'); // 4 pending now: attacker-1..3, newcomer-1
    expect(evicted).toEqual([]);
    admit('10.0.0.6', 'newcomer-2');
    expect(evicted).toEqual(['attacker-1']);
    admit('10.0.0.7', 'newcomer-3');
    expect(evicted).toEqual(['attacker-1', 'attacker-2']);
    expect(admission.pending).toBe(4);
  });

  it('an evicted connection released later does not free a pending place twice', () => {
    const admission = new Admission({ perHostConnections: 10, maxPending: 1 });
    const first = admission.admit('10.0.0.1', () => {});
    admission.admit('10.0.0.2', () => {}); // evicts the first
    first?.release();
    expect(admission.pending).toBe(1);
    expect(admission.connectionsFrom('10.0.0.1')).toBe(0);
  });
});
