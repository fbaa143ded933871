/**
 * Stage `train`: trains a sentiment model on processed batches, logs params, metrics and the model to an
 * MLflow run, and registers the model as a new version of the registered model.
 *
 * Two families (`--model`): `linear` (the default), a fastText-style linear model over hashed word and
 * word-pair features trained by SGD in passes over the batches (it can continue a registered version with
 * `--warm-start-from`), and `forest`, the sparse random forest over a vocabulary. `--search` tunes the linear
 * model: each trial is a child run of one parent run, trials run in parallel workers, and only the best
 * (retrained on all the reviews) is registered.
 *
 * A share of the reviews (`--calibration-fraction`, default 5%) is held out of training to measure whether
 * the model's probabilities mean what they say; when its calibration error is above
 * `--calibration-threshold` (0.02), a calibrator is fitted on them and saved in the model. Each version
 * gets a model card (`model_card.md` beside the model, and the version's description) that evaluate
 * completes.
 *
 * Reads `data/processed/train_batch_N.tsv`; writes nothing locally; reaches only the MLflow server.
 *
 * @example
 * ```sh
 * deno task train --batches 0 1 2
 * deno task train --batches all --search
 * make train batches="0 1 2"
 * ```
 *
 * @module
 */
import { UsageError } from "../lib/core/errors.ts";
import { type FlagRange, intFlag, numberFlag, parseIntegerFlag } from "../lib/core/flags.ts";
import { DEFAULT_VECTORIZER_CONFIG } from "../lib/features/vectorizer.ts";
import { DEFAULT_CALIBRATION_THRESHOLD } from "../lib/models/calibration.ts";
import { BATCHES_DIR } from "../lib/data/layout.ts";
import { describeBatches } from "../lib/data/split_membership.ts";
import {
  type CalibrationSplit,
  DEFAULT_CALIBRATION_FRACTION,
  MODEL_FAMILIES,
  type ModelFamily,
  resolveTrainingBatches,
} from "../lib/models/fit.ts";
import { DEFAULT_FOREST_PARAMS, type MaxFeatures } from "../lib/models/forest/forest.ts";
import { type Pooling, POOLINGS } from "../lib/models/linear/model.ts";
import { DEFAULT_LINEAR_PARAMS, type LinearParams } from "../lib/models/linear/trainer.ts";
import {
  DEFAULT_SEARCH_TRIALS,
  DEFAULT_VALIDATION_FRACTION,
  gridOf,
  LINEAR_SEARCH_SPACE,
} from "../lib/models/tuning.ts";
import { parseVersionSpec } from "../lib/tracking/mlflow_registry.ts";
import {
  type ForestOptions,
  type LinearOptions,
  trainForestRun,
  type TrainingRunContext,
  trainLinearRun,
} from "../lib/tracking/training_runs.ts";
import { defineStage, runStage, type StageContext, type StageResult } from "./_cli.ts";
import { connectMlflow, DEFAULT_MODEL_NAME, MLFLOW_ENV_USAGE, openExperiment } from "./_mlflow.ts";

/**
 * Hash buckets of the linear model with `--full`: the 10M bins Joulin et al. (2016) used for bigrams on
 * the full 3.6M-review dataset. Words and pairs share the table here (fastText keeps words apart), so
 * fewer buckets would mean more collisions. The saved model grows with it (about 44 bytes per used bucket).
 */
export const FULL_DATA_BUCKETS = 10_000_000;

/**
 * The family trained when neither `--model` nor a forest flag is given. Linear, because it won the
 * benchmark on the real development reviews (docs/model): 86.9% vs 84.0% test accuracy, in less time.
 */
export const DEFAULT_MODEL_FAMILY: ModelFamily = "linear";

const LINEAR = DEFAULT_LINEAR_PARAMS;
const FOREST = DEFAULT_FOREST_PARAMS;
const VOCABULARY = DEFAULT_VECTORIZER_CONFIG;

const USAGE = `Usage: deno task train --batches N [N ...] [options]
       deno task train --full [options]

Trains a sentiment model on processed batches, logs it to MLflow and registers a new model version.

Options:
  --batches N [N ...]      processed batches to train on: numbers (0 1 2 or 0,1,2) or "all"
  --full                   train on every processed batch (--batches all); the linear model also gets
                           ${
  FULL_DATA_BUCKETS.toLocaleString("en-US")
} buckets unless --buckets is given (the full dataset's setting)
  --model linear|forest    model family (default ${DEFAULT_MODEL_FAMILY}; forest when a forest flag such as --trees is given)
  --model-name NAME        registered model (default ${DEFAULT_MODEL_NAME}, or MLFLOW_MODEL_NAME)
  --run-name NAME          MLflow run name (default: MLflow picks one)
  --seed N                 random seed; same seed and data give the same model (default ${LINEAR.seed})
  --ngrams 1|2             1 = words, 2 = words and adjacent pairs (default ${LINEAR.ngrams})
  --workers N              parallel tree builders or search trials (default: number of cores)
  --calibration-fraction F share of reviews held out of training to measure calibration (default ${DEFAULT_CALIBRATION_FRACTION});
                           0 trains on every review and measures nothing
  --calibration-threshold X  calibration error above which a calibrator (Platt or isotonic, whichever
                           does better on held-out reviews) is fitted and saved in the model (default ${DEFAULT_CALIBRATION_THRESHOLD})

Forest (--model forest, implied by any of these flags):
  --trees N                trees in the forest (default ${FOREST.trees})
  --max-depth N            maximum tree depth, 0 = unlimited (default ${FOREST.maxDepth})
  --min-samples-leaf N     minimum reviews per leaf (default ${FOREST.minSamplesLeaf})
  --max-features F         words tried per split: sqrt, log2, all or a number (default ${FOREST.maxFeatures})
  --no-bootstrap           grow every tree on all reviews (no out-of-bag accuracy)
  --max-vocab N            vocabulary size (default ${VOCABULARY.maxFeatures})
  --min-df N               minimum reviews a term must appear in (default ${VOCABULARY.minDf})

Linear (the default; fastText-style: hashed n-gram embeddings, pooled, logistic output, SGD):
  --dim N                  embedding size (default ${LINEAR.dim})
  --epochs N               passes over the batches (default ${LINEAR.epochs})
  --lr X                   initial learning rate, decayed linearly to 0 (default ${LINEAR.learningRate})
  --pooling mean|sqrt      a review is its features' embeddings summed and divided by n (mean) or by
                           the square root of n (default ${LINEAR.pooling})
  --nb-weighting X         naive-Bayes weighting of the features, 0 = off, 1 = NB-SVM's (default ${LINEAR.nbWeighting})
  --buckets N              hash buckets of the embedding table (default ${LINEAR.buckets}; ${FULL_DATA_BUCKETS} with --full)
  --warm-start-from V      continue training registered version V (a number, latest or @alias) on the
                           batches; it keeps V's dim, buckets, ngrams and pooling
  --search                 tune lr, epochs and dim: trials on a validation split carved from the
                           batches, each a child run of this run; the best is retrained on all the
                           reviews and registered. Flags given explicitly are not tuned
  --trials N               most trials of --search (default ${DEFAULT_SEARCH_TRIALS}; the whole grid has ${
  gridOf(LINEAR_SEARCH_SPACE).length
})
  --validation-fraction F  share of reviews --search holds out for validation (default ${DEFAULT_VALIDATION_FRACTION})
  --no-refit               register the best trial's model as is, without retraining on all reviews

  --json                   print {"run_id","model_name","model_version",...} on stdout
  -h, --help               show this help

${MLFLOW_ENV_USAGE}

Examples:
  deno task train --full
  deno task train --batches all --search --trials ${DEFAULT_SEARCH_TRIALS}
  deno task train --batches 3 --warm-start-from @champion
  deno task train --batches 0 1 2 --trees 200`;

/** The train stage's command line. */
export const spec = defineStage({
  name: "train",
  usage: USAGE,
  allowPositionals: true,
  options: {
    batches: { type: "string" },
    full: { type: "boolean" },
    model: { type: "string" },
    "model-name": { type: "string" },
    "run-name": { type: "string" },
    trees: { type: "string" },
    "max-depth": { type: "string" },
    "min-samples-leaf": { type: "string" },
    "max-features": { type: "string" },
    "no-bootstrap": { type: "boolean" },
    seed: { type: "string" },
    workers: { type: "string" },
    "max-vocab": { type: "string" },
    "min-df": { type: "string" },
    ngrams: { type: "string" },
    dim: { type: "string" },
    epochs: { type: "string" },
    lr: { type: "string" },
    pooling: { type: "string" },
    "nb-weighting": { type: "string" },
    buckets: { type: "string" },
    "warm-start-from": { type: "string" },
    search: { type: "boolean" },
    trials: { type: "string" },
    "validation-fraction": { type: "string" },
    "no-refit": { type: "boolean" },
    "calibration-fraction": { type: "string" },
    "calibration-threshold": { type: "string" },
  },
});

type TrainValues = StageContext<typeof spec.options>["values"];
type TrainFlag = keyof TrainValues;

/** The range of every numeric flag, in one place. */
const RANGES = {
  workers: { min: 1, max: 256 },
  seed: { min: 0, max: 2 ** 32 - 1 },
  ngrams: { min: 1, max: 2 },
  trees: { min: 1 },
  "max-depth": { min: 0 },
  "min-samples-leaf": { min: 1 },
  "max-vocab": { min: 1 },
  "min-df": { min: 1 },
  dim: { min: 1, max: 1000 },
  epochs: { min: 1, max: 1000 },
  lr: { min: Number.MIN_VALUE, max: 10 },
  "nb-weighting": { min: 0, max: 2 },
  buckets: { min: 1, max: 2 ** 30 },
  trials: { min: 1, max: 1000 },
  "validation-fraction": { min: 0.01, max: 0.5 },
  "calibration-fraction": { min: 0, max: 0.5 },
  "calibration-threshold": { min: 0, max: 1 },
} as const satisfies Partial<Record<TrainFlag, FlagRange>>;

/** An integer flag within its range, `undefined` when not given. */
function int(values: TrainValues, name: keyof typeof RANGES): number | undefined {
  return intFlag(`--${name}`, values[name], RANGES[name]);
}

/** A number flag within its range, `undefined` when not given. */
function number(values: TrainValues, name: keyof typeof RANGES): number | undefined {
  return numberFlag(`--${name}`, values[name], RANGES[name]);
}

/** Flags that belong to one family only; giving one with the other family is a usage error. */
const FAMILY_FLAGS: Record<ModelFamily, readonly TrainFlag[]> = {
  forest: ["trees", "max-depth", "min-samples-leaf", "max-features", "no-bootstrap", "max-vocab", "min-df"],
  linear: [
    "dim",
    "epochs",
    "lr",
    "pooling",
    "nb-weighting",
    "buckets",
    "warm-start-from",
    "search",
    "trials",
    "validation-fraction",
    "no-refit",
  ],
};

/** Parses `--batches 0 1 2`, `--batches 0,1,2` or `--batches all` (positionals follow the flag). */
export function parseBatches(flag: string | undefined, positionals: string[]): (number | "all")[] {
  if (flag === undefined) {
    if (positionals.length > 0) {
      throw new UsageError(`unexpected argument "${positionals[0]}"; use --batches N`);
    }
    throw new UsageError("--batches is required, e.g. --batches 0 1 2 or --batches all (or --full)");
  }
  const words = [flag, ...positionals].flatMap((word) => word.split(",")).map((word) => word.trim())
    .filter((word) => word !== "");
  if (words.length === 0) throw new UsageError("--batches needs at least one batch number or all");
  return words.map((word) => word === "all" ? "all" : parseIntegerFlag("--batches", word, { min: 0 }));
}

/**
 * Resolves `--model` and checks that no flag of the other family was given. Without `--model`, a
 * forest-only flag (`--trees 200`) selects the forest, and anything else the default, linear.
 */
export function parseModelFamily(values: TrainValues): ModelFamily {
  const raw = values.model;
  if (raw !== undefined && !(MODEL_FAMILIES as readonly string[]).includes(raw)) {
    throw new UsageError(`--model expects ${MODEL_FAMILIES.join(" or ")}, got ${JSON.stringify(raw)}`);
  }
  const forestFlag = FAMILY_FLAGS.forest.some((flag) => values[flag] !== undefined);
  const family = (raw ?? (forestFlag ? "forest" : DEFAULT_MODEL_FAMILY)) as ModelFamily;
  for (const [other, flags] of Object.entries(FAMILY_FLAGS)) {
    if (other === family) continue;
    const given = flags.find((flag) => values[flag] !== undefined);
    if (given !== undefined) {
      throw new UsageError(`--${given} applies to --model ${other}, not ${family}; add --model ${other}`);
    }
  }
  return family;
}

function parseMaxFeatures(value: string | undefined): MaxFeatures | undefined {
  if (value === undefined) return undefined;
  if (value === "sqrt" || value === "log2" || value === "all") return value;
  return parseIntegerFlag("--max-features", value, { min: 1 });
}

/** Drops undefined fields so defaults apply. */
function defined<T extends object>(object: T): Partial<T> {
  return Object.fromEntries(Object.entries(object).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Resolves the calibration flags: a hold-out split, or undefined when the fraction is 0. */
function parseCalibrationFlags(values: TrainValues): CalibrationSplit | undefined {
  const fraction = number(values, "calibration-fraction") ?? DEFAULT_CALIBRATION_FRACTION;
  const threshold = number(values, "calibration-threshold");
  if (fraction === 0) {
    if (threshold !== undefined) {
      throw new UsageError("--calibration-threshold needs a --calibration-fraction above 0");
    }
    return undefined;
  }
  // Its own seed, so that it holds out other reviews than a search's validation split.
  return { holdout: { fraction, seed: 0x5ca1ab1e }, ...(threshold !== undefined ? { threshold } : {}) };
}

async function main(ctx: StageContext<typeof spec.options>): Promise<StageResult> {
  const { values, log, signal } = ctx;
  const family = parseModelFamily(values);
  if (values.full === true && values.batches !== undefined) {
    throw new UsageError("--full trains on every batch; give --full or --batches, not both");
  }
  const requested = values.full === true ? ["all" as const] : parseBatches(values.batches, ctx.positionals);
  if (values.full === true && ctx.positionals.length > 0) {
    throw new UsageError(`unexpected argument "${ctx.positionals[0]}" after --full`);
  }
  const workers = int(values, "workers") ?? navigator.hardwareConcurrency;
  const calibration = parseCalibrationFlags(values);
  // Validate every flag before touching the data or MLflow: a typo must not cost a training run.
  const forestOptions = family === "forest" ? parseForestFlags(values) : undefined;
  const linearOptions = family === "linear" ? parseLinearFlags(values) : undefined;
  // A warm start keeps its model's buckets, so the --full preset applies to fresh models only.
  if (linearOptions && values.full === true && linearOptions.warmStartFrom === undefined) {
    linearOptions.params.buckets ??= FULL_DATA_BUCKETS;
  }

  // Cheap local checks and the MLflow health check come before any heavy work.
  const selection = await resolveTrainingBatches(requested);
  for (const skipped of selection.skipped) log.warn(`skipping ${skipped.path}: ${skipped.reason}`);
  if (selection.unprocessed.length > 0) {
    log.warn(
      `${describeBatches(selection.unprocessed)} of the current split ${
        selection.unprocessed.length === 1 ? "is" : "are"
      } not preprocessed and left out; run "deno task preprocess_batch N" for each to train on them too`,
    );
  }
  if (selection.split === undefined) {
    log.warn(`no ${BATCHES_DIR}/manifest.json: cannot check that the batches belong to the current split`);
  }
  const batches = selection.batches;
  const mlflow = await connectMlflow({ modelName: values["model-name"] }, log, signal);
  const experiment = await openExperiment(mlflow, log, "train");
  log.info(`training a ${family} model on ${describeBatches(batches.map((b) => b.index))}`, {
    reviews: batches.reduce((sum, b) => sum + b.meta.rows, 0),
    experiment: mlflow.config.experimentName,
    tracking: mlflow.config.trackingUri,
  });
  const runName = values["run-name"];
  const context: TrainingRunContext = {
    client: mlflow.client,
    modelName: mlflow.modelName,
    experimentId: experiment.experimentId,
    trackingUri: mlflow.config.trackingUri,
    tags: mlflow.sourceTags("scripts/train.ts", "train"),
    // The orchestrator's coordinates (e.g. the Airflow DAG run and task that trained this version).
    versionTags: mlflow.config.runTags,
    ...(runName !== undefined ? { runName } : {}),
    batches,
    ...(selection.split ? { split: selection.split } : {}),
    workers,
    log,
    signal,
    ...(calibration ? { calibration } : {}),
  };
  const result = forestOptions
    ? await trainForestRun(context, forestOptions)
    : await trainLinearRun(context, linearOptions!);
  const extra = result.search
    ? ` (best of ${result.search.trials} trials, validation accuracy ${
      result.search.best_val_accuracy.toFixed(4)
    })`
    : "";
  return {
    json: { ...result },
    text: `run ${result.run_id}: registered ${result.model_name} version ${result.model_version}${extra}`,
  };
}

function parseForestFlags(values: TrainValues): ForestOptions {
  return {
    forest: defined({
      trees: int(values, "trees"),
      maxDepth: int(values, "max-depth"),
      minSamplesLeaf: int(values, "min-samples-leaf"),
      maxFeatures: parseMaxFeatures(values["max-features"]),
      seed: int(values, "seed"),
      bootstrap: values["no-bootstrap"] === true ? false : undefined,
    }),
    vectorizer: defined({
      maxFeatures: int(values, "max-vocab"),
      minDf: int(values, "min-df"),
      ngramMax: int(values, "ngrams") as 1 | 2 | undefined,
    }),
  };
}

/** `--pooling`, `undefined` when not given. */
function poolingFlag(value: string | undefined): Pooling | undefined {
  if (value === undefined) return undefined;
  if (!(POOLINGS as readonly string[]).includes(value)) {
    throw new UsageError(`--pooling must be ${POOLINGS.join(" or ")}, got "${value}"`);
  }
  return value as Pooling;
}

function parseLinearFlags(values: TrainValues): LinearOptions {
  const params: Partial<LinearParams> = defined({
    dim: int(values, "dim"),
    epochs: int(values, "epochs"),
    learningRate: number(values, "lr"),
    pooling: poolingFlag(values.pooling),
    nbWeighting: number(values, "nb-weighting"),
    buckets: int(values, "buckets"),
    ngrams: int(values, "ngrams") as 1 | 2 | undefined,
    seed: int(values, "seed"),
  });
  if (params.learningRate === 0) throw new UsageError("--lr must be > 0");
  const warm = values["warm-start-from"];
  if (warm !== undefined) parseVersionSpec(warm, "--warm-start-from");
  const options: LinearOptions = { params, ...(warm !== undefined ? { warmStartFrom: warm } : {}) };
  if (values.search === true) {
    const fraction = number(values, "validation-fraction") ?? DEFAULT_VALIDATION_FRACTION;
    options.search = {
      trials: int(values, "trials") ?? DEFAULT_SEARCH_TRIALS,
      holdout: { fraction, seed: params.seed ?? DEFAULT_LINEAR_PARAMS.seed },
      refit: values["no-refit"] !== true,
    };
  } else {
    for (const flag of ["trials", "validation-fraction", "no-refit"] as const) {
      if (values[flag] !== undefined) throw new UsageError(`--${flag} applies to --search; add --search`);
    }
  }
  return options;
}

if (import.meta.main) await runStage(spec, Deno.args, main);
