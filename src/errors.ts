/**
 * Every failure ftx can report, as one class per kind with a stable `code`.
 *
 * Library code rejects with these; it never prints or exits. Messages say what happened
 * in the library's own terms; a caller that has knobs of its own (the CLI has flags)
 * adds its advice from `code`, `reason` and `remedy`, never by parsing the message.
 *
 * `isFtxError()` and `instanceof FtxError` recognise errors from any copy of this
 * package (two versions in one node_modules tree, say): the classes carry a brand
 * registered with Symbol.for, not only their prototype.
 */

/** Stable identifiers of every kind of failure; scripts and the CLI's exit codes key on them. */
export type FtxErrorCode =
  | 'FTX_ERR_USAGE'
  | 'FTX_ERR_CONNECT'
  | 'FTX_ERR_LISTEN'
  | 'FTX_ERR_PROTOCOL'
  | 'FTX_ERR_CONNECTION_LOST'
  | 'FTX_ERR_REFUSED'
  | 'FTX_ERR_INTEGRITY'
  | 'FTX_ERR_TIMEOUT'
  | 'FTX_ERR_LOCAL_IO'
  | 'FTX_ERR_REMOTE_IO'
  | 'FTX_ERR_INTERRUPTED'
  | 'FTX_ERR_UNVERIFIED'
  | 'FTX_ERR_PARTIAL'
  | 'FTX_ERR_AUTH'
  | 'FTX_ERR_INTERNAL';

/**
 * The codes an Error frame may carry on the wire (PROTOCOL.md). The others are local:
 * a usage error or a failure to connect never reaches the peer.
 */
export const WIRE_ERROR_CODES = [
  'FTX_ERR_PROTOCOL',
  'FTX_ERR_CONNECTION_LOST',
  'FTX_ERR_INTEGRITY',
  'FTX_ERR_TIMEOUT',
  'FTX_ERR_REMOTE_IO',
  'FTX_ERR_LOCAL_IO',
  'FTX_ERR_INTERRUPTED',
  'FTX_ERR_REFUSED',
  'FTX_ERR_INTERNAL',
  'FTX_ERR_AUTH',
] as const satisfies readonly FtxErrorCode[];

/** Why a receiver declines a file. Sent on the wire (PROTOCOL.md: Refuse, and Error with FTX_ERR_REFUSED). */
export const REFUSAL_REASONS = ['exists', 'no-space', 'too-large', 'bad-name', 'busy', 'unsupported'] as const;
export type RefusalReason = (typeof REFUSAL_REASONS)[number];

/**
 * What would make the failure go away, when it is a setting of the caller's: the CLI
 * turns each into the flag that does it ("raise --timeout"). Never sent on the wire.
 */
export type Remedy =
  /** The peer is slow, not dead: wait longer. */
  | 'raise-timeout'
  /** Send the file under another name. */
  | 'rename'
  /** The receiver could allow names that start with a dot. */
  | 'allow-dotfiles'
  /** Choose another port. */
  | 'choose-port'
  /** Listen on an address of this machine. */
  | 'check-bind'
  /** The receiver may replace what is there. */
  | 'overwrite'
  /** A named pipe cannot be sent as a file, but what it carries can go as a stream. */
  | 'send-as-stream'
  /** The peer takes only callers with a key: give one. */
  | 'use-key'
  /** A symbolic link was skipped: following links would send what it points to. */
  | 'follow-symlinks';

export interface FtxErrorOptions {
  cause?: unknown;
  remedy?: Remedy;
  fromPeer?: boolean;
}

const BRAND = Symbol.for('ftx.error');

export abstract class FtxError extends Error {
  abstract readonly code: FtxErrorCode;
  /** What the caller could change to succeed, if anything (see Remedy). */
  readonly remedy: Remedy | undefined;
  /** True when the peer reported this failure in an Error frame: the story is the peer's own. */
  readonly fromPeer: boolean;

  constructor(message: string, options?: FtxErrorOptions) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.remedy = options?.remedy;
    this.fromPeer = options?.fromPeer ?? false;
  }

  override get name(): string {
    return this.constructor.name;
  }

  /** Brand check, so `instanceof FtxError` holds for errors of another copy of the package too. */
  static override [Symbol.hasInstance](value: unknown): boolean {
    if (this !== FtxError) return Function.prototype[Symbol.hasInstance].call(this, value);
    return isFtxError(value);
  }
}
Object.defineProperty(FtxError.prototype, BRAND, { value: true });

/** True for an error from any copy of ftx (see FtxError). */
export function isFtxError(error: unknown): error is FtxError {
  return typeof error === 'object' && error !== null && (error as Record<symbol, unknown>)[BRAND] === true;
}

/** The call itself is wrong: a missing argument, a port out of range. */
export class UsageError extends FtxError {
  readonly code = 'FTX_ERR_USAGE';
}

/** The sender could not reach the receiver: refused, unknown host, unreachable. */
export class ConnectError extends FtxError {
  readonly code = 'FTX_ERR_CONNECT';
}

/** The receiver could not listen: port in use, not allowed, address not local. */
export class ListenError extends FtxError {
  readonly code = 'FTX_ERR_LISTEN';
}

/** The peer said something that breaks the protocol (garbage, oversized frame, extra bytes). */
export class ProtocolError extends FtxError {
  readonly code = 'FTX_ERR_PROTOCOL';
}

/** The peer went away (EOF, reset) before the conversation was complete. */
export class ConnectionLostError extends FtxError {
  readonly code = 'FTX_ERR_CONNECTION_LOST';
}

/** The receiver declined the file: before any data (a Refuse), or after it (the name was taken meanwhile). */
export class RefusedError extends FtxError {
  readonly code = 'FTX_ERR_REFUSED';
  readonly reason: RefusalReason;

  constructor(reason: RefusalReason, message: string, options?: FtxErrorOptions) {
    super(message, options);
    this.reason = reason;
  }
}

/** The bytes on the receiver are not the bytes the sender read. */
export class IntegrityError extends FtxError {
  readonly code = 'FTX_ERR_INTEGRITY';
}

/** The peer stopped talking, or moved too slowly, for longer than the timeout allows. */
export class TimeoutError extends FtxError {
  readonly code = 'FTX_ERR_TIMEOUT';
}

/** Reading or writing a file on this machine failed. */
export class LocalIoError extends FtxError {
  readonly code = 'FTX_ERR_LOCAL_IO';
}

/** The receiver failed to store the file after accepting it (its disk is full, or a bug). */
export class RemoteIoError extends FtxError {
  readonly code = 'FTX_ERR_REMOTE_IO';
}

/** The work was stopped from outside: an AbortSignal fired (the CLI aborts on Ctrl-C, SIGTERM, SIGHUP). */
export class InterruptedError extends FtxError {
  readonly code = 'FTX_ERR_INTERRUPTED';
  /** The signal that stopped the process, when the caller says (the CLI's exit code depends on it). */
  readonly signal: NodeJS.Signals | undefined;

  constructor(message: string, signal?: NodeJS.Signals) {
    super(message);
    this.signal = signal;
  }
}

/** Delivery could not be confirmed (a classic peer sends no receipt) and the caller required it. */
export class UnverifiedError extends FtxError {
  readonly code = 'FTX_ERR_UNVERIFIED';
}

/** One failed entry of a session, as PartialError and the session's results list it. */
export interface EntryFailure {
  /** The entry's path as the sender sent it. */
  path: string;
  code: FtxErrorCode;
  /** For a refusal: why. */
  reason?: RefusalReason | undefined;
  message: string;
  /** What this end's caller could change (never sent on the wire, so never set on the sending end). */
  remedy?: Remedy | undefined;
}

/**
 * A session ended, and some of its entries did not make it: refused, unreadable on the
 * sender, or failed their digest. The others are stored and verified. `failures` lists
 * the first 100; `failed` counts them all.
 */
export class PartialError extends FtxError {
  readonly code = 'FTX_ERR_PARTIAL';
  readonly stored: number;
  readonly failed: number;
  readonly failures: readonly EntryFailure[];

  constructor(message: string, counts: { stored: number; failed: number; failures: readonly EntryFailure[] }, options?: FtxErrorOptions) {
    super(message, options);
    this.stored = counts.stored;
    this.failed = counts.failed;
    this.failures = counts.failures;
  }
}

/**
 * The peers could not prove who they are to each other: a wrong or unknown key, a
 * sender without a key facing a receiver that wants one, or a sender with a key facing a
 * receiver that takes anyone (never a silent downgrade to plain text).
 */
export class AuthError extends FtxError {
  readonly code = 'FTX_ERR_AUTH';
}

/** Something ftx did not expect: a bug. The CLI exits 1 and asks for a report. */
export class InternalError extends FtxError {
  readonly code = 'FTX_ERR_INTERNAL';
}

/** Why an AbortSignal fired, as an FtxError: the reason it was aborted with, or a generic interruption. */
export function abortReason(signal: AbortSignal | undefined): FtxError {
  const reason: unknown = signal?.reason;
  return isFtxError(reason) ? reason : new InterruptedError('interrupted');
}

/**
 * Turns an error from node:fs into a LocalIoError whose message names the path and
 * says what is wrong. `action` reads as a verb phrase: "read", "write", "create".
 */
export function localIoError(error: unknown, action: string, path: string): LocalIoError {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  const because = (what: string) => new LocalIoError(`cannot ${action} ${path}: ${what}`, { cause: error });
  switch (code) {
    case 'ENOENT':
      return because('no such file or folder; check the path');
    case 'EISDIR':
      return because('it is a folder');
    case 'ENOTDIR':
      return because('a part of the path is not a folder; check the path');
    case 'EACCES':
    case 'EPERM':
      return because('permission denied; check its owner and mode');
    case 'ENOSPC':
    case 'EDQUOT':
      return because('the disk is full; free some space and try again');
    case 'EROFS':
      return because('the file system is read-only; choose another folder');
    case 'EEXIST':
      return because('it already exists');
    case 'ENAMETOOLONG':
      return because('the name or path is too long for the file system');
    default:
      return because(error instanceof Error ? error.message : String(error));
  }
}
