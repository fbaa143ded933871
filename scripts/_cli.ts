/**
 * The command-line contract every stage shares: `--help` (exit 0), a usage error (one line plus usage on
 * stderr, exit 2), an expected failure or a file-system fault (a full disk, a read-only mount: one line
 * `error: ...` on stderr, exit 1, no stack trace), `--json`
 * (exactly one JSON object on stdout), Ctrl-C (exit 130). Stage scripts call {@linkcode runStage} from
 * `if (import.meta.main)`; this is the only module that calls `Deno.exit`.
 *
 * @module
 */
import { parseArgs, type ParseArgsOptionsConfig } from "node:util";
import { exists } from "../lib/core/atomic_file.ts";
import { PipelineError, UsageError } from "../lib/core/errors.ts";
import { createLogger, type Logger } from "../lib/core/log.ts";
import { describeFsError } from "../lib/core/os_error.ts";

/** The flags of a stage, as `node:util`'s `parseArgs` takes them. */
export type StageOptions = ParseArgsOptionsConfig;

/** The parsed value of a flag of type `T`: a string or a boolean, an array of them for `multiple`. */
type ValueOfType<T, Multiple> = T extends "boolean" ? (Multiple extends true ? boolean[] : boolean)
  : Multiple extends true ? string[]
  : string;

/** The parsed value of one flag declaration. */
export type FlagValue<F extends StageOptions[string]> = ValueOfType<
  F["type"],
  F extends { multiple: true } ? true : false
>;

/** The parsed values of a stage's flags, typed from its declaration; a flag not given is absent. */
export type FlagValues<O extends StageOptions> = { -readonly [K in keyof O]?: FlagValue<O[K]> };

/** What a stage declares about its command line. */
export interface StageSpec<O extends StageOptions = StageOptions> {
  /** Stage name as in `deno task <name>`. */
  name: string;
  /** Full usage text printed by `--help` and after a usage error. */
  usage: string;
  /** Flags besides `--help` and `--json`, which every stage has. */
  options: O;
  /** Whether positional arguments are accepted (e.g. `preprocess_batch 3`). @default {false} */
  allowPositionals?: boolean;
}

/**
 * Declares a stage's command line, keeping each flag's type (`"string"` or `"boolean"`) so that
 * {@linkcode StageContext.values} is typed without casts.
 *
 * @example Usage
 * ```ts
 * import { defineStage } from "./_cli.ts";
 * const spec = defineStage({ name: "demo", usage: "Usage: demo [--rows N]", options: { rows: { type: "string" } } });
 * ```
 */
export function defineStage<const O extends StageOptions>(spec: StageSpec<O>): StageSpec<O> {
  return spec;
}

/** What a stage's main function receives. */
export interface StageContext<O extends StageOptions = StageOptions> {
  /** Parsed flag values. */
  values: FlagValues<O>;
  /** Positional arguments. */
  positionals: string[];
  /** Whether `--json` was given. */
  json: boolean;
  /** Logger on stderr. */
  log: Logger;
  /** Aborted on SIGINT or SIGTERM; long loops check it. */
  signal: AbortSignal;
}

/** What a stage's main function returns. */
export interface StageResult {
  /** The object printed with `--json`. */
  json: Record<string, unknown>;
  /** Text printed on stdout without `--json` (a summary or a prediction). */
  text?: string;
}

/**
 * Parses `args` against a stage's flags. Throws {@linkcode UsageError} for an unknown flag, a missing
 * value or an unexpected positional argument.
 */
export function parseStageArgs<O extends StageOptions>(
  spec: StageSpec<O>,
  args: string[],
): { values: FlagValues<O>; positionals: string[]; help: boolean; json: boolean } {
  try {
    const { values, positionals } = parseArgs({
      args: joinDashValues(spec.options, args),
      options: {
        ...spec.options,
        help: { type: "boolean", short: "h" },
        json: { type: "boolean" },
      },
      strict: true,
      allowPositionals: spec.allowPositionals ?? false,
    });
    const { help, json, ...rest } = values as Record<string, unknown>;
    return {
      values: rest as FlagValues<O>,
      positionals,
      help: help === true,
      json: json === true,
    };
  } catch (error) {
    if (error instanceof TypeError) throw new UsageError(firstLine(error.message));
    throw error;
  }
}

/**
 * `--flag -1` becomes `--flag=-1` for a flag that takes a value, so a negative number reaches the flag's
 * own check (`got "-1"`) instead of parseArgs' "argument is ambiguous".
 */
function joinDashValues(options: ParseArgsOptionsConfig, args: string[]): string[] {
  const joined: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const next = args[i + 1];
    if (arg === "--") {
      joined.push(...args.slice(i));
      break;
    }
    const name = arg.startsWith("--") ? arg.slice(2) : undefined;
    if (
      name !== undefined && options[name]?.type === "string" && next !== undefined && /^-[\d.]/.test(next)
    ) {
      joined.push(`${arg}=${next}`);
      i++;
    } else {
      joined.push(arg);
    }
  }
  return joined;
}

/**
 * Reads environment variables this process was granted, skipping the ones it was not (so a narrow
 * `--allow-env` never turns into a crash).
 */
export function readEnv<const K extends string>(names: readonly K[]): Partial<Record<K, string>> {
  const env: Partial<Record<K, string>> = {};
  for (const name of names) {
    if (Deno.permissions.querySync({ name: "env", variable: name }).state !== "granted") continue;
    const value = Deno.env.get(name);
    if (value !== undefined && value !== "") env[name] = value;
  }
  return env;
}

/**
 * Checks that a file `ingest` writes (`data/raw/train.csv`, `data/raw/test.csv`) is there before a stage
 * reads it, so that a missing one is an expected failure that says what to run.
 *
 * @param path The input, as the stage names it in its messages.
 * @throws {PipelineError} `<path> not found; run \`deno task ingest\` (or make ingest) first`.
 */
export async function requireIngested(path: string): Promise<void> {
  if (!(await exists(path))) {
    throw new PipelineError(`${path} not found; run \`deno task ingest\` (or make ingest) first`);
  }
}

const encoder = new TextEncoder();

function writeOut(stream: "stdout" | "stderr", text: string): void {
  const bytes = encoder.encode(text.endsWith("\n") ? text : text + "\n");
  const target = stream === "stdout" ? Deno.stdout : Deno.stderr;
  let offset = 0;
  while (offset < bytes.length) offset += target.writeSync(bytes.subarray(offset));
}

function firstLine(message: string): string {
  return message.split("\n")[0]!.trim();
}

/**
 * Runs a stage's main function under the shared contract and exits the process.
 *
 * @param spec The stage's flags and usage.
 * @param args Usually `Deno.args`.
 * @param main The stage's work.
 */
export async function runStage<O extends StageOptions>(
  spec: StageSpec<O>,
  args: string[],
  main: (ctx: StageContext<O>) => Promise<StageResult>,
): Promise<never> {
  let parsed;
  try {
    parsed = parseStageArgs(spec, args);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    writeOut("stderr", `error: ${error.message}\n\n${spec.usage}`);
    Deno.exit(2);
  }
  if (parsed.help) {
    writeOut("stdout", spec.usage);
    Deno.exit(0);
  }

  const controller = new AbortController();
  let interrupts = 0;
  const onSignal = (signal: Deno.Signal) => () => {
    interrupts += 1;
    if (interrupts > 1) Deno.exit(130);
    controller.abort(new PipelineError(`interrupted by ${signal}`));
  };
  const sigint = onSignal("SIGINT");
  const sigterm = onSignal("SIGTERM");
  Deno.addSignalListener("SIGINT", sigint);
  Deno.addSignalListener("SIGTERM", sigterm);

  const log = createLogger({ name: spec.name });
  try {
    const result = await main({
      values: parsed.values,
      positionals: parsed.positionals,
      json: parsed.json,
      log,
      signal: controller.signal,
    });
    if (parsed.json) writeOut("stdout", JSON.stringify(result.json));
    else if (result.text) writeOut("stdout", result.text);
    Deno.exit(0);
  } catch (error) {
    if (controller.signal.aborted) {
      writeOut(
        "stderr",
        `error: ${(controller.signal.reason as Error).message}; no output was left half-written`,
      );
      Deno.exit(130);
    }
    if (error instanceof UsageError) {
      writeOut("stderr", `error: ${firstLine(error.message)}\n\n${spec.usage}`);
      Deno.exit(2);
    }
    if (error instanceof PipelineError) {
      writeOut("stderr", `error: ${firstLine(error.message)}`);
      Deno.exit(1);
    }
    // A full disk, a read-only mount, a folder owned by someone else, too many open files: the OS refused.
    const described = await describeFsError(error);
    if (described !== undefined) {
      writeOut("stderr", `error: ${firstLine(described.message)}`);
      Deno.exit(1);
    }
    // Deno's sandbox refused (PermissionDenied is the file system's refusal, handled above).
    if (error instanceof Deno.errors.NotCapable) {
      writeOut(
        "stderr",
        `error: ${
          firstLine(error.message)
        } (stage "${spec.name}" is not granted this; see "permissions" in deno.json)`,
      );
      Deno.exit(1);
    }
    throw error;
  }
}
