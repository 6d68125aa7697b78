/**
 * File names chosen by the sender are untrusted input. A receiver that stores files
 * in a folder uses a name only if it is one plain file name: never a path, never
 * something a file system treats specially, never something that reads as a different
 * name from the one stored. A bad name is refused with the reason, never "fixed" into
 * some other name (a fix could land somewhere the user did not expect).
 *
 * The one change a receiver does make is canonicalName() (NFC), which changes the bytes
 * but not the name a person reads; see there. The order for a receiver is:
 *   const name = canonicalName(sent); problemWithName(name) ?? store under `name`.
 *
 * Pure: no file system here. Probes of the target file system (does it fold case?)
 * live in case-folding.ts.
 */
import { isTemporaryName } from './temp-names.js';

/** Longest file name, in UTF-8 bytes (the usual NAME_MAX); a header may carry no longer one. */
export const MAX_NAME_BYTES = 255;

/** Names Windows reserves in any folder, with or without an extension. */
const WINDOWS_DEVICE_NAME = /^(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³]|conin\$|conout\$)(\..*)?$/i;

// Control characters (C0, DEL, C1) could rewrite a terminal or a log line.
// eslint-disable-next-line no-control-regex
const CONTROL_CHARACTER = /[\u0000-\u001f\u007f-\u009f]/;

/** U+2028 and U+2029 (the only Zl and Zp characters): a line break in a log or a listing. */
const LINE_SEPARATOR = /[\p{Zl}\p{Zp}]/u;

/**
 * Characters a reader cannot see, or that change the direction of the text around them:
 * "invoice\u202Efdp.exe" displays as "invoiceexe.pdf", and "report\u200B.pdf" looks like
 * "report.pdf" though it is another file. That is every format character (Cf: bidi
 * controls and marks, zero-width space/joiners, word joiner, invisible operators, BOM,
 * soft hyphen, Mongolian vowel separator, tag characters, Arabic number signs) and every
 * other default-ignorable code point (combining grapheme joiner, Hangul fillers,
 * variation selectors, Khmer inherent vowels, unassigned ignorables).
 *
 * The cost, accepted for the simpler rule: names that need U+200C/U+200D (Persian words
 * with a zero-width non-joiner, emoji ZWJ sequences such as a family, subdivision flags)
 * are refused too, and the sender renames with --name. The one exception is a variation
 * selector where it picks how the character before it is drawn (PERMITTED_VARIATION),
 * since "❤️" (U+2764 U+FE0F) is how emoji are usually typed.
 */
const INVISIBLE_CHARACTER = /[\p{Cf}\p{Default_Ignorable_Code_Point}]/u;

/**
 * Variation selectors that do something visible: VS15/VS16 (text or emoji style) after a
 * pictograph or in a keycap ("1\uFE0F\u20E3"), and the other selectors after a CJK
 * ideograph (ideographic variation sequences). A selector anywhere else draws nothing.
 */
const PERMITTED_VARIATION = /(?<=\p{Extended_Pictographic})[\uFE0E\uFE0F]|(?<=[0-9#*])\uFE0F(?=\u20E3)|(?<=\p{Ideographic})[\uFE00-\uFE0D\u{E0100}-\u{E01EF}]/gu;

/**
 * Slashes with no compatibility mapping (so NFKC keeps them) that still read as a path
 * separator: division slash, fraction slash, set minus, reverse solidus operator, big
 * solidus and big reverse solidus. "docs∕secret.pdf" in a listing looks like a path.
 */
const SLASH_LOOKALIKE = /[\u2044\u2215\u2216\u29F5\u29F8\u29F9]/u;

/**
 * The name a receiver stores and compares: the sent name in Unicode Normalization Form C.
 *
 * Normalize, not refuse: macOS hands out decomposed names (NFD: "e" + U+0301), so
 * refusing non-NFC names would refuse most accented names sent from a Mac. NFC and NFD
 * of a name are canonically equivalent (the same name to a person, and the same file on
 * APFS), so storing the NFC form changes no name anyone can see; storing both as they
 * came would give two files that look identical ("café" and "café"), a spoofing and
 * duplication hazard. NFC rather than NFD because it is what Linux, Windows and the web
 * produce, so a name typed on the receiver's machine finds the stored file.
 *
 * Compatibility forms (NFKC) are not applied: they change visible characters ("ﬁ" to
 * "fi", "²" to "2"), which would be fixing a name; problemWithName refuses the names
 * whose NFKC form is dangerous instead.
 */
export function canonicalName(name: string): string {
  return name.normalize('NFC');
}

/**
 * Returns why `name` is not acceptable as a plain file name, or undefined if it is.
 * The checks apply to canonicalName(name), the name a receiver stores: a sender's NFD
 * name is accepted, and stored in NFC.
 */
export function problemWithName(sentName: string): string | undefined {
  if (sentName.length === 0) return 'the name is empty';
  // A lone UTF-16 surrogate cannot be written as UTF-8: the file system would get U+FFFD,
  // a different name from the one sent (and the same as other such names).
  if (Buffer.from(sentName, 'utf8').toString('utf8') !== sentName) return 'the name is not valid Unicode';
  const name = canonicalName(sentName);
  // Both forms: the sent one crosses the wire, and NFC is longer for a few characters
  // ("\u0958" becomes two).
  if (Math.max(Buffer.byteLength(sentName, 'utf8'), Buffer.byteLength(name, 'utf8')) > MAX_NAME_BYTES) {
    return `the name is longer than ${MAX_NAME_BYTES} bytes`;
  }
  if (name === '.' || name === '..') return `"${name}" is not a file name`;
  if (name.includes('/') || name.includes('\\')) return 'the name contains a path separator';
  if (CONTROL_CHARACTER.test(name)) return 'the name contains a control character';
  const separator = LINE_SEPARATOR.exec(name);
  if (separator) return `the name contains a line or paragraph separator (${codePointOf(separator[0])})`;
  const invisible = INVISIBLE_CHARACTER.exec(name.replace(PERMITTED_VARIATION, ''));
  if (invisible) return `the name contains an invisible or direction-changing Unicode character (${codePointOf(invisible[0])})`;
  const lookalike = SLASH_LOOKALIKE.exec(name);
  if (lookalike) return `the name contains a character that looks like a path separator (${codePointOf(lookalike[0])})`;
  if (WINDOWS_DEVICE_NAME.test(name)) return 'the name is a reserved device name';
  if (/[. ]$/.test(name)) return 'the name ends with a dot or a space';
  // Compatibility forms: fullwidth and small dots and slashes ("．．", "／", "․") become
  // ASCII under NFKC and under Windows "best-fit" conversion to a code page, so a name
  // that is harmless here can turn into ".." or a path in another program.
  const compatible = name.normalize('NFKC');
  if (compatible === '.' || compatible === '..') return `the name reads as "${compatible}" once its wide or small characters are made plain`;
  if (compatible.includes('/') || compatible.includes('\\')) return 'the name contains a character that stands for a path separator (a wide or small slash)';
  if (WINDOWS_DEVICE_NAME.test(compatible)) return 'the name is a reserved device name written in wide characters';
  if (/[. ]$/.test(compatible)) return 'the name ends with a character that stands for a dot or a space (a wide or small dot, or a wide or no-break space)';
  // Case-insensitively, so that on a file system that folds case (exFAT, NTFS, APFS by
  // default) a sent ".X.FTX-PART" cannot land on one of ftx's temporary files.
  if (isTemporaryName(name) || isTemporaryName(name.toLowerCase())) return "the name looks like one of ftx's temporary files";
  return undefined;
}

/**
 * True for a name that starts with a dot (".bash_profile", ".ssh"), including one whose
 * compatibility form does ("．bashrc"). Such names configure programs and are hidden
 * from listings, so a receiver refuses them at the top of its target folder unless it
 * was told to take them; inside a sent folder they are ordinary files. Meant for names
 * problemWithName accepted.
 */
export function isDotFile(name: string): boolean {
  const canonical = canonicalName(name);
  return canonical.startsWith('.') || canonical.normalize('NFKC').startsWith('.');
}

/**
 * A key under which names that a case-folding file system treats as one file are equal:
 * for names in flight and names already taken, when foldsCase() says the target folds.
 *
 * Upper-casing first, then lower-casing, then NFC. Folding file systems compare names
 * through an upper-case table (exFAT, FAT, NTFS) or through Unicode case folding (APFS,
 * ext4 casefold); names with the same upper case get the same key, so what an upper-case
 * table merges, the key merges too (test/names.test.ts checks this against a real exFAT).
 * JavaScript's full upper-case mapping merges a little more than such a table: "ı"
 * (dotless i) and "i" (both "I"), "ß" and "ss" (both "SS"); lower-casing afterwards
 * merges the few capitals that lower-case alike ("ϴ" and "Θ"), and NFC recomposes what
 * case mapping decomposed. Case mappings ignore the locale, so the key is the same on every machine. Merging names that one particular
 * file system keeps apart ("ß" and "ss" on exFAT) costs a needless refusal or "-1" name,
 * never two transfers writing one file.
 */
export function caseFoldKey(name: string): string {
  return canonicalName(name).toUpperCase().toLowerCase().normalize('NFC');
}

/** "U+202E" for a character, for messages. */
function codePointOf(character: string): string {
  return `U+${(character.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0')}`;
}
