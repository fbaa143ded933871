/**
 * Stage `ingest`: gets the Amazon review polarity dataset into `data/raw/` as `train.csv` and `test.csv`
 * (Kaggle format, one record per line), with `rejects.csv` (`file,line,reason,raw`) and
 * `ingest_manifest.json` (source, per-file counts, sizes and SHA-256).
 *
 * Sources: `sample` (generated, deterministic), `kaggle` (the real dataset over Kaggle's REST API), a local
 * folder or `.zip` under `data/external/`, or an `http(s)://` URL of such a zip (downloaded to
 * `data/downloads/`).
 *
 * Run: `deno task ingest [flags]` = `deno run -q -P=ingest $INGEST_ALLOW_NET scripts/ingest.ts`
 * (permission set `ingest` in deno.json), or `make ingest ARGS="..."`.
 *
 * @example Usage
 * ```sh
 * deno task ingest --source sample --rows 5000 --test-rows 1000 --seed 7
 * KAGGLE_API_TOKEN=KGAT_... deno task ingest --limit 200000
 * ```
 *
 * @module
 */
import { defineStage, readEnv, runStage, type StageContext, type StageResult } from "./_cli.ts";
import { PipelineError, UsageError } from "../lib/core/errors.ts";
import { intFlag } from "../lib/core/flags.ts";
import { ingest, type IngestSource, sourceLabel } from "../lib/data/ingest.ts";
import {
  DEFAULT_KAGGLE_API_BASE,
  describeCredentials,
  KAGGLE_DATASET,
  parseApiBase,
  resolveKaggleCredentials,
} from "../lib/data/kaggle.ts";
import { DOWNLOADS_DIR, EXTERNAL_DIR, RAW_DIR } from "../lib/data/layout.ts";

/** Folders of the `ingest` permission set; paths are relative to the project root (the task's cwd). */
const READABLE_DIRS = [RAW_DIR, DOWNLOADS_DIR, EXTERNAL_DIR] as const;

const DEFAULT_ROWS = 20_000;
const DEFAULT_TEST_ROWS = 5_000;
const DEFAULT_SEED = 42;

const USAGE = `Usage: deno task ingest [--source kaggle|sample|PATH|URL] [flags] [--json] [--help]

Writes data/raw/train.csv and data/raw/test.csv (Kaggle format, validated, one review per line),
data/raw/rejects.csv (file,line,reason,raw) and data/raw/ingest_manifest.json.

  --source S             kaggle: download ${KAGGLE_DATASET} over Kaggle's API
                         sample: generate reviews (deterministic for a seed)
                         PATH:   a folder or .zip under data/external/ holding train.csv and test.csv
                                 (top level or one folder down)
                         URL:    an http(s) URL of such a .zip, downloaded to data/downloads/
                         (default: kaggle when Kaggle credentials are set, else sample)
  --rows N               sample: train rows (default ${DEFAULT_ROWS})
  --test-rows M          sample: test rows (default ${DEFAULT_TEST_ROWS})
  --seed S               sample: seed; train and test use separate streams of it (default ${DEFAULT_SEED})
  --limit N              kaggle/PATH/URL: take at most N valid rows per file (default: all)
  --kaggle-api-base URL  Kaggle API base URL (env KAGGLE_API_BASE_URL, default ${DEFAULT_KAGGLE_API_BASE})
  --force                ingest again even if data/raw already holds this source's data
  --json                 print {source, files, rejects} as one JSON object on stdout
  -h, --help             show this help

Environment:
  KAGGLE_API_TOKEN                 Kaggle API token (sent as Bearer), or
  KAGGLE_USERNAME + KAGGLE_KEY     legacy Kaggle API key (sent as Basic auth)
  KAGGLE_API_BASE_URL              see --kaggle-api-base
  INGEST_ALLOW_NET                 extra deno flag for hosts other than Kaggle's, e.g.
                                   INGEST_ALLOW_NET=--allow-net=example.com (replaces the Kaggle hosts)

A path outside data/external/ needs a read grant: copy it there, or run
  deno run -q -P=ingest --allow-read=data/raw,data/downloads,data/external,PATH scripts/ingest.ts --source PATH
`;

/** The stage's command line. */
export const spec = defineStage({
  name: "ingest",
  usage: USAGE,
  options: {
    source: { type: "string" },
    rows: { type: "string" },
    "test-rows": { type: "string" },
    seed: { type: "string" },
    limit: { type: "string" },
    "kaggle-api-base": { type: "string" },
    force: { type: "boolean" },
  },
});

type IngestContext = StageContext<typeof spec.options>;

const ENV_NAMES = ["KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_BASE_URL"] as const;

/** Resolves flags and environment into the source, logging which source was chosen and why. */
function resolveSource(ctx: IngestContext): IngestSource {
  const env = readEnv(ENV_NAMES);
  const flag = ctx.values.source;
  if (flag !== undefined && flag.trim() === "") {
    throw new UsageError("--source expects kaggle, sample, a path or a URL");
  }
  // Credentials matter only for Kaggle: a stray half-set pair must not break `--source sample`.
  const credentials = flag === undefined || flag === "kaggle" ? resolveKaggleCredentials(env) : undefined;
  let choice: string;
  if (flag !== undefined) {
    choice = flag;
    ctx.log.info(`source: ${choice} (from --source)`);
  } else if (credentials) {
    choice = "kaggle";
    ctx.log.info(
      `source: kaggle (credentials found in ${
        describeCredentials(credentials)
      }; --source sample generates data)`,
    );
  } else {
    choice = "sample";
    ctx.log.info(
      "source: sample (no Kaggle credentials; set KAGGLE_API_TOKEN, or KAGGLE_USERNAME and KAGGLE_KEY, for the real data)",
    );
  }

  const sampleFlags = (["rows", "test-rows", "seed"] as const).filter((name) =>
    ctx.values[name] !== undefined
  );
  const limitFlag = ctx.values.limit;
  const apiBaseFlag = ctx.values["kaggle-api-base"];
  const why = flag === undefined ? ` (the source is ${choice} by default)` : "";
  if (choice !== "sample" && sampleFlags.length > 0) {
    throw new UsageError(`--${sampleFlags[0]} applies to --source sample only${why}`);
  }
  if (choice === "sample" && limitFlag !== undefined) {
    throw new UsageError(`--limit applies to real sources; use --rows and --test-rows with sample${why}`);
  }
  if (choice !== "kaggle" && apiBaseFlag !== undefined) {
    throw new UsageError(`--kaggle-api-base applies to --source kaggle only${why}`);
  }

  if (choice === "sample") {
    return {
      kind: "sample",
      rows: intFlag("--rows", ctx.values.rows, { min: 1 }) ?? DEFAULT_ROWS,
      testRows: intFlag("--test-rows", ctx.values["test-rows"], { min: 1 }) ?? DEFAULT_TEST_ROWS,
      seed: intFlag("--seed", ctx.values.seed, { min: 0 }) ?? DEFAULT_SEED,
    };
  }
  if (choice === "kaggle") {
    if (!credentials) {
      throw new PipelineError(
        "--source kaggle needs credentials: set KAGGLE_API_TOKEN, or KAGGLE_USERNAME and KAGGLE_KEY " +
          "(create them at kaggle.com > Settings > API)",
      );
    }
    const apiBase = apiBaseFlag !== undefined
      ? parseApiBase(apiBaseFlag, "--kaggle-api-base")
      : env.KAGGLE_API_BASE_URL !== undefined
      ? parseApiBase(env.KAGGLE_API_BASE_URL, "KAGGLE_API_BASE_URL")
      : new URL(DEFAULT_KAGGLE_API_BASE);
    return { kind: "kaggle", apiBase, dataset: KAGGLE_DATASET, credentials };
  }
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(choice)?.[1]?.toLowerCase();
  if (scheme === "http" || scheme === "https") return { kind: "url", url: new URL(choice) };
  if (scheme !== undefined) throw new UsageError(`--source supports http(s) URLs only, got ${scheme}://`);
  return { kind: "path", path: choice };
}

/** Runs the stage. */
export async function main(ctx: IngestContext): Promise<StageResult> {
  const source = resolveSource(ctx);
  const limit = intFlag("--limit", ctx.values.limit, { min: 1 });
  const { upToDate, manifest } = await ingest({
    source,
    limit,
    force: ctx.values.force === true,
    rawDir: RAW_DIR,
    downloadsDir: DOWNLOADS_DIR,
    readableDirs: READABLE_DIRS,
    log: ctx.log,
    signal: ctx.signal,
  });
  const files = Object.fromEntries(
    Object.entries(manifest.files).map(([name, f]) => [
      name,
      { read: f.read, accepted: f.accepted, rejected: f.rejected, bytes: f.bytes, sha256: f.sha256 },
    ]),
  );
  return { json: { source: sourceLabel(source), upToDate, files, rejects: manifest.rejects.rows } };
}

if (import.meta.main) await runStage(spec, Deno.args, main);
