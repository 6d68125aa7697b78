/**
 * The CLI's advice on a failure: the library says what happened in its own terms; this
 * adds the flag that would help, keyed on the error's code, reason and remedy, never on
 * its wording.
 */
import type { FtxError, RefusedError, Remedy } from '../index.js';

/** Which end of a transfer this process is: advice differs (the sender renames, the receiver allows). */
export type Side = 'sender' | 'receiver';

const REMEDIES: Record<Remedy, string> = {
  'raise-timeout': 'raise --timeout for slow links',
  rename: 'send it under another name with --name',
  'allow-dotfiles': 'start the receiver with --allow-dotfiles to accept such names',
  'choose-port': 'pick another with --port',
  'check-bind': 'check --bind',
  overwrite: 'add --force to replace it',
  'send-as-stream': 'to send what it carries, read it as a stream: cat PIPE | ftx send - HOST --name NAME',
  'use-key': 'give your key with --key-file',
  'follow-symlinks': '--follow-symlinks sends its target',
};

/** The flag that would help, for a remedy the library names outside an error (a skipped entry). */
export function remedyHint(remedy: Remedy | undefined): string | undefined {
  return remedy === undefined ? undefined : REMEDIES[remedy];
}

/** The error's message, with the flag that would help in parentheses when there is one. */
export function describeFailure(error: FtxError, side: Side): string {
  const hint = hintFor(error, side);
  return hint ? `${error.message} (${hint})` : error.message;
}

export function hintFor(error: FtxError, side: Side): string | undefined {
  if (error.remedy) {
    // The receiver's advice to rename is for its sender; its own operator may allow names.
    if (side === 'receiver' && error.remedy === 'rename') return undefined;
    return REMEDIES[error.remedy];
  }
  // A refusal that came over the wire carries its reason, not the receiver's remedy.
  if (side === 'sender' && error.code === 'FTX_ERR_REFUSED') {
    const reason = (error as RefusedError).reason;
    if (reason === 'exists' || reason === 'bad-name') return REMEDIES.rename;
  }
  if (error.code === 'FTX_ERR_UNVERIFIED') return 'because of --verified-only';
  if (error.code === 'FTX_ERR_INTERNAL') return 'a bug in ftx; please report it';
  return undefined;
}
