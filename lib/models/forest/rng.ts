/**
 * A small, fast, seedable pseudo-random generator for the forest.
 *
 * Every tree draws from its own generator, derived from the forest seed and the tree's index only
 * ({@linkcode treeRng}), so a tree is the same whichever worker builds it and in whatever order: this is
 * what makes training bit-for-bit reproducible regardless of the number of workers.
 *
 * The generator is xoshiro128** (Blackman & Vigna), seeded through splitmix32; it passes BigCrush and
 * needs only 32-bit integer arithmetic, which V8 runs without allocating.
 *
 * @module
 */

/** splitmix32 step: turns any 32-bit state into a well-mixed 32-bit output. */
function splitmix32(state: number): [next: number, output: number] {
  const next = (state + 0x9e3779b9) | 0;
  let z = next;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  z ^= z >>> 16;
  return [next, z >>> 0];
}

/** A xoshiro128** generator. Not cryptographic. */
export class Rng {
  #a: number;
  #b: number;
  #c: number;
  #d: number;

  /**
   * Seeds the generator from two 32-bit words (e.g. a seed and a stream number).
   *
   * @param seed Any integer; only its low 32 bits are used.
   * @param stream A second integer that selects an independent stream for the same seed.
   */
  constructor(seed: number, stream = 0) {
    let state = (seed | 0) ^ Math.imul(stream | 0, 0x632be5ab);
    let out: number;
    [state, out] = splitmix32(state);
    this.#a = out;
    [state, out] = splitmix32(state);
    this.#b = out;
    [state, out] = splitmix32(state);
    this.#c = out;
    [state, out] = splitmix32(state);
    this.#d = out;
    // xoshiro must not start from the all-zero state.
    if ((this.#a | this.#b | this.#c | this.#d) === 0) this.#a = 1;
  }

  /** Next unsigned 32-bit integer. */
  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.#b, 5), 7), 9) >>> 0;
    const t = this.#b << 9;
    this.#c ^= this.#a;
    this.#d ^= this.#b;
    this.#b ^= this.#c;
    this.#a ^= this.#d;
    this.#c ^= t;
    this.#d = rotl(this.#d, 11);
    return result;
  }

  /**
   * Uniform integer in `[0, bound)`, without modulo bias (rejection sampling).
   *
   * @param bound Exclusive upper bound, 1 to 2^32.
   */
  nextInt(bound: number): number {
    if (bound <= SMALL_BOUND) {
      // Lemire's multiply-shift: r × bound < 2^53 is exact in a double; its high 32 bits are the result, its
      // low 32 bits (ToUint32 is exactly mod 2^32) decide the rare rejection that removes the bias.
      let m = this.nextUint32() * bound;
      let low = m >>> 0;
      if (low < bound) {
        const threshold = (TWO_32 - bound) % bound;
        while (low < threshold) {
          m = this.nextUint32() * bound;
          low = m >>> 0;
        }
      }
      return Math.floor(m / TWO_32);
    }
    // The largest multiple of `bound` below 2^32; draws at or above it are rejected so every residue is
    // equally likely. At most half of the draws are rejected, usually almost none.
    const limit = TWO_32 - (TWO_32 % bound);
    let r = this.nextUint32();
    while (r >= limit) r = this.nextUint32();
    return r % bound;
  }

  /** Uniform float in `[0, 1)` with 53 random bits. */
  nextFloat(): number {
    const hi = this.nextUint32() >>> 5;
    const lo = this.nextUint32() >>> 6;
    return (hi * 67108864 + lo) / 9007199254740992;
  }
}

const TWO_32 = 4294967296;
const SMALL_BOUND = 2 ** 21; // r × bound stays below 2^53

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/**
 * The generator of one tree: a function of the forest seed and the tree index only.
 *
 * @param seed The forest seed.
 * @param treeIndex The tree's position in the forest, from 0.
 * @returns A fresh generator.
 *
 * @example Usage
 * ```ts
 * import { treeRng } from "./rng.ts";
 * const a = treeRng(42, 3).nextUint32();
 * const b = treeRng(42, 3).nextUint32();
 * console.assert(a === b);
 * ```
 */
export function treeRng(seed: number, treeIndex: number): Rng {
  return new Rng(seed, treeIndex + 1);
}
