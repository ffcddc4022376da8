/** Default bound on the length of a signed value or `session_data` (characters): 4 MiB. */
export const DEFAULT_MAX_LENGTH = 4 * 1024 * 1024;

/** Default bound on what a compressed payload may inflate to (bytes): 16 MiB. */
export const DEFAULT_MAX_DECOMPRESSED_BYTES = 16 * 1024 * 1024;

/** Default bound on one `Cookie` or `Authorization` header (bytes): 8 KiB. */
export const DEFAULT_MAX_HEADER_BYTES = 8 * 1024;
