/**
 * How ftx names its temporary files, so a leftover from a crash is easy to spot and a
 * sender can never choose such a name: `.NAME.XXXXXXXX.ftx-part`. Pure: no file system.
 */

/** Prefix and suffix of temporary files. */
export const TEMP_PREFIX = '.';
export const TEMP_SUFFIX = '.ftx-part';

/** Suffix of a partial file's record (fs/partial.ts): `.NAME.KEY.ftx-resume`. */
export const RESUME_RECORD_SUFFIX = '.ftx-resume';

/** Suffix of a partial file's lock, held by the process writing it (fs/partial.ts): `.NAME.KEY.ftx-lock`. */
export const RESUME_LOCK_SUFFIX = '.ftx-lock';

/** Start of the case-folding probe's name (case-folding.ts): a temporary file, but no transfer's. */
export const CASE_PROBE_PREFIX = `${TEMP_PREFIX}ftx-case-probe.`;

/**
 * `name` cut to at most `maxBytes` of UTF-8, a whole character at a time (never half of a
 * surrogate pair): what goes before a temporary file's suffix, under NAME_MAX.
 */
export function stemOf(name: string, maxBytes: number): string {
  if (Buffer.byteLength(name, 'utf8') <= maxBytes) return name;
  let stem = '';
  let bytes = 0;
  for (const character of name) {
    bytes += Buffer.byteLength(character, 'utf8');
    if (bytes > maxBytes) break;
    stem += character;
  }
  return stem;
}

/** A temporary file of ftx's: a file being received, a partial kept for resume, its record or its lock. */
export function isTemporaryName(name: string): boolean {
  return name.startsWith(TEMP_PREFIX) && (name.endsWith(TEMP_SUFFIX) || name.endsWith(RESUME_RECORD_SUFFIX) || name.endsWith(RESUME_LOCK_SUFFIX));
}
