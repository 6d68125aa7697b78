/**
 * The logging surface library code may use. The CLI passes a pino logger (whose
 * methods have this shape); library code never decides where lines go.
 */
export type LogMethod = (fields: Record<string, unknown>, message: string) => void;

export interface Log {
  debug: LogMethod;
  info: LogMethod;
  warn: LogMethod;
  error: LogMethod;
}

const ignore: LogMethod = () => {};

export const silentLog: Log = { debug: ignore, info: ignore, warn: ignore, error: ignore };
