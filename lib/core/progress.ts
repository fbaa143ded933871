/**
 * Progress reporting for long stages: a redrawn line on a terminal, an occasional plain line otherwise
 * (so CI logs and `docker logs` still show that a long stage is alive), and nothing when disabled.
 *
 * @module
 */

/** Options of {@linkcode createProgress}. */
export interface ProgressOptions {
  /** What is being counted, e.g. "rows". @default {"rows"} */
  unit?: string;
  /** Expected total, when known; shows a percentage. */
  total?: number;
  /** "tty" redraws one line, "lines" prints a line every `intervalMs`, "off" prints nothing. */
  mode?: "tty" | "lines" | "off";
  /** Milliseconds between two "lines" reports. @default {15000} */
  intervalMs?: number;
  /** Where output goes. @default {stderr} */
  write?: (text: string) => void;
}

/** A running progress report. */
export interface Progress {
  /** Reports that `done` units are complete (cheap to call on every row). */
  update(done: number): void;
  /** Ends the report and clears the redrawn line. */
  finish(): void;
}

const encoder = new TextEncoder();

/** Picks "tty" when stderr is a terminal, "lines" otherwise. */
export function defaultProgressMode(): "tty" | "lines" {
  return Deno.stderr.isTerminal() ? "tty" : "lines";
}

/**
 * Starts a progress report.
 *
 * @example Usage
 * ```ts
 * import { createProgress } from "./progress.ts";
 * const progress = createProgress("split", { total: 1000, mode: "off" });
 * for (let i = 1; i <= 1000; i++) progress.update(i);
 * progress.finish();
 * ```
 */
export function createProgress(label: string, options: ProgressOptions = {}): Progress {
  const mode = options.mode ?? defaultProgressMode();
  const unit = options.unit ?? "rows";
  const write = options.write ?? ((text: string) => Deno.stderr.writeSync(encoder.encode(text)));
  const intervalMs = mode === "tty" ? 200 : options.intervalMs ?? 15_000;
  const started = performance.now();
  let lastReport = started;
  let drawn = false;

  function render(done: number): string {
    const seconds = (performance.now() - started) / 1000;
    const rate = seconds > 0 ? Math.round(done / seconds) : 0;
    const pct = options.total ? ` (${Math.min(100, (100 * done) / options.total).toFixed(1)}%)` : "";
    const of = options.total ? `/${options.total.toLocaleString("en-US")}` : "";
    return `${label}: ${done.toLocaleString("en-US")}${of} ${unit}${pct}, ${
      rate.toLocaleString("en-US")
    } ${unit}/s`;
  }

  return {
    update(done: number) {
      if (mode === "off") return;
      const now = performance.now();
      if (now - lastReport < intervalMs) return;
      lastReport = now;
      if (mode === "tty") {
        write(`\r\x1b[2K${render(done)}`);
        drawn = true;
      } else {
        write(render(done) + "\n");
      }
    },
    finish() {
      if (mode === "tty" && drawn) write("\r\x1b[2K");
    },
  };
}
