/**
 * TLS 1.3 with an external pre-shared key (no certificates): how a sender proves it holds
 * a key the receiver lists, and how both then talk encrypted and tamper-proof.
 *
 * The connection starts in plain text: the receiver greets (saying `tls: "psk"`), the
 * sender starts TLS on the same socket (STARTTLS), and the whole conversation, greeting
 * included, runs inside it. The identity travels in the clear in the ClientHello (it
 * names the sender; the key never leaves either end).
 *
 * Choices, each checked on Node 20 / OpenSSL 3.0 (research for issue 14):
 * - Only TLS_AES_128_GCM_SHA256 and TLS_CHACHA20_POLY1305_SHA256: OpenSSL's PSK callbacks
 *   are SHA-256 only, so TLS_AES_256_GCM_SHA384 cannot negotiate with a PSK.
 * - Session tickets off: a resumed session skips pskCallback, which is where identities
 *   are checked.
 * - psk_dhe_ke (the default): each connection also does an ECDHE exchange, so a key that
 *   leaks later does not decrypt recorded sessions.
 * - An identity the receiver does not list gets a random key, so the handshake fails
 *   exactly as with a wrong key: a stranger learns nothing about which identities exist.
 * - The receiver's TLS side is a tls.Server that never listens and is handed each
 *   socket ('connection'): a TLSSocket made by hand swallows handshake errors.
 */
import { constants, randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { connect as tlsConnect, createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { AuthError, ConnectionLostError, ProtocolError, TimeoutError, type FtxError } from '../errors.js';
import { CODE_IDENTITY, wireIdentity, type KeyRing, type SenderKey } from './keys.js';

const TLS_BASE = {
  minVersion: 'TLSv1.3',
  maxVersion: 'TLSv1.3',
  ciphers: 'TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256',
} as const;

/** What the receiver learned in the handshake. */
export interface Authenticated {
  socket: TLSSocket;
  identity: string;
}

/**
 * Runs the receiver's side of the handshake on `socket` (its first TLS bytes already
 * read into `buffered`, which go back in front). Resolves once the sender has proved a
 * key from `keys`; rejects with AuthError otherwise, or TimeoutError after `timeoutMs`.
 */
export function acceptPsk(socket: Socket, buffered: Buffer, keys: KeyRing, timeoutMs: number): Promise<Authenticated> {
  return new Promise((resolve, reject) => {
    /** The identity the sender named (without the key's fingerprint), for messages. */
    let offered: string | undefined;
    let matched: SenderKey | undefined;
    const server = createTlsServer({
      ...TLS_BASE,
      allowHalfOpen: true,
      honorCipherOrder: true,
      secureOptions: constants.SSL_OP_NO_TICKET,
      pskCallback: (_tlsSocket, identity) => {
        matched = keys.get(identity);
        offered = identity.slice(0, Math.max(0, identity.lastIndexOf(':'))) || identity;
        return matched?.key ?? randomBytes(32);
      },
    });
    const timer = timeoutMs > 0 ? setTimeout(() => fail(new TimeoutError(`the sender did not finish the TLS handshake within ${timeoutMs / 1000} s`)), timeoutMs) : undefined;
    const fail = (error: FtxError) => {
      clearTimeout(timer);
      socket.destroy();
      reject(error);
    };
    server.once('tlsClientError', (error: Error & { code?: string }, tlsSocket: TLSSocket) => {
      tlsSocket.destroy();
      fail(receiverSideError(error, offered));
    });
    server.once('secureConnection', (tlsSocket: TLSSocket) => {
      clearTimeout(timer);
      // A handshake can only complete with a listed key (others get a random one), but say so here too.
      if (matched === undefined) {
        tlsSocket.destroy();
        reject(new AuthError('the sender completed a handshake without a listed key'));
        return;
      }
      resolve({ socket: tlsSocket, identity: matched.identity });
    });
    if (buffered.length > 0) socket.unshift(buffered);
    server.emit('connection', socket);
  });
}

/** The sender's side: proves `key` to the receiver on `socket`; resolves once TLS is up. */
export function connectPsk(socket: Socket, key: SenderKey, peer: string, timeoutMs: number): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const tlsSocket = tlsConnect({
      ...TLS_BASE,
      socket,
      // Only the key proves the receiver. Node asks this only when the server showed a
      // certificate instead of using the key: whatever CA signed it, that is not the receiver.
      checkServerIdentity: () => certificateShown(peer, key),
      pskCallback: () => ({ psk: key.key, identity: wireIdentity(key) }),
    });
    const timer = timeoutMs > 0 ? setTimeout(() => fail(new TimeoutError(`${peer} did not finish the TLS handshake within ${timeoutMs / 1000} s`)), timeoutMs) : undefined;
    const fail = (error: FtxError) => {
      clearTimeout(timer);
      tlsSocket.destroy();
      reject(error);
    };
    const onError = (error: Error & { code?: string }) => fail(senderSideError(error, key, peer));
    tlsSocket.once('error', onError);
    tlsSocket.once('secureConnect', () => {
      clearTimeout(timer);
      tlsSocket.off('error', onError);
      // A key handshake has no certificate; anything else is not the receiver (belt and braces).
      if (tlsSocket.getPeerCertificate() && Object.keys(tlsSocket.getPeerCertificate()).length > 0) {
        fail(certificateShown(peer, key));
        return;
      }
      resolve(tlsSocket);
    });
  });
}

/** A handshake that failed its key check: what the throttle on an address counts (a stray's garbage does not). */
export class KeyCheckError extends AuthError {}

/** A failed handshake as the receiver reports it. */
function receiverSideError(error: Error & { code?: string }, identity: string | undefined): FtxError {
  const who = identity === undefined ? 'the sender' : `the sender (identity ${JSON.stringify(identity)})`;
  switch (error.code) {
    case 'ERR_SSL_BINDER_DOES_NOT_VERIFY':
      if (identity === CODE_IDENTITY) return new KeyCheckError('the sender gave a wrong code');
      return new KeyCheckError(`${who} did not prove a key this receiver lists: a wrong key, or an identity not in the key file`);
    case 'ERR_SSL_NO_SUITABLE_SIGNATURE_ALGORITHM':
    case 'ERR_SSL_NO_SHARED_CIPHER':
      return new AuthError(`${who} offered no pre-shared key (a TLS client that is not ftx with a key?)`);
    case 'ECONNRESET':
    case 'EPIPE':
      return new ConnectionLostError(`${who} dropped the connection during the TLS handshake`);
    default:
      return new ProtocolError(`the TLS handshake with ${who} failed: ${error.message.split('\n')[0]}`);
  }
}

/** What a sender with a key says of a server that showed a certificate: not the receiver it claims to be. */
function certificateShown(peer: string, key: SenderKey): AuthError {
  return new AuthError(`${peer} showed a TLS certificate instead of proving the key of ${JSON.stringify(key.identity)}: not the receiver it claims to be; nothing was sent`);
}

/** A failed handshake as the sender reports it. */
function senderSideError(error: Error & { code?: string }, key: SenderKey, peer: string): FtxError {
  if (error instanceof AuthError) return error;
  // A certificate, trusted or not, is never what a receiver with the key shows.
  if (error.code !== undefined && (/CERT|SELF_SIGNED|VERIFY/.test(error.code))) {
    return certificateShown(peer, key);
  }
  switch (error.code) {
    case 'ERR_SSL_SSLV3_ALERT_ILLEGAL_PARAMETER':
    case 'ERR_SSL_TLSV1_ALERT_DECRYPT_ERROR':
      if (key.identity === CODE_IDENTITY) return new AuthError(`${peer} did not accept the code: it is not the one that receiver printed (or the receiver was restarted, with a new code)`);
      return new AuthError(`${peer} did not accept the key of ${JSON.stringify(key.identity)}: it is not the key that receiver lists for that identity (or it lists no such identity)`);
    case 'ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE':
      return new AuthError(`${peer} refused the TLS handshake of ${JSON.stringify(key.identity)}`);
    case 'ECONNRESET':
    case 'EPIPE':
      return new ConnectionLostError(`${peer} dropped the connection during the TLS handshake (a wrong key?)`);
    default:
      return new ProtocolError(`the TLS handshake with ${peer} failed: ${error.message.split('\n')[0]}`);
  }
}
