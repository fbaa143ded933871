/**
 * Web Worker of the bench's parallelism probe (`tools/_bench_probe.ts`): runs one fixed amount of work
 * and posts back how long it took. Two kinds of work bracket what the pipeline does: `alu` (integer
 * arithmetic in registers) and `memory` (dependent random reads over 64 MB, far beyond the caches, as a
 * tree builder's column scans are).
 *
 * @module
 */

/** What the probe asks a worker to do. */
export interface ProbeRequest {
  kind: "alu" | "memory";
  /** Loop iterations. */
  iterations: number;
}

/** What a worker answers. */
export interface ProbeResponse {
  milliseconds: number;
  /** A value derived from the work, so the optimiser cannot drop the loop. */
  checksum: number;
}

function alu(iterations: number): number {
  let x = 0x12345678;
  for (let i = 0; i < iterations; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
  }
  return x;
}

function memory(iterations: number): number {
  const size = 1 << 24; // 16M Int32 = 64 MB
  const table = new Int32Array(size);
  // A random cyclic permutation, so every read depends on the previous one and misses the caches.
  for (let i = 0; i < size; i++) table[i] = i;
  let seed = 0x9e3779b9;
  for (let i = size - 1; i > 0; i--) {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    const j = (seed >>> 0) % i;
    const t = table[i]!;
    table[i] = table[j]!;
    table[j] = t;
  }
  let p = 0;
  for (let i = 0; i < iterations; i++) p = table[p]!;
  return p;
}

const scope = self as unknown as {
  onmessage: ((event: MessageEvent<ProbeRequest>) => void) | null;
  postMessage(message: ProbeResponse): void;
};

scope.onmessage = (event) => {
  const { kind, iterations } = event.data;
  const work = kind === "alu" ? alu : memory;
  work(Math.min(iterations, 1000)); // warm-up: compile before timing
  const started = performance.now();
  const checksum = work(iterations);
  scope.postMessage({ milliseconds: performance.now() - started, checksum });
};
