/**
 * The one table from error codes to process exit codes. README.md documents it;
 * scripts depend on it, so a number never changes meaning.
 */
import type { FtxErrorCode } from '../errors.js';

export const EXIT_OK = 0;
/** A bug in ftx: an error it did not expect. */
export const EXIT_INTERNAL = 1;

export const EXIT_CODES: Record<FtxErrorCode, number> = {
  FTX_ERR_USAGE: 2,
  FTX_ERR_CONNECT: 3,
  FTX_ERR_LISTEN: 3,
  FTX_ERR_PROTOCOL: 4,
  FTX_ERR_REFUSED: 5,
  FTX_ERR_INTEGRITY: 6,
  FTX_ERR_TIMEOUT: 7,
  FTX_ERR_LOCAL_IO: 8,
  FTX_ERR_CONNECTION_LOST: 9,
  FTX_ERR_REMOTE_IO: 10,
  FTX_ERR_UNVERIFIED: 11,
  FTX_ERR_PARTIAL: 12,
  FTX_ERR_AUTH: 13,
  FTX_ERR_INTERNAL: EXIT_INTERNAL,
  // 128 + SIGINT, as shells report a process killed by Ctrl-C.
  FTX_ERR_INTERRUPTED: 130,
};

/** 128 + the signal number, for an interruption by SIGTERM rather than SIGINT. */
export const EXIT_SIGTERM = 143;
