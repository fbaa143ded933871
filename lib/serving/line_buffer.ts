/**
 * A line buffer for the server's log: request log lines are collected in memory and written in chunks of
 * tens of kilobytes, at most {@linkcode LineBufferOptions.maxDelayMs} after they were logged, instead of one
 * system call per request. Lines that must be seen at once (errors, reloads, start and stop) go through
 * {@linkcode LineBuffer.writeNow}, which first writes what is buffered, so the order of lines is kept.
 *
 * Chunks are written asynchronously when an asynchronous sink is given (the `serve` stage's is stderr): the
 * write runs off the server's thread, so a slow reader of the log (a pipe whose reader is busy, as a
 * container runtime's log collector can be) stalls no request, the way Node writes to pipes. One chunk is in
 * flight at a time; lines logged meanwhile wait for it, and a {@linkcode LineBuffer.writeNow} line is
 * written the moment it completes, so the order of lines is kept there too.
 *
 * Nothing is lost on a clean stop: the owner awaits {@linkcode LineBuffer.drain} before exiting (the `serve`
 * stage does), and {@linkcode LineBuffer.flush} writes what is buffered synchronously on the runtime's
 * `unload` event. A process killed with SIGKILL loses at most the last `maxDelayMs` of request lines.
 *
 * @module
 */

/** Options of {@linkcode LineBuffer}. */
export interface LineBufferOptions {
  /** Characters buffered before a write is forced. @default {65536} */
  maxChars?: number;
  /** Longest time a line waits in the buffer, in milliseconds. @default {200} */
  maxDelayMs?: number;
  /**
   * Writes a chunk without blocking the caller; resolves once all of it is written. Without it, chunks are
   * written with the synchronous sink.
   */
  writeAsync?: (text: string) => Promise<void>;
  /**
   * Characters that may wait while a chunk is being written asynchronously; lines beyond are dropped and
   * counted (a JSON line says how many once writing resumes), so a log reader that stalls for good costs bounded
   * memory and never stalls the server. @default {16 × 1024 × 1024}
   */
  maxPendingChars?: number;
}

const encoder = new TextEncoder();

/** Writes text to stderr synchronously, looping over partial writes. */
export function writeStderr(text: string): void {
  const bytes = encoder.encode(text);
  let offset = 0;
  while (offset < bytes.length) offset += Deno.stderr.writeSync(bytes.subarray(offset));
}

/** Writes text to stderr without blocking the thread (the runtime writes it on a thread of its own). */
export async function writeStderrAsync(text: string): Promise<void> {
  const bytes = encoder.encode(text);
  let offset = 0;
  while (offset < bytes.length) offset += await Deno.stderr.write(bytes.subarray(offset));
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
  #writeAsync: ((text: string) => Promise<void>) | undefined;
  #maxChars: number;
  #maxDelayMs: number;
  #lines: string[] = [];
  #chars = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** The chunk being written asynchronously, if any. */
  #writing: Promise<void> | undefined;
  /** A writeNow line waits for the chunk in flight. */
  #urgent = false;
  #maxPendingChars: number;
  /** Lines dropped since the last chunk was written, because the reader of the log was stalled. */
  #dropped = 0;

  /**
   * @param sink Writes a chunk of text (whole lines, each ending in a newline), synchronously.
   * @param options Size and age limits of the buffer, and the asynchronous writer.
   */
  constructor(sink: (text: string) => void = writeStderr, options: LineBufferOptions = {}) {
    this.#sink = sink;
    this.#writeAsync = options.writeAsync;
    this.#maxChars = options.maxChars ?? 65_536;
    this.#maxDelayMs = options.maxDelayMs ?? 200;
    this.#maxPendingChars = options.maxPendingChars ?? 16 * 1024 * 1024;
  }

  /** Buffers one line (without its newline). Bound, so it can be passed as a log sink. */
  write = (line: string): void => {
    if (this.#writing !== undefined && this.#chars >= this.#maxPendingChars) {
      this.#dropped++;
      return;
    }
    this.#lines.push(line);
    this.#chars += line.length + 1;
    if (this.#chars >= this.#maxChars) {
      this.#writeChunk();
    } else if (this.#timer === undefined && this.#writing === undefined) {
      this.#arm();
    }
  };

  /**
   * Writes what is buffered, then this line: at once, or, while a chunk is being written asynchronously,
   * as soon as it is done. Bound, so it can be passed as a log sink.
   */
  writeNow = (line: string): void => {
    this.#lines.push(line);
    if (this.#writing === undefined) this.flush();
    else this.#urgent = true;
  };

  /**
   * Writes every buffered line now, synchronously (for the `unload` event and tests). A chunk still being
   * written asynchronously is not waited for; {@linkcode LineBuffer.drain} does that. Bound, so it can be
   * used as an event listener.
   */
  flush = (): void => {
    this.#disarm();
    this.#urgent = false;
    const text = this.#take();
    if (text !== undefined) this.#sink(text);
  };

  /** Waits for the chunk in flight, then writes what is left: what an owner awaits before exiting. */
  async drain(): Promise<void> {
    while (this.#writing !== undefined) await this.#writing;
    this.flush();
  }

  /** Lines waiting to be written; for tests. */
  get pending(): number {
    return this.#lines.length;
  }

  /** Lines dropped and not yet reported; for tests. */
  get dropped(): number {
    return this.#dropped;
  }

  #take(): string | undefined {
    if (this.#dropped > 0) {
      // After the lines that were kept: every dropped line was logged after them.
      this.#lines.push(
        JSON.stringify({
          ts: new Date().toISOString(),
          level: "warn",
          msg: "log lines dropped: the reader of the log did not keep up",
          dropped: this.#dropped,
        }),
      );
      this.#dropped = 0;
    }
    if (this.#lines.length === 0) return undefined;
    const text = this.#lines.join("\n") + "\n";
    this.#lines = [];
    this.#chars = 0;
    return text;
  }

  #arm(): void {
    const timer = setTimeout(this.#onTimer, this.#maxDelayMs);
    // The timer alone must not keep a finished process alive; whoever stops the process flushes.
    Deno.unrefTimer(timer);
    this.#timer = timer;
  }

  #disarm(): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
  }

  #onTimer = (): void => {
    this.#timer = undefined;
    this.#writeChunk();
  };

  /** Starts writing what is buffered: asynchronously when possible, one chunk at a time. */
  #writeChunk(): void {
    if (this.#writeAsync === undefined) return this.flush();
    if (this.#writing !== undefined) return; // picked up when the chunk in flight is done
    this.#disarm();
    const text = this.#take();
    if (text === undefined) return;
    const done = () => {
      this.#writing = undefined;
      if (this.#urgent) this.flush();
      else if (this.#chars >= this.#maxChars) this.#writeChunk();
      else if (this.#lines.length > 0) this.#arm();
    };
    // A log that cannot be written (stderr closed) must not fail requests: the chunk is dropped.
    this.#writing = this.#writeAsync(text).then(done, done);
  }
}
