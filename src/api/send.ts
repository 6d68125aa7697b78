/**
 * send(): one call sends one file and owns everything it opens (the file, the
 * connection), closing them whatever happens.
 */
import { DEFAULT_TIMEOUT_MS } from '../defaults.js';
import { DIGEST_NAMES, isDigestName, type DigestName } from '../digest/registry.js';
import { UsageError } from '../errors.js';
import { silentLog } from '../util/log.js';
import { guarded } from './callbacks.js';
import { openSource } from '../fs/source.js';
import type { Protocol } from '../protocol/messages.js';
import { sendOverConnection, type SentFile } from '../sender.js';
import { connect, formatHostPort } from '../transport/tcp.js';
import type { Log } from '../util/log.js';
import { resolveDestination, validateTimeout, type Destination } from './options.js';

export interface SendOptions {
  /** The file to send: a regular file (a folder, a pipe or a device is refused with LocalIoError). */
  path: string;
  /** The receiver: "host", "host:port", "[ipv6]:port", or { host, port }. The port defaults to 9999. */
  to: Destination;
  /** Announce the file under this name (default: the file's own base name). */
  name?: string | undefined;
  /** The digest both ends compute and compare (default 'sha256'). */
  hash?: DigestName | undefined;
  /** Give up when the receiver sends nothing for this long (TimeoutError), and when connecting takes this long (ConnectError), in ms (default 30000; 0: never). */
  timeoutMs?: number | undefined;
  /** Fail with UnverifiedError, before sending any data, if the receiver cannot confirm the file (a classic peer). */
  verifiedOnly?: boolean | undefined;
  /**
   * Aborting stops the transfer (the receiver removes its partial file). send() rejects
   * with the abort reason when it is an FtxError (an InterruptedError gains "; the receiver
   * discards the partial file" once data may have moved), else with an InterruptedError.
   */
  signal?: AbortSignal | undefined;
  /** Where diagnostic lines go (debug details, warnings such as an unverified classic receiver); none by default. */
  log?: Log | undefined;
  /** Called once the receiver accepted the file, before its first byte is sent. */
  onStart?: ((transfer: { size: number; protocol: Protocol; peer: string }) => void) | undefined;
  /** Called as the file is read into the connection. */
  onProgress?: ((progress: { bytes: number; total: number }) => void) | undefined;
}

export interface SendResult extends SentFile {
  /** The file that was sent. */
  path: string;
}

/**
 * Sends one file and resolves once the receiver has confirmed it: complete, checked
 * against the digest, and durable under its final name (`result.name`). Against a
 * classic tutorial receiver, which confirms nothing, it resolves with `verified: false`
 * (or fails with UnverifiedError when `verifiedOnly`). Rejects with an FtxError.
 */
export async function send(options: SendOptions): Promise<SendResult> {
  const destination = resolveDestination(options.to);
  const timeoutMs = validateTimeout('timeoutMs', options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  if (options.hash !== undefined && !isDigestName(options.hash)) throw new UsageError(`hash must be one of ${DIGEST_NAMES.join(', ')}, not ${String(options.hash)}`);
  const log = options.log ?? silentLog;
  const onStart = guarded(log, 'onStart', options.onStart);
  const onProgress = guarded(log, 'onProgress', options.onProgress);
  const source = await openSource(options.path, options.name);
  try {
    const socket = await connect(destination, { timeoutMs, signal: options.signal });
    const peer = formatHostPort(destination);
    options.log?.debug({ destination: peer }, 'connected');
    try {
      const sent = await sendOverConnection(socket, source, {
        idleTimeoutMs: timeoutMs,
        hash: options.hash,
        verifiedOnly: options.verifiedOnly,
        signal: options.signal,
        log: options.log,
        onStart: ({ size, protocol }) => onStart?.({ size, protocol, peer }),
        onProgress: onProgress && ((bytes) => onProgress({ bytes, total: source.size })),
      });
      return { ...sent, peer, path: source.path };
    } finally {
      socket.destroy();
    }
  } finally {
    await source.handle.close();
  }
}
