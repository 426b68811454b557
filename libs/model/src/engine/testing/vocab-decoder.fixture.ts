/**
 * A byte-level SentencePiece-style decoder built from an explicit vocab table, for engine specs:
 * '▁' → ' ', `<0xNN>` pieces are raw bytes, bytes fused and UTF-8 decoded, one leading space stripped,
 * special ids skipped unless asked otherwise (the Llama tokenizer.json decoder chain). Not the production tokenizer (loading/ is).
 */
import type { TokenDecoder } from '../engine.types';

const BYTE_PIECE = /^<0x([0-9A-Fa-f]{2})>$/;

export class VocabDecoder implements TokenDecoder {
  private readonly bytes: Uint8Array[];
  private readonly utf8 = new TextDecoder('utf-8', { fatal: false });

  constructor(
    private readonly pieces: readonly string[],
    private readonly specialIds: ReadonlySet<number>,
  ) {
    const enc = new TextEncoder();
    this.bytes = pieces.map((piece) => {
      const byte = BYTE_PIECE.exec(piece);
      return byte ? Uint8Array.of(parseInt(byte[1]!, 16)) : enc.encode(piece.replace(/▁/g, ' '));
    });
  }

  decode(ids: readonly number[], options: { skipSpecialTokens?: boolean } = {}): string {
    const skip = options.skipSpecialTokens ?? true;
    const parts: Uint8Array[] = [];
    let total = 0;
    for (const id of ids) {
      if (skip && this.specialIds.has(id)) continue;
      const b = this.bytes[id];
      if (!b) throw new RangeError(`token id ${id} not in vocab`);
      parts.push(b);
      total += b.length;
    }
    const all = new Uint8Array(total);
    let off = 0;
    for (const p of parts) {
      all.set(p, off);
      off += p.length;
    }
    const text = this.utf8.decode(all);
    return text.startsWith(' ') ? text.slice(1) : text;
  }

  tokenText(id: number): string {
    return (this.pieces[id] ?? '').replace(/▁/g, ' ');
  }
}
