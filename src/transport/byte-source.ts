/**
 * How incoming bytes reach a Channel (protocol/channel.ts): a stream's own reads, or a
 * source that can put file data straight into the receiver's buffers (direct-reads.ts).
 */

/** What a byte source rejects with when the peer closed before the bytes it owed. */
export const CONNECTION_CLOSED = 'the connection closed';

/** Incoming bytes, pulled one chunk at a time. */
export interface ByteSource {
  /** The next chunk, or null at EOF. */
  next(): Promise<Buffer | null>;
  /**
   * A source that can read file data straight into the receiver's buffers: bytes it has
   * read but not yet handed out, and the direct read itself (see DataSink).
   */
  takeQueued?(): Buffer[];
  readInto?(byteCount: number, sink: DataSink): Promise<void>;
}

/**
 * Where readDataInto() puts file data: regions of the receiver's own buffers, so bytes go
 * from the socket to the buffer that is written to disk with at most one copy.
 */
export interface DataSink {
  /** Where the next bytes go: a region of at most `limit` bytes (never empty). */
  region(limit: number): Buffer;
  /** `bytes` (the start of the last region) arrived. False: no room for more until room(). */
  filled(bytes: Buffer): boolean;
  /** Resolves once there is room again; rejects if the sink failed (its disk is full). */
  room(): Promise<void>;
}
