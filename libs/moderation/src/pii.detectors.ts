/**
 * PII and secret detectors over the original text: emails, phone numbers, payment cards (Luhn-checked,
 * known issuer prefixes), IBANs (ISO 13616 mod-97 check), API keys (OpenAI, AWS, GitHub, Slack, Google,
 * Stripe) and PEM private keys. Checksums keep look-alike numbers (order ids, timestamps) out.
 * Returns spans only; values are never copied into results or logs.
 */
import type { PiiEntity, PiiType } from '@flywheel/contracts';
import { matchesOf } from './regex.matches';

/** Luhn checksum over a string of digits. */
export function luhnValid(digits: string): boolean {
  let sum = 0;
  let double = false;
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return false;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return digits.length > 0 && sum % 10 === 0;
}

/** ISO 13616: move the first four characters to the end, letters as 10..35, the number mod 97 must be 1. */
export function ibanValid(iban: string): boolean {
  const s = iban.replace(/\s+/g, '').toUpperCase();
  if (!/^[A-Z]{2}\d{2}[A-Z0-9]{11,30}$/.test(s)) return false;
  const rearranged = s.slice(4) + s.slice(0, 4);
  let rem = 0;
  for (const ch of rearranged) {
    const v = ch >= 'A' ? ch.charCodeAt(0) - 55 : ch.charCodeAt(0) - 48;
    rem = v >= 10 ? (rem * 100 + v) % 97 : (rem * 10 + v) % 97;
  }
  return rem === 1;
}

/** Issuer prefixes of the card networks with their lengths (Visa, Mastercard, Amex, Discover, JCB, UnionPay, Diners). */
function cardIssuerValid(d: string): boolean {
  const n = d.length;
  if (/^4/.test(d)) return n === 13 || n === 16 || n === 19;
  if (/^(5[1-5]|2(2[2-9]|[3-6]\d|7[01]|720))/.test(d)) return n === 16;
  if (/^3[47]/.test(d)) return n === 15;
  if (/^(6011|65|64[4-9])/.test(d)) return n >= 16 && n <= 19;
  if (/^35(2[89]|[3-8]\d)/.test(d)) return n >= 16 && n <= 19;
  if (/^62/.test(d)) return n >= 16 && n <= 19;
  if (/^3(0[0-5]|[68])/.test(d)) return n >= 14 && n <= 19;
  return false;
}

interface Detector {
  type: PiiType;
  re: RegExp;
  accept?: (match: string) => boolean;
  /**
   * What every match contains: a text without it is skipped before the full pattern runs. The stream check reads
   * a word or two per token, and most of those have no digit and no `@`.
   */
  needs?: RegExp;
}

const DIGIT = /\d/;

const DETECTORS: Detector[] = [
  { type: 'private_key', needs: /-----BEGIN/, re: /-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----[\s\S]*?(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|$)/g },
  {
    type: 'api_key',
    re: /\b(?:sk-(?:proj-|ant-|live-|test-)?[A-Za-z0-9_-]{20,}|(?:AKIA|ASIA)[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255}|xox[abprs]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35}|(?:sk|rk)_live_[0-9A-Za-z]{24,})/g,
  },
  { type: 'email', needs: /@/, re: /\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}\b/g },
  {
    type: 'iban',
    needs: DIGIT,
    re: /\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b/g,
    accept: ibanValid,
  },
  {
    type: 'credit_card',
    needs: DIGIT,
    re: /(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])/g,
    accept: (m) => {
      const d = m.replace(/[ -]/g, '');
      return luhnValid(d) && cardIssuerValid(d);
    },
  },
  {
    // International (+CC …), North American ((555) 123-4567), Chinese mobile (1[3-9]x 11 digits) and
    // grouped national numbers; 10 to 15 digits in all, and not part of a longer run of digit groups.
    type: 'phone',
    needs: DIGIT,
    re: /(?<![\w+]|\d[ .-])(?:\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){1,4}|\(\d{3}\)[ .-]?\d{3}[ .-]?\d{4}|\d{3}[.-]\d{3}[.-]\d{4}|1[3-9]\d{9}|1[3-9]\d[ -]\d{4}[ -]\d{4}|0\d{2,4}[ -]\d{3,4}[ -]?\d{3,4})(?![\w-]|[ .]\d)/g,
    accept: (m) => {
      const n = m.replace(/\D/g, '').length;
      return n >= 10 && n <= 15;
    },
  },
];

export function detectPii(text: string): PiiEntity[] {
  const found: PiiEntity[] = [];
  const taken: Array<[number, number]> = [];
  const overlaps = (s: number, e: number) => taken.some(([a, b]) => s < b && e > a);
  // Order matters: a key or card that a later, looser detector (phone) would also match is claimed first.
  for (const d of DETECTORS) {
    if (d.needs && !d.needs.test(text)) continue;
    for (const m of matchesOf(d.re, text)) {
      const start = m.index;
      const end = start + m[0].length;
      if (overlaps(start, end)) continue;
      if (d.accept && !d.accept(m[0])) continue;
      found.push({ type: d.type, start, end });
      taken.push([start, end]);
    }
  }
  return found.sort((a, b) => a.start - b.start);
}
