/**
 * A line buffer for the server's log: request log lines are collected in memory and written in chunks of
 * tens of kilobytes, at most {@linkcode LineBufferOptions.maxDelayMs} after they were logged, instead of one
 * system call per request. Lines that must be seen at once (errors, reloads, start and stop) go through
 * {@linkcode LineBuffer.writeNow}, which first writes what is buffered, so the order of lines is kept.
 *
 * Nothing is lost on a clean stop: the owner calls {@linkcode LineBuffer.flush} before exiting (the `serve`
 * stage does, and also on the runtime's `unload` event). A process killed with SIGKILL loses at most the
 * last `maxDelayMs` of request lines.
 *
 * @module
 */

/** Options of {@linkcode LineBuffer}. */
export interface LineBufferOptions {
  /** Characters buffered before a write is forced. @default {65536} */
  maxChars?: number;
  /** Longest time a line waits in the buffer, in milliseconds. @default {200} */
  maxDelayMs?: number;
}

const encoder = new TextEncoder();

/** Writes text to stderr synchronously, looping over partial writes. */
export function writeStderr(text: string): void {
  const bytes = encoder.encode(text);
  let offset = 0;
  while (offset < bytes.length) offset += Deno.stderr.writeSync(bytes.subarray(offset));
}

/**
 * Buffers lines and writes them in chunks.
 *
 * @example Usage
 * ```ts
 * import { LineBuffer } from "./line_buffer.ts";
 * const written: string[] = [];
 * const buffer = new LineBuffer((text) => written.push(text));
 * buffer.write('{"msg":"request"}');   // buffered
 * buffer.writeNow('{"msg":"stopped"}'); // both lines written, in order
 * console.assert(written.join("") === '{"msg":"request"}\n{"msg":"stopped"}\n');
 * ```
 */
export class LineBuffer {
  #sink: (text: string) => void;
  #maxChars: number;
  #maxDelayMs: number;
  #lines: string[] = [];
  #chars = 0;
  #timer: ReturnType<typeof setInterval> | undefined;

  /**
   * @param sink Writes a chunk of text (whole lines, each ending in a newline), synchronously.
   * @param options Size and age limits of the buffer.
   */
  constructor(sink: (text: string) => void = writeStderr, options: LineBufferOptions = {}) {
    this.#sink = sink;
    this.#maxChars = options.maxChars ?? 65_536;
    this.#maxDelayMs = options.maxDelayMs ?? 200;
  }

  /** Buffers one line (without its newline). Bound, so it can be passed as a log sink. */
  write = (line: string): void => {
    this.#lines.push(line);
    this.#chars += line.length + 1;
    if (this.#chars >= this.#maxChars) {
      this.flush();
    } else if (this.#timer === undefined) {
      const timer = setTimeout(this.flush, this.#maxDelayMs);
      // The timer alone must not keep a finished process alive; whoever stops the process flushes.
      Deno.unrefTimer(timer);
      this.#timer = timer;
    }
  };

  /** Writes what is buffered, then this line. Bound, so it can be passed as a log sink. */
  writeNow = (line: string): void => {
    this.#lines.push(line);
    this.flush();
  };

  /** Writes every buffered line now. Bound, so it can be used as an event listener. */
  flush = (): void => {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    if (this.#lines.length === 0) return;
    const text = this.#lines.join("\n") + "\n";
    this.#lines = [];
    this.#chars = 0;
    this.#sink(text);
  };

  /** Lines waiting to be written; for tests. */
  get pending(): number {
    return this.#lines.length;
  }
}
