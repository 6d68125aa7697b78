/**
 * File names chosen by the sender are untrusted input. A receiver that stores files
 * in a folder uses a name only if it is one plain file name: never a path, never
 * something a file system treats specially. A bad name is refused with the reason,
 * never "fixed" into some other name (a fix could land somewhere the user did not
 * expect).
 */
import { MAX_NAME_BYTES } from './messages.js';
import { isTemporaryName } from './staged-file.js';

/** Names Windows reserves in any folder, with or without an extension. */
const WINDOWS_DEVICE_NAME = /^(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³]|conin\$|conout\$)(\..*)?$/i;

// Control characters (C0, DEL, C1) could rewrite a terminal or a log line.
// eslint-disable-next-line no-control-regex
const CONTROL_CHARACTER = /[\u0000-\u001f\u007f-\u009f]/;

/** Returns why `name` is not acceptable as a plain file name, or undefined if it is. */
export function problemWithName(name: string): string | undefined {
  if (name.length === 0) return 'the name is empty';
  // A lone UTF-16 surrogate cannot be written as UTF-8: the file system would get U+FFFD,
  // a different name from the one sent (and the same as other such names).
  if (Buffer.from(name, 'utf8').toString('utf8') !== name) return 'the name is not valid Unicode';
  if (Buffer.byteLength(name, 'utf8') > MAX_NAME_BYTES) return `the name is longer than ${MAX_NAME_BYTES} bytes`;
  if (name === '.' || name === '..') return `"${name}" is not a file name`;
  if (name.includes('/') || name.includes('\\')) return 'the name contains a path separator';
  if (CONTROL_CHARACTER.test(name)) return 'the name contains a control character';
  if (WINDOWS_DEVICE_NAME.test(name)) return 'the name is a reserved device name';
  if (/[. ]$/.test(name)) return 'the name ends with a dot or a space';
  if (isTemporaryName(name)) return "the name looks like one of ftx's temporary files";
  return undefined;
}
