/** Serve-mode defaults the CLI shows in --help without loading serve.ts. */
export const DEFAULT_MAX_CONNS = 64;
