/**
 * The two kinds of failure a stage reports without a stack trace.
 *
 * A stage script maps {@linkcode UsageError} to exit code 2 (the command line was wrong) and
 * {@linkcode PipelineError} to exit code 1 (the command line was fine, but an input, a service or a
 * resource was not). Anything else is a bug and keeps its stack trace.
 *
 * @module
 */

/** The command line itself is wrong: an unknown flag, a missing or malformed value. */
export class UsageError extends Error {
  /** @param message One line saying what is wrong, e.g. `--batches expects integers, got "x"`. */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/**
 * An expected failure: a missing input, an unreachable service, an unknown model version.
 * The message names the thing and says what to do, on one line.
 */
export class PipelineError extends Error {
  /**
   * @param message One line naming the thing and the remedy.
   * @param options Standard error options; `cause` keeps the underlying error for debugging.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "PipelineError";
  }
}
