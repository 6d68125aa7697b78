#!/usr/bin/env node
// Entry point: everything lives in dist/cli.js (built by `npm ci` / `npm run build`).
//
// `ftx --help` and `ftx --version`, what shells and cron jobs ask most, are answered from
// text the build rendered with the CLI itself (dist/help.txt, dist/version.txt), without
// loading it: half of a cold start is loading and running the argument parser. Where the
// rendering could differ (a terminal narrower than the 100 columns it was rendered for),
// or the files are missing, the CLI renders it as usual.
import { readFileSync } from 'node:fs';

const argv = process.argv.slice(2);
const prerendered = (name) => {
  try {
    return readFileSync(new URL(`../dist/${name}`, import.meta.url), 'utf8');
  } catch {
    return undefined;
  }
};
const fast =
  argv.length === 1 && argv[0] === '--version'
    ? prerendered('version.txt')
    : argv.length === 1 && (argv[0] === '--help' || argv[0] === '-h') && (process.stdout.columns ?? 100) >= 100
      ? prerendered('help.txt')
      : undefined;
if (fast) {
  process.stdout.write(fast);
} else {
  const { main } = await import('../dist/cli.js');
  process.exitCode = await main(argv);
}
