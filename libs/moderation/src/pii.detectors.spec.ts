import { detectPii, ibanValid, luhnValid } from './pii.detectors';

const types = (s: string) => detectPii(s).map((e) => e.type);

describe('PII detectors', () => {
  it('checks card numbers with Luhn and IBANs with mod-97', () => {
    expect(luhnValid('4111111111111111')).toBe(true);
    expect(luhnValid('4111111111111112')).toBe(false);
    expect(ibanValid('GB82 WEST 1234 5698 7654 32')).toBe(true);
    expect(ibanValid('GB82 WEST 1234 5698 7654 33')).toBe(false);
    expect(ibanValid('DE89370400440532013000')).toBe(true);
  });

  it('finds a Luhn-valid card in spaced or dashed groups, not a look-alike number', () => {
    expect(types('card: 4111 1111 1111 1111 exp 12/29')).toEqual(['credit_card']);
    expect(types('card: 5500-0000-0000-0004')).toEqual(['credit_card']);
    expect(types('order 4111 1111 1111 1112 shipped')).toEqual([]);
    expect(types('tracking number 1234567890123456')).toEqual([]);
  });

  it('finds IBANs only when the checksum holds', () => {
    expect(types('pay to DE89 3704 0044 0532 0130 00 please')).toEqual(['iban']);
    expect(types('pay to DE88 3704 0044 0532 0130 00 please')).toEqual([]);
  });

  it('finds emails and phone numbers in several formats', () => {
    expect(types('write to jane.doe+spam@mail.example.co.uk')).toEqual(['email']);
    expect(types('call +44 20 7946 0958 or (415) 555-2671')).toEqual(['phone', 'phone']);
    expect(types('我的手机号是13812345678')).toEqual(['phone']);
    expect(types('in 2024 we sold 300 units, version 1.2.3')).toEqual([]);
  });

  it('finds API keys and PEM private keys', () => {
    expect(types('OPENAI_API_KEY=sk-proj-abcdefghijklmnopqrstuvwx1234')).toEqual(['api_key']);
    expect(types('aws AKIAIOSFODNN7EXAMPLE')).toEqual(['api_key']);
    expect(types(`token ghp_${'a1B2'.repeat(9)}`)).toEqual(['api_key']);
    expect(types('-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----')).toEqual(['private_key']);
    expect(types('-----BEGIN PUBLIC KEY-----')).toEqual([]);
  });

  it('reports spans into the original text', () => {
    const text = 'mail me: a@b.io';
    const [e] = detectPii(text);
    expect(text.slice(e.start, e.end)).toBe('a@b.io');
  });
});
