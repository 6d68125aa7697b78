/**
 * The JSON payloads of control frames, and their validation. Everything here parses
 * untrusted bytes: each decoder either returns a fully checked object or throws
 * ProtocolError naming the field that was wrong. PROTOCOL.md documents each shape.
 */
import { ProtocolError, REFUSAL_REASONS, WIRE_ERROR_CODES, type FtxErrorCode, type RefusalReason } from '../errors.js';
import { encodeFrame, frameTypeName, FrameType, type Frame, type FrameTypeCode } from '../framing.js';
import { DIGEST_NAMES, DIGESTS, isDigestName, type DigestName } from '../digest/registry.js';
import { MAX_NAME_BYTES } from '../fs/names.js';


/** Which protocol a peer speaks: ftx's own, or the classic tutorial's (see classic.ts). */
export type Protocol = 'ftx' | 'classic';

export const PROTOCOL_NAME = 'ftx';
/**
 * The newest version this code speaks: 2, sessions of many entries. A receiver still
 * takes version 1's single Header; a sender falls back to it for a receiver that greets
 * with version 1 (ftx 0.1) when it sends one file of known size.
 */
export const PROTOCOL_VERSION = 2;
/** The versions this code speaks, listed in its Greeting. */
export const PROTOCOL_VERSIONS = [1, 2] as const;

/** A hash algorithm a sender may name in its header: a digest of the registry (digest/registry.ts). */
export type HashAlgorithm = DigestName;


export interface Greeting {
  protocol: typeof PROTOCOL_NAME;
  /** The newest version the receiver speaks. */
  version: number;
  /** Every version it speaks (absent before version 2: then just `version`). */
  versions?: number[];
  /**
   * 'psk': this receiver takes only senders that prove a key (TLS 1.3 with a pre-shared
   * key, started right after this greeting); the conversation runs inside TLS, starting
   * with a second Greeting. Absent: a plain-text receiver.
   */
  tls?: 'psk';
  software?: string;
  /**
   * The digests this receiver accepts in a Header. Absent from older receivers (ftx 0.1),
   * which accept LEGACY_DIGESTS. Unknown names from a newer peer are dropped.
   */
  digests?: DigestName[];
}

export interface Header {
  name: string;
  size: number;
  hash: HashAlgorithm;
  /** Permission bits of the source file (informational in version 1). */
  mode?: number;
  /** Modification time of the source, milliseconds since the epoch. */
  mtime?: number;
}

export interface Accept {
  /** Where the data starts; always 0 in version 1 (room for resume). */
  offset: number;
}

export interface Refuse {
  reason: RefusalReason;
  message: string;
}

export interface Trailer {
  hash: HashAlgorithm;
  digest: string;
}

export interface Receipt {
  bytes: number;
  hash: HashAlgorithm;
  digest: string;
  /** The name the receiver stored the file under (may differ from the header's). */
  name: string;
}

export interface ErrorMessage {
  code: FtxErrorCode;
  message: string;
  /** With FTX_ERR_REFUSED: why the receiver declined after its Accept (the name was taken meanwhile). */
  reason?: RefusalReason;
}

export interface Ping {
  message: string;
}

// ---- version 2: sessions ----------------------------------------------------------

/** sender -> receiver: a session begins. `entries` and `bytes` are totals when the sender knows them. */
export interface Open {
  version: number;
  hash: HashAlgorithm;
  /** How many entries will be sent, when known (a single stream: 1). */
  entries: number | null;
  /** How many bytes of file data, when known (a stream's size is not). */
  bytes: number | null;
  /**
   * The sender can resume (PROTOCOL.md, Resume): the receiver may offer an offset in a
   * Decision, and skip files it already has. Absent or false: every file is sent whole.
   */
  resume?: boolean;
}

export type EntryType = 'file' | 'dir';

/** sender -> receiver: one entry. Ids count up from 1 in the order entries are sent. */
export interface Entry {
  id: number;
  /** Relative, '/'-separated (fs/entry-paths.ts checks it). */
  path: string;
  type: EntryType;
  /** A file's size; null for a stream, whose size is known at its end (its Trailer). */
  size: number | null;
  mode?: number;
  mtime?: number;
}

export type DecisionAction = 'store' | 'skip' | 'refuse';

/** receiver -> sender: what happens to an entry, one per Entry, in the same order. */
export interface Decision {
  id: number;
  action: DecisionAction;
  /**
   * With 'store': where the receiver offers to start, the bytes of a partial file it keeps
   * from an earlier attempt (0: from the start). Above 0 only when the Open said `resume`;
   * the Prefix and Resume frames then settle where the data starts.
   */
  offset?: number;
  /** With 'refuse': why, as in Refuse ('skip': the receiver has the file already; message optional). */
  reason?: RefusalReason;
  message?: string;
}

/** sender -> receiver, after an entry's last Data frame: how much was sent and its digest. */
export interface EntryTrailer {
  id: number;
  bytes: number;
  hash: HashAlgorithm;
  digest: string;
}

/** sender -> receiver, after a Decision offering `offset` > 0: the digest of the sender's first `offset` bytes. */
export interface Prefix {
  id: number;
  /** The Decision's offset, or 0: the sender will not resume (it sends the file whole). */
  offset: number;
  hash: HashAlgorithm;
  /** Of the first `offset` bytes (with offset 0: of nothing). */
  digest: string;
}

/** receiver -> sender, answering a Prefix: where the entry's data starts. */
export interface Resume {
  id: number;
  /** The Prefix's offset when the receiver's bytes match it; else 0 (the file is sent whole). */
  offset: number;
  /** Why not, when the offset is 0 after a non-zero Prefix. */
  message?: string;
}

/** receiver -> sender: an entry is stored (verified, durable) or it failed. */
export interface Result {
  id: number;
  ok: boolean;
  /** Stored: where, relative to the receiver's target (its name may differ: 'rename'). */
  path?: string;
  digest?: string;
  /** Failed: what, and why. */
  code?: FtxErrorCode;
  reason?: RefusalReason;
  message?: string;
}

/** sender -> receiver: every entry has been sent. */
export interface End {
  entries: number;
  bytes: number;
}

/** receiver -> sender: the session's outcome, after every entry is durable. */
export interface Summary {
  entries: number;
  stored: number;
  skipped: number;
  failed: number;
  bytes: number;
}

/** Entry ids, byte counts and the like: whole numbers from 0 to 2^53-1. */
const MAX_ID = Number.MAX_SAFE_INTEGER;
/** Longest entry path in a frame, UTF-8 bytes (fs/entry-paths.ts has the finer rules). */
const MAX_PATH_FIELD_BYTES = 4096;

export interface Pong {
  /** The tutorial's time-stamp server format: `[<ctime>] <message>`. */
  reply: string;
  version: number;
  /** The receiver's clock, ISO 8601. */
  time: string;
}

/** Longest `message` a Refuse or Error frame may carry, in UTF-16 code units (PROTOCOL.md). */
export const MAX_TEXT = 1024;

/**
 * Cuts a message to `max` code units, marking the cut with an ellipsis and never
 * splitting a surrogate pair: whatever a message quotes (a peer's 255-byte name of
 * control characters, JSON-escaped), the frame stays within what the peer accepts.
 */
export function boundedText(text: string, max = MAX_TEXT): string {
  if (text.length <= max) return text;
  let end = max - 1;
  const last = text.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end -= 1;
  return `${text.slice(0, end)}…`;
}

export function jsonFrame(type: FrameTypeCode, body: object): Buffer {
  return encodeFrame(type, Buffer.from(JSON.stringify(body), 'utf8'));
}

function parseObject(frame: Frame): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(frame.payload.toString('utf8'));
  } catch {
    throw new ProtocolError(`${frameTypeName(frame.type)} frame is not valid JSON`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ProtocolError(`${frameTypeName(frame.type)} frame is not a JSON object`);
  }
  return value as Record<string, unknown>;
}

function fail(frame: Frame, field: string, expected: string): never {
  throw new ProtocolError(`${frameTypeName(frame.type)} frame: "${field}" must be ${expected}`);
}

function text(frame: Frame, body: Record<string, unknown>, field: string, max = MAX_TEXT): string {
  const value = body[field];
  if (typeof value !== 'string' || value.length > max) fail(frame, field, `a string of at most ${max} characters`);
  return value;
}

/** A file name: 1 to MAX_NAME_BYTES bytes of UTF-8. (Whether it is safe to use is names.ts's call.) */
function fileName(frame: Frame, body: Record<string, unknown>): string {
  const value = body.name;
  if (typeof value !== 'string' || value.length === 0 || Buffer.byteLength(value, 'utf8') > MAX_NAME_BYTES) {
    fail(frame, 'name', `a string of 1 to ${MAX_NAME_BYTES} bytes of UTF-8`);
  }
  return value;
}

function byteCount(frame: Frame, body: Record<string, unknown>, field: string): number {
  const value = body[field];
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    fail(frame, field, 'a whole number from 0 to 2^53-1');
  }
  return value;
}

function hashAlgorithm(frame: Frame, body: Record<string, unknown>): HashAlgorithm {
  const value = body.hash;
  if (!isDigestName(value)) fail(frame, 'hash', `one of ${DIGEST_NAMES.join(', ')}`);
  return value;
}

function digest(frame: Frame, body: Record<string, unknown>, algorithm: HashAlgorithm): string {
  const value = body.digest;
  const length = DIGESTS[algorithm].hexLength;
  if (typeof value !== 'string' || value.length !== length || !/^[0-9a-f]+$/.test(value)) {
    fail(frame, 'digest', `${length} lowercase hex digits for ${algorithm}`);
  }
  return value;
}

function expectType(frame: Frame, type: FrameTypeCode): void {
  if (frame.type !== type) {
    throw new ProtocolError(`expected a ${frameTypeName(type)} frame, got ${frameTypeName(frame.type)}`);
  }
}

function isRefusalReason(value: unknown): value is RefusalReason {
  return (REFUSAL_REASONS as readonly unknown[]).includes(value);
}

export function decodeGreeting(frame: Frame): Greeting {
  expectType(frame, FrameType.Greeting);
  const body = parseObject(frame);
  if (body.protocol !== PROTOCOL_NAME) fail(frame, 'protocol', `"${PROTOCOL_NAME}"`);
  const version = body.version;
  if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 1) fail(frame, 'version', 'a positive whole number');
  const greeting: Greeting = { protocol: PROTOCOL_NAME, version };
  if (body.versions !== undefined) {
    if (!Array.isArray(body.versions) || body.versions.length > 32 || !body.versions.every((v) => Number.isSafeInteger(v) && v >= 1)) fail(frame, 'versions', 'a list of positive whole numbers');
    greeting.versions = body.versions as number[];
  }
  if (body.software !== undefined) greeting.software = text(frame, body, 'software', 100);
  // Any other value is a way of proving who one is that this version does not know: not plain text either.
  if (body.tls !== undefined) {
    if (body.tls !== 'psk') fail(frame, 'tls', '"psk"');
    greeting.tls = 'psk';
  }
  if (body.digests !== undefined) {
    if (!Array.isArray(body.digests) || body.digests.length > 32 || !body.digests.every((name) => typeof name === 'string')) fail(frame, 'digests', 'a list of digest names');
    greeting.digests = body.digests.filter(isDigestName);
  }
  return greeting;
}

export function decodeHeader(frame: Frame): Header {
  expectType(frame, FrameType.Header);
  const body = parseObject(frame);
  const name = fileName(frame, body);
  const header: Header = { name, size: byteCount(frame, body, 'size'), hash: hashAlgorithm(frame, body) };
  if (body.mode !== undefined) {
    const mode = body.mode;
    if (typeof mode !== 'number' || !Number.isInteger(mode) || mode < 0 || mode > 0o7777) fail(frame, 'mode', 'permission bits (0 to 0o7777)');
    header.mode = mode;
  }
  if (body.mtime !== undefined) {
    const mtime = body.mtime;
    if (typeof mtime !== 'number' || !Number.isFinite(mtime) || Math.abs(mtime) > 8.64e15) fail(frame, 'mtime', 'milliseconds since the epoch');
    header.mtime = mtime;
  }
  return header;
}

export function decodeAccept(frame: Frame): Accept {
  expectType(frame, FrameType.Accept);
  const body = parseObject(frame);
  const offset = byteCount(frame, body, 'offset');
  if (offset !== 0) fail(frame, 'offset', '0 (resume is not part of protocol version 1)');
  return { offset };
}

export function decodeRefuse(frame: Frame): Refuse {
  expectType(frame, FrameType.Refuse);
  const body = parseObject(frame);
  const reason = body.reason;
  if (!isRefusalReason(reason)) fail(frame, 'reason', `one of ${REFUSAL_REASONS.join(', ')}`);
  return { reason: reason as RefusalReason, message: text(frame, body, 'message') };
}

export function decodeTrailer(frame: Frame): Trailer {
  expectType(frame, FrameType.Trailer);
  const body = parseObject(frame);
  const algorithm = hashAlgorithm(frame, body);
  return { hash: algorithm, digest: digest(frame, body, algorithm) };
}

export function decodeReceipt(frame: Frame): Receipt {
  expectType(frame, FrameType.Receipt);
  const body = parseObject(frame);
  const algorithm = hashAlgorithm(frame, body);
  return {
    bytes: byteCount(frame, body, 'bytes'),
    hash: algorithm,
    digest: digest(frame, body, algorithm),
    name: fileName(frame, body),
  };
}

export function decodeError(frame: Frame): ErrorMessage {
  expectType(frame, FrameType.Error);
  const body = parseObject(frame);
  const code = body.code;
  // An unknown code from a newer peer is still an error; report it as a protocol one.
  const known: FtxErrorCode = (WIRE_ERROR_CODES as readonly unknown[]).includes(code) ? (code as FtxErrorCode) : 'FTX_ERR_PROTOCOL';
  const error: ErrorMessage = { code: known, message: text(frame, body, 'message') };
  if (known === 'FTX_ERR_REFUSED') {
    // A refusal whose reason this version does not know is still a refusal.
    error.reason = isRefusalReason(body.reason) ? body.reason : 'busy';
  }
  return error;
}

export function decodePing(frame: Frame): Ping {
  expectType(frame, FrameType.Ping);
  return { message: text(frame, parseObject(frame), 'message') };
}

export function decodePong(frame: Frame): Pong {
  expectType(frame, FrameType.Pong);
  const body = parseObject(frame);
  const version = body.version;
  if (typeof version !== 'number' || !Number.isSafeInteger(version)) fail(frame, 'version', 'a whole number');
  return { reply: text(frame, body, 'reply', 2 * MAX_TEXT), version, time: text(frame, body, 'time', 64) };
}

/** `ctime(3)`'s layout, as Python's time.ctime() prints it: "Mon Nov 30 07:06:18 2026". */
export function ctime(date: Date): string {
  const days = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const pad = (value: number) => String(value).padStart(2, '0');
  const day = String(date.getDate()).padStart(2, ' ');
  const clock = `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
  return `${days[date.getDay()]} ${months[date.getMonth()]} ${day} ${clock} ${date.getFullYear()}`;
}

// ---- version 2 decoders ----------------------------------------------------------------

function entryId(frame: Frame, body: Record<string, unknown>): number {
  const value = body.id;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1 || value > MAX_ID) fail(frame, 'id', 'a whole number from 1');
  return value;
}

function nullableCount(frame: Frame, body: Record<string, unknown>, field: string): number | null {
  return body[field] === null || body[field] === undefined ? null : byteCount(frame, body, field);
}

function optionalMeta(frame: Frame, body: Record<string, unknown>, into: { mode?: number; mtime?: number }): void {
  if (body.mode !== undefined) {
    const mode = body.mode;
    if (typeof mode !== 'number' || !Number.isInteger(mode) || mode < 0 || mode > 0o7777) fail(frame, 'mode', 'permission bits (0 to 0o7777)');
    into.mode = mode;
  }
  if (body.mtime !== undefined) {
    const mtime = body.mtime;
    if (typeof mtime !== 'number' || !Number.isFinite(mtime) || Math.abs(mtime) > 8.64e15) fail(frame, 'mtime', 'milliseconds since the epoch');
    into.mtime = mtime;
  }
}

export function decodeOpen(frame: Frame): Open {
  expectType(frame, FrameType.Open);
  const body = parseObject(frame);
  const version = body.version;
  if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 2) fail(frame, 'version', 'a whole number from 2');
  const open: Open = { version, hash: hashAlgorithm(frame, body), entries: nullableCount(frame, body, 'entries'), bytes: nullableCount(frame, body, 'bytes') };
  if (body.resume !== undefined) {
    if (typeof body.resume !== 'boolean') fail(frame, 'resume', 'true or false');
    open.resume = body.resume;
  }
  return open;
}

export function decodeEntry(frame: Frame): Entry {
  expectType(frame, FrameType.Entry);
  const body = parseObject(frame);
  const path = body.path;
  if (typeof path !== 'string' || path.length === 0 || Buffer.byteLength(path, 'utf8') > MAX_PATH_FIELD_BYTES) fail(frame, 'path', `a string of 1 to ${MAX_PATH_FIELD_BYTES} bytes of UTF-8`);
  const type = body.type;
  if (type !== 'file' && type !== 'dir') fail(frame, 'type', '"file" or "dir"');
  const entry: Entry = { id: entryId(frame, body), path, type, size: type === 'file' ? nullableCount(frame, body, 'size') : null };
  optionalMeta(frame, body, entry);
  return entry;
}

export function decodeDecision(frame: Frame): Decision {
  expectType(frame, FrameType.Decision);
  const body = parseObject(frame);
  const action = body.action;
  if (action !== 'store' && action !== 'skip' && action !== 'refuse') fail(frame, 'action', '"store", "skip" or "refuse"');
  const decision: Decision = { id: entryId(frame, body), action };
  if (action === 'store') {
    // Whether an offset above 0 may be offered (the sender asked to resume, the file is that
    // large) is the sender's to check: it knows what it sent.
    decision.offset = body.offset === undefined ? 0 : byteCount(frame, body, 'offset');
  } else if (action === 'skip') {
    if (body.message !== undefined) decision.message = text(frame, body, 'message');
  } else {
    // An unknown reason from a newer peer is still a refusal.
    decision.reason = isRefusalReason(body.reason) ? body.reason : 'busy';
    decision.message = text(frame, body, 'message');
  }
  return decision;
}

export function decodeEntryTrailer(frame: Frame): EntryTrailer {
  expectType(frame, FrameType.Trailer);
  const body = parseObject(frame);
  const algorithm = hashAlgorithm(frame, body);
  return { id: entryId(frame, body), bytes: byteCount(frame, body, 'bytes'), hash: algorithm, digest: digest(frame, body, algorithm) };
}

export function decodeResult(frame: Frame): Result {
  expectType(frame, FrameType.Result);
  const body = parseObject(frame);
  const ok = body.ok;
  if (typeof ok !== 'boolean') fail(frame, 'ok', 'true or false');
  const result: Result = { id: entryId(frame, body), ok };
  if (ok) {
    const path = body.path;
    if (typeof path !== 'string' || path.length === 0 || Buffer.byteLength(path, 'utf8') > MAX_PATH_FIELD_BYTES) fail(frame, 'path', 'the stored path');
    result.path = path;
    if (body.digest !== undefined) {
      if (typeof body.digest !== 'string' || !/^[0-9a-f]{1,128}$/.test(body.digest)) fail(frame, 'digest', 'lowercase hex');
      result.digest = body.digest;
    }
  } else {
    const code = body.code;
    result.code = (WIRE_ERROR_CODES as readonly unknown[]).includes(code) ? (code as FtxErrorCode) : 'FTX_ERR_PROTOCOL';
    if (result.code === 'FTX_ERR_REFUSED') result.reason = isRefusalReason(body.reason) ? body.reason : 'busy';
    result.message = text(frame, body, 'message');
  }
  return result;
}

export function decodePrefix(frame: Frame): Prefix {
  expectType(frame, FrameType.Prefix);
  const body = parseObject(frame);
  const algorithm = hashAlgorithm(frame, body);
  return { id: entryId(frame, body), offset: byteCount(frame, body, 'offset'), hash: algorithm, digest: digest(frame, body, algorithm) };
}

export function decodeResume(frame: Frame): Resume {
  expectType(frame, FrameType.Resume);
  const body = parseObject(frame);
  const resume: Resume = { id: entryId(frame, body), offset: byteCount(frame, body, 'offset') };
  if (body.message !== undefined) resume.message = text(frame, body, 'message');
  return resume;
}

export function decodeEnd(frame: Frame): End {
  expectType(frame, FrameType.End);
  const body = parseObject(frame);
  return { entries: byteCount(frame, body, 'entries'), bytes: byteCount(frame, body, 'bytes') };
}

export function decodeSummary(frame: Frame): Summary {
  expectType(frame, FrameType.Summary);
  const body = parseObject(frame);
  return {
    entries: byteCount(frame, body, 'entries'),
    stored: byteCount(frame, body, 'stored'),
    skipped: byteCount(frame, body, 'skipped'),
    failed: byteCount(frame, body, 'failed'),
    bytes: byteCount(frame, body, 'bytes'),
  };
}
