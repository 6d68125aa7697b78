import { describe, expect, it } from 'vitest';
import { UsageError } from '../src/errors.js';
import { formatHostPort, parseHostPort, parsePort } from '../src/net.js';
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
