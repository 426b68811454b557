/**
 * The training RNG: xorshift32 (@flywheel/kernels' Xorshift32) with its state visible, so a training state saves it
 * and a resume checks it, plus the shuffle every trainer's split and data order use. Seed s starts the stream the
 * trainers have always used for seed s - 1 (`new Rng(seed + 1)`). Not the sampler's RNG nor PPO's seeded orders
 * (epoch-order.ts).
 */
import { shuffleInPlace, Xorshift32 } from '@flywheel/kernels';

export class Rng extends Xorshift32 {
  /** Fisher–Yates in place with this stream's draws; returns `a`. */
  shuffle<T>(a: T[]): T[] {
    return shuffleInPlace(a, () => this.next());
  }
}
