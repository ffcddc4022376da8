export {
  HASH_SESSION_KEY,
  SESSION_AUTH_HASH_SALT,
  sessionAuthHash,
  type VerifySessionAuthHashOptions,
  verifySessionAuthHash,
} from './auth-hash.js';
export { type AuthSession, BACKEND_SESSION_KEY, readAuthSession, SESSION_KEY } from './auth-session.js';
export { decodeBase62, encodeBase62 } from './base62.js';
export { decodeBase64, decodeBase64Url, encodeBase64Url } from './base64.js';
export { parseCookie } from './cookie.js';
export {
  type Credential,
  type CredentialCandidates,
  credentialExtractor,
  type ExtractCredentialOptions,
  type ExtractedCredential,
  extractCredential,
  extractCredentials,
  type MalformedCredential,
  type RequestHeaders,
} from './credential.js';
export {
  isSessionDataError,
  SessionDataError,
  type SessionDataErrorCode,
  type SessionDataErrorReason,
} from './errors.js';
export { DEFAULT_MAX_DECOMPRESSED_BYTES, DEFAULT_MAX_HEADER_BYTES, DEFAULT_MAX_LENGTH } from './limits.js';
export { dumpPythonJson } from './python-json-dumps.js';
export { loadPythonJson } from './python-json-loads.js';
export { type HmacAlgorithm, saltedHmac } from './salted-hmac.js';
export {
  DEFAULT_SESSION_SALT,
  type DumpSessionDataOptions,
  dumpSessionData,
  type LoadSessionDataOptions,
  loadSessionData,
  type ReadSessionDataOptions,
  readSessionDataUnverified,
} from './session-data.js';
export { isValidSessionKey, SESSION_KEY_PATTERN } from './session-key.js';
export {
  DEFAULT_SIGNING_SALT,
  type DecodeLimits,
  type ReadSignedOptions,
  readSignedObjectUnverified,
  type SignObjectOptions,
  signObject,
  type UnsignedObject,
  type UnsignObjectOptions,
  unsignObject,
} from './signing.js';
