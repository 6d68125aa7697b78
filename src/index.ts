/**
 * ftx as a library: send, receive and serve files over TCP, verified end to end, with
 * the same safety as the CLI (staged files, digests on both ends, fsync before the
 * receipt, no clobbering, bounded hostile peers). One call per job, each owning what it
 * opens; progress through callbacks; failures as FtxError with stable codes. The library
 * never prints, never exits and never touches process-wide state.
 *
 *   import { receive, send } from 'ftx';
 *   const receiver = await receive({ target: 'inbox/', port: 0 });
 *   const sent = await send({ path: 'photo.jpg', to: { host: '127.0.0.1', port: receiver.port } });
 *   const stored = await receiver.done;
 *
 * Folders and several files go in one session: send({ paths: ['photos', 'notes.txt'], to }),
 * received into a folder target; a stream of unknown size: send({ stream, name, to }).
 */
export { send, type SendOptions, type SendResult } from './api/send.js';
export { receive, type ReceiveHandle, type ReceiveOptions, type Stray } from './api/receive.js';
export { serve, type ConnectionEvent, type ServeHandle, type ServeOptions, type TransferInfo } from './api/serve.js';
export { ping, type PingOptions, type PingResult } from './api/ping.js';
export type { Destination } from './api/options.js';
export type { ReceivingOptions } from './api/receiving.js';
export type { ReceivedFile } from './receiver.js';
export type { EntryOutcome, ResumeEvent, SessionCounts } from './session/receive-session.js';
export type { SentEntry } from './session/send-session.js';
export { countTree, type TreeTotals } from './fs/walk.js';
export { generateKey, newCode, readKeyFile } from './transport/keys.js';
export { CONFLICT_POLICIES, type ConflictPolicy, type Leftover } from './fs/staged-file.js';
export type { Protocol } from './protocol/messages.js';
export type { Log, LogMethod } from './util/log.js';
export { blake3Engine, DEFAULT_DIGEST, DIGEST_NAMES, DIGESTS, type Blake3Engine, type DigestAlgorithm, type DigestName, type Hasher } from './digest/registry.js';
export {
  AuthError,
  ConnectError,
  ConnectionLostError,
  FtxError,
  IntegrityError,
  InternalError,
  InterruptedError,
  isFtxError,
  ListenError,
  LocalIoError,
  PartialError,
  ProtocolError,
  REFUSAL_REASONS,
  RefusedError,
  RemoteIoError,
  TimeoutError,
  UnverifiedError,
  UsageError,
  WIRE_ERROR_CODES,
  type EntryFailure,
  type FtxErrorCode,
  type FtxErrorOptions,
  type RefusalReason,
  type Remedy,
} from './errors.js';
export * as defaults from './defaults.js';
export { enableGarbageNudges } from './util/gc-nudge.js';
export { VERSION } from './util/version.js';
export { formatBytes, parseByteSize } from './util/units.js';
