/**
 * llama.cpp's K-quant mixes as served dtypes: `q4_k_m` and `q5_k_m` pick a GGML type per matrix as llama-quantize's
 * Q4_K_M / Q5_K_M do (llama_tensor_get_type), so a checkpoint quantized on load is the file users download, and the
 * benchmark writes the same mix for llama.cpp. Pure: no native calls; createModel applies the choice.
 * Not modelled: llama.cpp's special cases for Falcon, MoE experts, 70B and importance matrices.
 */
import type { ModelSpec, QuantType } from './kernels.types';
import { expectedWeightShapes, SCORE_HEAD_WEIGHT } from './weight-shapes';

export type QuantMix = 'q4_k_m' | 'q5_k_m';
export const QUANT_MIXES: readonly QuantMix[] = ['q4_k_m', 'q5_k_m'];

export function isQuantMix(t: unknown): t is QuantMix {
  return typeof t === 'string' && (QUANT_MIXES as readonly string[]).includes(t);
}

const BASE: Record<QuantMix, QuantType> = { q4_k_m: 'q4_k', q5_k_m: 'q5_k' };

/** llama.cpp's fallback for a K-quant whose 256-blocks do not divide the rows. */
const FALLBACK: Partial<Record<QuantType, QuantType>> = { q4_k: 'q5_0', q5_k: 'q5_1', q6_k: 'q8_0' };

/** The layers that get more bits: the first and last eighth, and every third one between (llama.cpp's use_more_bits). */
export function usesMoreBits(layer: number, layers: number): boolean {
  const eighth = Math.trunc(layers / 8);
  return layer < eighth || layer >= Math.trunc((7 * layers) / 8) || (layer - eighth) % 3 === 2;
}

/**
 * The GGML type of every matrix of the model under the mix ('f32' for vectors, and for a matrix no 32-block divides):
 * the LM head (the embedding when tied) Q6_K; v_proj and down_proj Q6_K on the layers usesMoreBits picks; every other
 * matrix, untied embedding included, the mix's base type.
 */
export function quantMixTypes(spec: ModelSpec, mix: QuantMix): Map<string, QuantType | 'f32'> {
  const out = new Map<string, QuantType | 'f32'>();
  const layerOf = (name: string): number => Number(/^model\.layers\.(\d+)\./.exec(name)?.[1] ?? -1);
  for (const [name, [, cols = 1]] of expectedWeightShapes(spec)) {
    if (cols === 1) {
      out.set(name, 'f32');
      continue;
    }
    const head = name === 'lm_head.weight' || name === SCORE_HEAD_WEIGHT || (spec.tieWordEmbeddings && name === 'model.embed_tokens.weight');
    const moreBits = /\.(self_attn\.v_proj|mlp\.down_proj)\.weight$/.test(name) && usesMoreBits(layerOf(name), spec.numLayers);
    let type: QuantType | 'f32' = head || moreBits ? 'q6_k' : BASE[mix];
    if (cols % 256 !== 0) type = FALLBACK[type] ?? type;
    if (cols % 32 !== 0) type = 'f32';
    out.set(name, type);
  }
  return out;
}
