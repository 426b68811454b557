/**
 * Zod builders for environment variables: each variable arrives as a string or absent (parseEnv
 * treats a blank value as absent), and each builder's message says what it expects.
 * Not a config tree; see service.config.ts.
 */
import { z } from 'zod';

const hasScheme = (protocols: readonly string[]) => (s: string) => {
  try {
    return protocols.includes(new URL(s).protocol.replace(/:$/, ''));
  } catch {
    return false;
  }
};

export const intVar = (fallback: number, min: number, max: number) => {
  const expect = `must be an integer between ${min} and ${max}`;
  return z
    .string()
    .regex(/^-?\d+$/, expect)
    .transform(Number)
    .refine((n) => n >= min && n <= max, expect)
    .default(fallback);
};

export const portVar = (fallback: number) => intVar(fallback, 1, 65535);

export const urlVar = (protocols: readonly string[], fallback: string) =>
  z.string().refine(hasScheme(protocols), `must be a URL with scheme ${protocols.join(' or ')}`).default(fallback);

export const optionalUrlVar = (protocols: readonly string[]) =>
  z.string().refine(hasScheme(protocols), `must be a URL with scheme ${protocols.join(' or ')}`).optional();

/** A comma-separated list of URLs (NATS accepts several seed servers). */
export const urlListVar = (protocols: readonly string[], fallback: string) =>
  z
    .string()
    .default(fallback)
    .transform((s) => s.split(',').map((p) => p.trim()).filter(Boolean))
    .refine(
      (list) => list.length > 0 && list.every(hasScheme(protocols)),
      `must be a comma-separated list of URLs with scheme ${protocols.join(' or ')}`,
    );

export const enumVar = <T extends readonly [string, ...string[]]>(values: T, fallback: T[number]) =>
  z.enum(values, { message: `must be one of ${values.join(', ')}` }).default(fallback);

export const stringVar = (fallback: string) => z.string().default(fallback);
export const optionalStringVar = () => z.string().optional();
