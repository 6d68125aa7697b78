/**
 * The sender's data path: file -> digest -> socket through a fixed ring of buffers
 * (fs/file-pump.ts: the file is read only as fast as the socket drains, memory stays
 * flat whatever the file size). While data flows the receiver may speak up (an Error
 * frame: its disk is full): that stops the data at once and is what the caller sees.
 */
import { abortReason, ConnectionLostError, isFtxError, LocalIoError, ProtocolError, type FtxError } from '../errors.js';
import { createHasher, type DigestName, type Hasher } from '../digest/registry.js';
import { pumpFile, type PumpOptions } from '../fs/file-pump.js';
import type { SourceFile } from '../fs/source.js';
import type { Channel } from '../protocol/channel.js';
import { whenAborted, within } from '../util/timers.js';
import { formatProgress } from '../util/units.js';

/** After the data pipe fails, how long to wait for the receiver's explanation. */
const EXPLANATION_WAIT_MS = 1_000;

export interface OutgoingDataOptions {
  signal?: AbortSignal | undefined;
  /** Protocol 2: the data goes out in Data frames (see pumpFile). */
  frames?: PumpOptions['frames'];
  /** A ring of buffers reused across a session's files (pumpBuffers()). */
  buffers?: Buffer[] | undefined;
  /** Called as bytes are read into the socket, with the count so far (this attempt's). */
  onProgress?: ((bytesSent: number) => void) | undefined;
  /**
   * A resumed transfer: the data starts at `offset`, and `hasher` has hashed the bytes
   * before it (the digest returned is still of the whole file).
   */
  resumeAt?: { offset: number; hasher: Hasher } | undefined;
}

/**
 * Streams exactly the file's size into the channel and returns the digest of what was
 * read. `peerVerdict`, when given, is a read that settles if the receiver speaks up
 * mid-transfer: an Error frame stops the data at once and becomes the error thrown.
 * While this runs the channel is in its data phase (no control frame may be written).
 */
export async function sendData(channel: Channel, source: SourceFile, algorithm: DigestName, peerVerdict: Promise<unknown> | undefined, options: OutgoingDataOptions): Promise<string> {
  const hash = options.resumeAt?.hasher ?? (await createHasher(algorithm));
  const start = options.resumeAt?.offset ?? 0;
  let bytesRead = start;
  if (source.size > start) {
    const stop = new AbortController();
    let pumping = true;
    // Only while the data flows: once it is all out, the verdict is the caller's to read.
    peerVerdict?.then(
      () => pumping && stop.abort(new ProtocolError('the receiver sent a receipt before the data was complete')),
      (error: unknown) => pumping && stop.abort(error),
    );
    // Stopping cuts the connection, which unblocks any write or drain being awaited.
    const stopListening = whenAborted(stop.signal, () => channel.destroy());
    const onProgress = options.onProgress;
    let sent = 0;
    channel.beginSendingData();
    try {
      bytesRead = await pumpFile({
        handle: source.handle,
        path: source.path,
        size: source.size,
        start,
        destination: channel.stream,
        signal: stop.signal,
        frames: options.frames,
        buffers: options.buffers,
        onChunk: (chunk) => {
          hash.update(chunk);
          sent += chunk.length;
          onProgress?.(sent);
        },
      });
    } catch (error) {
      if (stop.signal.aborted && isFtxError(stop.signal.reason)) throw lostMidTransfer(stop.signal.reason, channel, start + sent, source.size);
      if (options.signal?.aborted) throw abortReason(options.signal);
      if (error instanceof LocalIoError) throw error; // Reading our own file failed.
      // The connection broke: the receiver's Error frame, if it is on its way, says why.
      if (peerVerdict) {
        const explanation = await within(peerVerdict.then(() => undefined, (reason: unknown) => reason), EXPLANATION_WAIT_MS, () => undefined);
        if (isFtxError(explanation)) throw lostMidTransfer(explanation, channel, start + sent, source.size);
      }
      throw lostMidTransfer(channel.explain(error), channel, start + sent, source.size);
    } finally {
      pumping = false;
      stopListening();
      channel.endSendingData();
    }
  }
  if (bytesRead !== source.size) {
    throw new LocalIoError(`${source.path} shrank while it was being sent (${bytesRead} of ${source.size} bytes); send it again when nothing writes to it`);
  }
  return hash.digest();
}

/**
 * A connection lost while data flowed, told as such: "the receiver reset the connection
 * mid-transfer, after 120.0 MiB of 200.0 MiB (60%)". Without this the user reads what
 * the stalled read said ("closed the connection while ftx waited for a receipt"), as
 * if all the data had gone. What the receiver itself reported (an Error frame) is its
 * own explanation and kept.
 */
function lostMidTransfer(error: FtxError, channel: Channel, sentBytes: number, size: number): FtxError {
  if (!(error instanceof ConnectionLostError) || error.fromPeer) return error;
  const code = (error.cause as NodeJS.ErrnoException | undefined)?.code;
  const how = code === 'ECONNRESET' ? 'reset' : 'closed';
  return new ConnectionLostError(
    `${channel.peerRole} ${how} the connection mid-transfer, after ${formatProgress(sentBytes, size)} had been sent (was it stopped, or did it crash?); send the file again once it is back`,
    { cause: error },
  );
}
