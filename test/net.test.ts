import { describe, expect, it } from 'vitest';
import { UsageError } from '../src/errors.js';
import { addressesToAnnounce, formatHostPort, parseHostPort, parsePort } from '../src/transport/tcp.js';
import { runCli, startRecvCli } from './helpers/cli.js';
import { expectSameFile, tempFolder } from './helpers/files.js';
import { join } from 'node:path';
import { networkInterfaces } from 'node:os';

describe('parseHostPort', () => {
  it.each([
    ['backupbox', { host: 'backupbox', port: 9999 }],
    ['backupbox:7000', { host: 'backupbox', port: 7000 }],
    ['192.168.1.20', { host: '192.168.1.20', port: 9999 }],
    ['192.168.1.20:1', { host: '192.168.1.20', port: 1 }],
    ['[::1]:7000', { host: '::1', port: 7000 }],
    ['[fe80::1%eth0]:7000', { host: 'fe80::1%eth0', port: 7000 }],
    ['[::1]', { host: '::1', port: 9999 }],
    ['::1', { host: '::1', port: 9999 }],
    ['2001:db8::5', { host: '2001:db8::5', port: 9999 }],
  ])('%s', (text, expected) => {
    expect(parseHostPort(text)).toEqual(expected);
  });

  it.each(['', ':9999', 'host:', 'host:0', 'host:65536', 'host:http', '[notv6]:1', 'two words', 'a/b:1'])('refuses %j', (text) => {
    expect(() => parseHostPort(text)).toThrow(UsageError);
  });

  it('formats IPv6 in brackets', () => {
    expect(formatHostPort({ host: '::1', port: 5 })).toBe('[::1]:5');
    expect(formatHostPort({ host: 'box', port: 5 })).toBe('box:5');
  });

  it('parsePort accepts 0 only when asked', () => {
    expect(parsePort('0', true)).toBe(0);
    expect(() => parsePort('0')).toThrow(UsageError);
    expect(() => parsePort('99999', true)).toThrow(/not a port number/);
  });
});

describe('addressesToAnnounce: what a receiver tells senders to type', () => {
  // A machine with loopback, one LAN address of each family, and an IPv6 link-local one.
  const interfaces = {
    lo: [
      { address: '127.0.0.1', netmask: '255.0.0.0', family: 'IPv4', mac: '00:00:00:00:00:00', internal: true, cidr: '127.0.0.1/8' },
      { address: '::1', netmask: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', family: 'IPv6', mac: '00:00:00:00:00:00', internal: true, cidr: '::1/128', scopeid: 0 },
    ],
    eth0: [
      { address: '192.0.2.2', netmask: '255.255.255.0', family: 'IPv4', mac: '02:00:00:00:00:02', internal: false, cidr: '192.0.2.2/24' },
      { address: 'fe80::2', netmask: 'ffff:ffff:ffff:ffff::', family: 'IPv6', mac: '02:00:00:00:00:02', internal: false, cidr: 'fe80::2/64', scopeid: 2 },
      { address: '2001:db8::2', netmask: 'ffff:ffff:ffff:ffff::', family: 'IPv6', mac: '02:00:00:00:00:02', internal: false, cidr: '2001:db8::2/64', scopeid: 0 },
    ],
  } satisfies Parameters<typeof addressesToAnnounce>[1];

  it('--bind 0.0.0.0: the IPv4 addresses of the machine, never 0.0.0.0', () => {
    expect(addressesToAnnounce('0.0.0.0', interfaces)).toEqual(['192.0.2.2']);
  });

  it('--bind :: (and the default): every LAN address, IPv4 first, never ::', () => {
    expect(addressesToAnnounce('::', interfaces)).toEqual(['192.0.2.2', '2001:db8::2']);
  });

  it('a specific address: that address', () => {
    expect(addressesToAnnounce('127.0.0.1', interfaces)).toEqual(['127.0.0.1']);
    expect(addressesToAnnounce('::1', interfaces)).toEqual(['::1']);
  });
});

const hasIpv6Loopback = Object.values(networkInterfaces()).some((entries) => entries?.some((entry) => entry.address === '::1'));

it.skipIf(!hasIpv6Loopback)('sends over IPv6 loopback: ftx send FILE [::1]:PORT', async () => {
  const folder = await tempFolder();
  const fixture = new URL('./fixtures/06.jpg', import.meta.url).pathname;
  const target = join(folder, 'v6.jpg');
  const recv = await startRecvCli([target], { bind: '::1' });
  const send = runCli(['send', fixture, `[::1]:${recv.port}`]);
  expect(await send.exit).toBe(0);
  expect(await recv.exit).toBe(0);
  await expectSameFile(target, fixture);
});
