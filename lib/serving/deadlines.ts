/**
 * Time limits on many concurrent operations with one coarse timer, instead of a `setTimeout` and a
 * `clearTimeout` per operation. The API bounds the time a client gets to send its request body this way:
 * nearly every body is already there when it is read, so the per-request cost must be close to nothing,
 * while a limit that fires within a tick (50 ms) of its deadline is precise enough.
 *
 * @module
 */

interface Pending {
  deadline: number;
  expire: () => void;
}

/**
 * Races promises against deadlines checked on a shared interval timer, which runs while some operation is
 * pending and stops at the first tick that finds none.
 *
 * @example Usage
 * ```ts
 * import { Deadlines } from "./deadlines.ts";
 * const deadlines = new Deadlines();
 * const never = new Promise<string>(() => {});
 * await deadlines.within(never, 100, () => new Error("too slow")).catch((e) => e.message); // "too slow"
 * ```
 */
export class Deadlines {
  #pending = new Set<Pending>();
  #timer: ReturnType<typeof setInterval> | undefined;
  #tickMs: number;
  #now: () => number;

  /**
   * @param tickMs How often deadlines are checked, in milliseconds. @default {50}
   * @param now Monotonic clock in milliseconds. @default {performance.now}
   */
  constructor(tickMs = 50, now: () => number = () => performance.now()) {
    this.#tickMs = tickMs;
    this.#now = now;
  }

  /**
   * Settles like `promise`, or rejects with `onExpiry()` when `promise` is still pending `ms` milliseconds
   * from now (plus up to one tick). The operation behind `promise` is not stopped: `onExpiry` may stop it.
   *
   * @param promise The operation.
   * @param ms Its time limit.
   * @param onExpiry Called once on expiry; returns the rejection reason.
   */
  within<T>(promise: Promise<T>, ms: number, onExpiry: () => unknown): Promise<T> {
    const { promise: result, resolve, reject } = Promise.withResolvers<T>();
    const pending: Pending = { deadline: this.#now() + ms, expire: () => reject(onExpiry()) };
    this.#pending.add(pending);
    if (this.#timer === undefined) {
      this.#timer = setInterval(this.#check, this.#tickMs);
    }
    promise.then(
      (value) => {
        this.#pending.delete(pending);
        resolve(value);
      },
      (error) => {
        this.#pending.delete(pending);
        reject(error);
      },
    );
    return result;
  }

  /** Operations waiting now; for tests. */
  get size(): number {
    return this.#pending.size;
  }

  #check = (): void => {
    if (this.#pending.size === 0) {
      clearInterval(this.#timer);
      this.#timer = undefined;
      return;
    }
    const now = this.#now();
    for (const pending of this.#pending) {
      if (pending.deadline > now) continue;
      this.#pending.delete(pending);
      pending.expire();
    }
  };
}
