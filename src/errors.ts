/**
 * Every failure ftx can report, as one class per kind with a stable `code`.
 *
 * Library code rejects with these; only the CLI turns them into a message line and
 * an exit code (see exit-codes.ts). Messages are written for the person at the
 * terminal: what happened, then what to do about it.
 */

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
  | 'FTX_ERR_INTERNAL';

export abstract class FtxError extends Error {
  abstract readonly code: FtxErrorCode;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }

  override get name(): string {
    return this.constructor.name;
  }
}

/** The command line itself is wrong: a missing argument, a port out of range. */
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

/** Why a receiver declines a file before any data moves. Sent on the wire (PROTOCOL.md). */
export type RefusalReason = 'exists' | 'no-space' | 'too-large' | 'bad-name' | 'busy';

/** The receiver declined the file before any data was sent. */
export class RefusedError extends FtxError {
  readonly code = 'FTX_ERR_REFUSED';
  readonly reason: RefusalReason;

  constructor(reason: RefusalReason, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.reason = reason;
  }
}

/** The bytes on the receiver are not the bytes the sender read. */
export class IntegrityError extends FtxError {
  readonly code = 'FTX_ERR_INTEGRITY';
}

/** The peer stopped talking for longer than --timeout allows. */
export class TimeoutError extends FtxError {
  readonly code = 'FTX_ERR_TIMEOUT';
}

/** Reading or writing a file on this machine failed. */
export class LocalIoError extends FtxError {
  readonly code = 'FTX_ERR_LOCAL_IO';
  /** The errno code from node:fs, when there was one (ENOENT, ENOSPC, ...). */
  readonly syscallCode: string | undefined;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    const cause = options?.cause as NodeJS.ErrnoException | undefined;
    this.syscallCode = typeof cause?.code === 'string' ? cause.code : undefined;
  }
}

/** The receiver failed to store the file after accepting it (its disk is full, ...). */
export class RemoteIoError extends FtxError {
  readonly code = 'FTX_ERR_REMOTE_IO';
}

/** The user interrupted (Ctrl-C, SIGTERM). */
export class InterruptedError extends FtxError {
  readonly code = 'FTX_ERR_INTERRUPTED';
  readonly signal: NodeJS.Signals | undefined;

  constructor(message: string, signal?: NodeJS.Signals) {
    super(message);
    this.signal = signal;
  }
}

/** Delivery could not be confirmed (a classic peer sends no receipt) and the user required it. */
export class UnverifiedError extends FtxError {
  readonly code = 'FTX_ERR_UNVERIFIED';
}

/** Something ftx did not expect: a bug. The CLI exits 1 and asks for a report. */
export class InternalError extends FtxError {
  readonly code = 'FTX_ERR_INTERNAL';
}

/** Why an AbortSignal fired, as the InterruptedError the CLI aborts with (or a generic one). */
export function interruptionOf(signal: AbortSignal | undefined): InterruptedError {
  const reason: unknown = signal?.reason;
  return reason instanceof InterruptedError ? reason : new InterruptedError('interrupted');
}

export function isFtxError(error: unknown): error is FtxError {
  return error instanceof FtxError;
}

/**
 * Turns an error from node:fs into a LocalIoError whose message names the path and
 * says what to do. `action` reads as a verb phrase: "read", "write", "create".
 */
export function localIoError(error: unknown, action: string, path: string): LocalIoError {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case 'ENOENT':
      return new LocalIoError(`cannot ${action} ${path}: no such file or folder; check the path`, { cause: error });
    case 'EISDIR':
      return new LocalIoError(`cannot ${action} ${path}: it is a folder; ftx sends one file (archive the folder first, e.g. tar czf)`, { cause: error });
    case 'ENOTDIR':
      return new LocalIoError(`cannot ${action} ${path}: a part of the path is not a folder; check the path`, { cause: error });
    case 'EACCES':
    case 'EPERM':
      return new LocalIoError(`cannot ${action} ${path}: permission denied; check its owner and mode`, { cause: error });
    case 'ENOSPC':
    case 'EDQUOT':
      return new LocalIoError(`cannot ${action} ${path}: the disk is full; free some space and try again`, { cause: error });
    case 'EROFS':
      return new LocalIoError(`cannot ${action} ${path}: the file system is read-only; choose another folder`, { cause: error });
    case 'EEXIST':
      return new LocalIoError(`cannot ${action} ${path}: it already exists`, { cause: error });
    default: {
      const detail = error instanceof Error ? error.message : String(error);
      return new LocalIoError(`cannot ${action} ${path}: ${detail}`, { cause: error });
    }
  }
}
