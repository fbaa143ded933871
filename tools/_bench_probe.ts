/**
 * The bench's parallelism probe: how much faster does this machine run two threads than one? Virtual
 * machines often expose two hyper-threads of one physical core, or share cores with other guests; then no
 * program gets 2× from two workers, and the bench's "two workers ≥ 1.7×" figure must be read against this
 * one. The probe runs the same fixed work in one Web Worker, then in two at once, for arithmetic and for
 * memory-bound work (see `_bench_probe_worker.ts`), and reports the speed-up of two over one.
 *
 * @module
 */
import type { ProbeRequest, ProbeResponse } from "./_bench_probe_worker.ts";

/** Speed-up of two threads over one (2 = perfect), per kind of work. */
export interface ProbeResult {
  alu: number;
  memory: number;
}

const ITERATIONS: Record<ProbeRequest["kind"], number> = { alu: 300_000_000, memory: 5_000_000 };

async function runWorkers(kind: ProbeRequest["kind"], count: number): Promise<number> {
  const workers = Array.from(
    { length: count },
    () => new Worker(new URL("./_bench_probe_worker.ts", import.meta.url), { type: "module" }),
  );
  try {
    const times = await Promise.all(workers.map((worker) =>
      new Promise<number>((resolve, reject) => {
        worker.onmessage = (event: MessageEvent<ProbeResponse>) => resolve(event.data.milliseconds);
        worker.onerror = (event) => {
          event.preventDefault();
          reject(new Error(`parallelism probe worker failed: ${event.message}`));
        };
        worker.postMessage({ kind, iterations: ITERATIONS[kind] } satisfies ProbeRequest);
      })
    ));
    return Math.max(...times);
  } finally {
    for (const worker of workers) worker.terminate();
  }
}

/**
 * Measures the machine's two-thread speed-up. Takes a few seconds.
 *
 * @returns Two threads' throughput over one thread's, for arithmetic and for memory-bound work.
 */
export async function probeParallelism(): Promise<ProbeResult> {
  const result: Partial<ProbeResult> = {};
  for (const kind of ["alu", "memory"] as const) {
    const one = await runWorkers(kind, 1);
    const two = await runWorkers(kind, 2);
    // Two workers did twice the work in `two` ms; one did the work once in `one` ms.
    result[kind] = (2 * one) / two;
  }
  return result as ProbeResult;
}
