/**
 * Whether a folder's file system treats names that differ only by case as one file
 * (exFAT, FAT, NTFS, APFS and HFS+ by default, SMB shares of those, ext4 folders with
 * the casefold attribute). There, "Report.pdf" and "report.pdf" sent at the same time
 * would be one file, so a receiver keys the names it has in flight by caseFoldKey()
 * (names.ts) instead of by the name itself.
 *
 * Asked of the folder, not of the mount: casefolding can be set per folder (ext4 +F).
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, open, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { CASE_PROBE_PREFIX, TEMP_SUFFIX } from './temp-names.js';

/**
 * Creates a uniquely named empty file in `folder` (exclusively, so it never touches an
 * existing file), asks for the same name in upper case, and removes the file again.
 * The name has the shape of an ftx temporary file, so if the process dies in between,
 * the leftover is reported like any other.
 *
 * False when the probe cannot tell: the folder is missing or read-only, or the file
 * cannot be created. A receiver that cannot write there will find out when it stores.
 */
export async function foldsCase(folder: string): Promise<boolean> {
  // Lowercase letters in both the fixed part and (usually) the random part.
  const probeName = `${CASE_PROBE_PREFIX}${randomBytes(4).toString('hex')}${TEMP_SUFFIX}`;
  const probePath = join(folder, probeName);
  let created = false;
  try {
    const handle = await open(probePath, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o600);
    created = true;
    await handle.close();
    // With a random part, an unrelated file of exactly this upper-case name is not a concern.
    const upper = await lstat(join(folder, probeName.toUpperCase())).catch(() => undefined);
    return upper !== undefined;
  } catch {
    return false;
  } finally {
    if (created) await unlink(probePath).catch(() => undefined);
  }
}
