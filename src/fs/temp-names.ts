/**
 * How ftx names its temporary files, so a leftover from a crash is easy to spot and a
 * sender can never choose such a name: `.NAME.XXXXXXXX.ftx-part`. Pure: no file system.
 */

/** Prefix and suffix of temporary files. */
export const TEMP_PREFIX = '.';
export const TEMP_SUFFIX = '.ftx-part';

/** Start of the case-folding probe's name (case-folding.ts): a temporary file, but no transfer's. */
export const CASE_PROBE_PREFIX = `${TEMP_PREFIX}ftx-case-probe.`;

export function isTemporaryName(name: string): boolean {
  return name.startsWith(TEMP_PREFIX) && name.endsWith(TEMP_SUFFIX);
}
