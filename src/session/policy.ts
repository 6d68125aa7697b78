/**
 * What a receiving connection asks of whoever accepted it, once a sender's request has
 * passed the per-file checks: may it take this file now? A one-shot receiver takes one
 * file; serve mode has limits on transfers in flight (in all and per host), names in
 * flight, and the space transfers in flight still need.
 */
import type { RefusalReason } from '../errors.js';

/** A sender's request, once the receiver knows where the file would go. */
export interface TransferRequest {
  /** Where the file goes: the name the sender gave, or for 'rename' a free name picked before the Accept. */
  path: string;
  size: number;
  /** Free bytes in the target's file system (statfs), when known. */
  freeBytes: number | undefined;
  /** The sender's address, "host:port". */
  peer: string;
  /** Bytes of this transfer already on disk (statfs no longer counts them as free). */
  bytesWritten(): number;
}

export interface Refusal {
  reason: RefusalReason;
  message: string;
}

export interface ConnectionPolicy {
  /** Returns why not, or undefined to go ahead; a claim is held until release(). */
  claim(request: TransferRequest): Refusal | undefined;
  release(request: TransferRequest): void;
  /** True when a transfer in flight is writing `path` (a renaming receiver picks past it). */
  isInFlight?(path: string): boolean;
}

export const alwaysAccept: ConnectionPolicy = { claim: () => undefined, release: () => {} };
