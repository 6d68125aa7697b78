/**
 * What a receiving connection asks of whoever accepted it: may it take a transfer now
 * (a slot), and may it write this file (its name, its space)? A one-shot receiver takes
 * one transfer; serve mode has limits on transfers in flight (in all and per host),
 * names in flight, and the space transfers in flight still need.
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
  /**
   * Bytes of this transfer already on disk (statfs no longer counts them as free): what
   * it has written, from the start of the file (a resumed file's kept bytes included).
   */
  bytesWritten(): number;
  /** Bytes a kept partial holds when the transfer is decided (a resumed file): they need no free space. */
  held?: number | undefined;
  /** Set once the file is under its final name (what a quota then counts as stored). */
  committed?: boolean | undefined;
}

export interface Refusal {
  reason: RefusalReason;
  message: string;
}

export interface ConnectionPolicy {
  /**
   * This connection's transfer slot: its one file (protocol 1) or its session of entries
   * (protocol 2). Returns why not, or undefined; held until releaseSlot().
   */
  claimSlot(): Refusal | undefined;
  releaseSlot(): void;
  /** A file's target path and the space it still needs, while it is written; held until release(). */
  claim(request: TransferRequest): Refusal | undefined;
  release(request: TransferRequest): void;
  /** True when a transfer in flight is writing `path` (a renaming receiver picks past it). */
  isInFlight?(path: string): boolean;
}

export const alwaysAccept: ConnectionPolicy = { claimSlot: () => undefined, releaseSlot: () => {}, claim: () => undefined, release: () => {} };
