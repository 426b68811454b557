/**
 * Parses an environment once with a zod schema and turns the first problem into one line that names
 * the variable and what it expects. Nothing else in Flywheel reads process.env.
 */
import { z } from 'zod';

export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(message);
    this.name = 'ConfigError';
  }
}

export type Env = Readonly<Record<string, string | undefined>>;

/** Parse `env` against `schema`; throws ConfigError naming the first bad variable. */
export function parseEnv<S extends z.ZodType>(schema: S, env: Env): z.infer<S> {
  // A variable set to an empty string means "use the default", as in most twelve-factor apps.
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v.trim() !== ''));
  const result = schema.safeParse(present);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const variable = String(issue?.path[0] ?? 'environment');
  const got = env[variable];
  const shown = got === undefined ? 'it is not set' : `got ${JSON.stringify(got)}`;
  throw new ConfigError(variable, `invalid configuration: ${variable} ${issue?.message ?? 'is invalid'} (${shown})`);
}

/**
 * Boot-time wrapper: a bad variable stops the process with exit code 78 (EX_CONFIG) and one line on
 * stderr, because a stack trace would bury the only thing the operator needs to read.
 */
export function loadOrExit<T>(load: () => T): T {
  try {
    return load();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(78);
    }
    throw err;
  }
}
