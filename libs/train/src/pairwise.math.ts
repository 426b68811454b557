/**
 * The arithmetic of pairwise preference losses, shared by the Bradley–Terry reward loss (reward.trainer.ts) and DPO
 * (@flywheel/rl): log σ and σ that neither overflow nor lose precision for large |x|, and the credit a comparison
 * earns. Pure functions; no batching or model code.
 */

/** log σ(x) = -log(1 + e^-x), without overflow for large |x|. */
export const logSigmoid = (x: number): number => (x >= 0 ? -Math.log1p(Math.exp(-x)) : x - Math.log1p(Math.exp(x)));

/** σ(x) = 1 / (1 + e^-x), without overflow for large |x|. */
export const sigmoid = (x: number): number => (x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x)));

/** 1 when the chosen side scores above the rejected one (d > 0), 0.5 for a tie (an untrained head ties: chance), else 0. */
export const pairCredit = (d: number): number => (d > 0 ? 1 : d === 0 ? 0.5 : 0);
