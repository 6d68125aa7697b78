/**
 * A session's verdict for its caller, the same on both ends: nothing when every entry
 * made it; the entry's own error when the session was one entry (a refusal, a digest
 * mismatch: the errors, and exit codes, of a single file); otherwise a PartialError that
 * counts and lists the failures.
 */
import { IntegrityError, PartialError, RefusedError, RemoteIoError, type EntryFailure, type FtxError } from '../errors.js';

export interface SessionTally {
  entries: number;
  files: number;
  folders: number;
  failed: number;
  failures: EntryFailure[];
}

/** `refusedBy`: how a refusal reads from this end ("the receiver refused the file: …" on the sender). */
export function sessionFailure(tally: SessionTally, refusedBy = ''): FtxError | undefined {
  if (tally.failed === 0) return undefined;
  const first = tally.failures[0];
  const told = refusedBy === '' ? (first?.remedy ? { remedy: first.remedy } : undefined) : { fromPeer: true };
  if (tally.failed === 1 && tally.files + tally.folders === 0 && first) {
    if (first.code === 'FTX_ERR_REFUSED') return new RefusedError(first.reason ?? 'busy', `${refusedBy}${first.message}`, told);
    if (first.code === 'FTX_ERR_INTEGRITY') return new IntegrityError(first.message, told);
    if (first.code === 'FTX_ERR_REMOTE_IO') return new RemoteIoError(first.message, told);
  }
  const stored = tally.files + tally.folders;
  const listed = tally.failures
    .slice(0, 3)
    .map((failure) => `${JSON.stringify(failure.path)}: ${failure.message}`)
    .join('; ');
  const more = tally.failed > 3 ? `; and ${tally.failed - 3} more` : '';
  return new PartialError(`${tally.failed} ${tally.failed === 1 ? 'entry was' : 'entries were'} not stored (${stored} ${stored === 1 ? 'was' : 'were'}): ${listed}${more}`, {
    stored,
    failed: tally.failed,
    failures: tally.failures,
  });
}
