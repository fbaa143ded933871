/**
 * The train stage's work, apart from MLflow: find the processed batches and train one of the two model
 * families on them. `scripts/train.ts` wraps it in an MLflow run.
 *
 * - `forest` ({@linkcode trainSentimentModel}): two streamed passes over the processed files: the first
 *   counts document frequencies for the vocabulary, the second turns each review into its sorted feature
 *   ids. Only the ids (4 bytes per distinct term per review) are kept in memory, never the text; then the
 *   forest is grown on them.
 * - `linear` ({@linkcode trainLinearModel}): SGD in passes over the files (`lib/models/linear/`), with hashed
 *   n-gram features, so memory does not grow with the number of reviews; it can continue training a
 *   registered model (a warm start).
 *
 * @module
 */
import { createHash } from "node:crypto";
import { join } from "node:path";
import { PipelineError } from "../core/errors.ts";
import { type ForestParams, resolveForestParams, trainForest } from "./forest/forest.ts";
import type { LinearModel } from "./linear/model.ts";
import { LINEAR_ENGINE_NAME, serializeLinear } from "./linear/model_format.ts";
import {
  countRows,
  type HoldoutSplit,
  isHoldoutRow,
  type LinearParams,
  resolveLinearParams,
  scoreHeldOut,
  type TrainingFile,
  trainLinear,
} from "./linear/trainer.ts";
import { MODEL_FORMAT as FOREST_ENGINE_NAME, serializeForest } from "./forest/model_format.ts";
import { SparseDatasetBuilder } from "./forest/sparse_dataset.ts";
import type { Forest } from "./forest/forest.ts";
import { BATCHES_DIR, batchFileName, listBatchIndexes, PROCESSED_DIR } from "../data/layout.ts";
import { type ProcessedMeta, readProcessed, readProcessedMeta } from "../data/processed_data.ts";
import { MANIFEST_FILE, readManifest } from "../data/batches.ts";
import { describeBatches, splitMismatch } from "../data/split_membership.ts";
import { createProgress, type ProgressOptions } from "../core/progress.ts";
import { type CalibrationDecision, decideCalibration } from "./calibration.ts";
import { describeTokenizerDifference, sameTokenizer, tokenizerInfo } from "../features/tokenizer.ts";
import {
  resolveVectorizerConfig,
  type Vectorizer,
  type VectorizerConfig,
  VocabularyBuilder,
} from "../features/vectorizer.ts";

/** A processed batch chosen for training. */
export interface TrainingBatch {
  index: number;
  path: string;
  meta: ProcessedMeta;
}

/** A processed batch left out of `--batches all`, and why. */
export interface SkippedBatch {
  index: number;
  path: string;
  reason: string;
}

/** What {@linkcode resolveTrainingBatches} chose. */
export interface TrainingSelection {
  /** The batches to train on, ascending. */
  batches: TrainingBatch[];
  /** Processed batches `all` left out because they are not from the current split. */
  skipped: SkippedBatch[];
  /** Batches of the current split that `all` could not use because they are not preprocessed yet. */
  unprocessed: number[];
  /** The current split (from its manifest), or undefined when there is no manifest to check against. */
  split?: { manifest: string; sourceSha256: string };
}

/** Folders {@linkcode resolveTrainingBatches} reads. */
export interface TrainingDirs {
  /** @default {PROCESSED_DIR} */
  processedDir?: string;
  /** Where the split's `manifest.json` is. @default {BATCHES_DIR} */
  batchesDir?: string;
}

/**
 * Resolves `--batches` values (numbers, or `all`) to processed batches, checking each exists, was tokenised
 * by this build's tokenizer and belongs to the current split (`data/batches/manifest.json`, see
 * `lib/data/split_membership.ts`). `all` means every processed batch of the current split: the others are
 * skipped and listed in `skipped`. A batch named explicitly that is not from the current split is refused.
 * Without a manifest the batches must at least come from one split.
 *
 * @throws {PipelineError} naming a missing batch and the ones available, a batch of another split, or a
 *   stale tokenizer version.
 */
export async function resolveTrainingBatches(
  requested: readonly (number | "all")[],
  dirs: TrainingDirs = {},
): Promise<TrainingSelection> {
  const dir = dirs.processedDir ?? PROCESSED_DIR;
  const manifestPath = join(dirs.batchesDir ?? BATCHES_DIR, MANIFEST_FILE);
  const manifest = await readManifest(dirs.batchesDir ?? BATCHES_DIR);
  const available = await listBatchIndexes(dir, ".tsv");
  const availableText = available.length > 0 ? available.join(", ") : "none";
  const all = requested.includes("all");
  let indexes: number[];
  if (all) {
    if (available.length === 0) {
      throw new PipelineError(
        `no processed batches in ${dir}; run "deno task preprocess_batch N" for each batch first`,
      );
    }
    indexes = available;
  } else {
    indexes = [...new Set(requested as number[])].sort((a, b) => a - b);
  }
  const selection: TrainingSelection = {
    batches: [],
    skipped: [],
    unprocessed: [],
    ...(manifest ? { split: { manifest: manifestPath, sourceSha256: manifest.source.sha256 } } : {}),
  };
  for (const index of indexes) {
    if (!available.includes(index)) {
      throw new PipelineError(
        `batch ${index} is not preprocessed (${join(dir, batchFileName(index, ".tsv"))} missing; ` +
          `available: ${availableText}); run "deno task preprocess_batch ${index}"`,
      );
    }
    const path = join(dir, batchFileName(index, ".tsv"));
    const meta = await readProcessedMeta(path);
    const mismatch = manifest ? splitMismatch(index, meta, manifest) : undefined;
    if (mismatch !== undefined) {
      const inSplit = manifest!.batches.some((batch) => batch.index === index);
      if (all) {
        selection.skipped.push({
          index,
          path,
          reason: `not from the current split (${manifestPath}): ${mismatch}`,
        });
        continue;
      }
      throw new PipelineError(
        `${path} is not from the current split (${manifestPath}): ${mismatch}; ` +
          (inSplit
            ? `rerun "deno task preprocess_batch ${index}"`
            : `train on the current split's ${
              describeBatches(manifest!.batches.map((b) => b.index))
            } or on --batches all`),
      );
    }
    // The model records this build's tokenizer, and is served with it: its training tokens must be that
    // tokenizer's, setting for setting, not just of the same version.
    if (!sameTokenizer(meta.tokenizer, tokenizerInfo())) {
      throw new PipelineError(
        `${path} was tokenised with other tokenizer settings than this build's (${
          describeTokenizerDifference(meta.tokenizer, tokenizerInfo())
        }); rerun "deno task preprocess_batch ${index}"`,
      );
    }
    selection.batches.push({ index, path, meta });
  }
  if (manifest && all) {
    const used = new Set(selection.batches.map((batch) => batch.index));
    selection.unprocessed = manifest.batches.map((batch) => batch.index).filter((index) => !used.has(index));
    if (selection.batches.length === 0) {
      throw new PipelineError(
        `no processed batch in ${dir} is from the current split (${manifestPath}, ${
          describeBatches(manifest.batches.map((b) => b.index))
        }); run "deno task preprocess_batch N" for each of them`,
      );
    }
  }
  if (!manifest) {
    // Nothing says which split is current, but batches of two different splits must still not be mixed.
    const splits = new Set(selection.batches.map((batch) => batch.meta.split?.sourceSha256 ?? "none"));
    if (splits.size > 1) {
      throw new PipelineError(
        `${describeBatches(selection.batches.map((b) => b.index))} in ${dir} come from different ` +
          `splits and ${manifestPath} is missing; run split_batches, then preprocess_batch for each batch`,
      );
    }
  }
  return selection;
}

/** A 36-character digest of the training data (MLflow's dataset digest limit), from the files' SHA-256. */
export function datasetDigest(metas: readonly ProcessedMeta[]): string {
  const hash = createHash("sha256");
  for (const meta of metas) hash.update(meta.output.sha256);
  return hash.digest("hex").slice(0, 36);
}

/**
 * How training measures and fixes calibration: the reviews the split holds out are not trained on; the
 * trained model scores them, and {@linkcode decideCalibration} fits a calibrator when its probabilities
 * are off by more than the threshold.
 */
export interface CalibrationSplit {
  /** The held-out reviews (by batch index and line, so the same split for any reading order). */
  holdout: HoldoutSplit;
  /** Calibration error above which a calibrator is fitted. @default {DEFAULT_CALIBRATION_THRESHOLD} */
  threshold?: number;
}

/** Default share of the training reviews held out to measure calibration. */
export const DEFAULT_CALIBRATION_FRACTION = 0.05;

/** Options of {@linkcode trainSentimentModel}. */
export interface TrainModelOptions {
  batches: readonly TrainingBatch[];
  /** Hold reviews out to measure calibration and fit a calibrator if needed. */
  calibration?: CalibrationSplit;
  vectorizer?: Partial<VectorizerConfig>;
  forest?: Partial<ForestParams>;
  /** Web Workers growing trees. @default {navigator.hardwareConcurrency} */
  workers?: number;
  signal?: AbortSignal;
  /** Progress display mode. */
  progress?: ProgressOptions["mode"];
  /** Called when a phase starts, for logs. */
  onPhase?: (phase: "vocabulary" | "vectorize" | "fit", detail: Record<string, unknown>) => void;
}

/** A trained model and how it was made. */
export interface TrainedModel {
  vectorizer: Vectorizer;
  forest: Forest;
  engineName: string;
  engineBytes: Uint8Array;
  vectorizerConfig: VectorizerConfig;
  forestParams: ForestParams;
  rows: number;
  positives: number;
  seconds: { vocabulary: number; vectorize: number; fit: number };
  /** The calibration measured on the held-out reviews, and the calibrator to keep, if any. */
  calibration?: CalibrationDecision;
}

/** Fits the vocabulary and the forest on the given processed batches. */
export async function trainSentimentModel(options: TrainModelOptions): Promise<TrainedModel> {
  const { batches, signal } = options;
  const vectorizerConfig = resolveVectorizerConfig(options.vectorizer);
  const forestParams = resolveForestParams(options.forest);
  const totalRows = batches.reduce((sum, batch) => sum + batch.meta.rows, 0);
  if (totalRows === 0) throw new PipelineError("the chosen batches hold no reviews; check data/processed");
  const split = options.calibration?.holdout;
  const heldOut = (batch: TrainingBatch, row: number) =>
    split !== undefined && isHoldoutRow(split, batch.index, row);

  options.onPhase?.("vocabulary", { rows: totalRows, ...vectorizerConfig });
  let started = performance.now();
  const builder = new VocabularyBuilder(vectorizerConfig);
  let progress = createProgress("vocabulary", { total: totalRows, unit: "reviews", mode: options.progress });
  let done = 0;
  for (const batch of batches) {
    let line = 0;
    for await (const row of readProcessed(batch.path, { signal })) {
      if (!heldOut(batch, line++)) builder.add(row.tokens);
      progress.update(++done);
    }
  }
  progress.finish();
  const vectorizer = builder.finish();
  const vocabularySeconds = (performance.now() - started) / 1000;
  if (vectorizer.size === 0) {
    throw new PipelineError(
      `no term reaches --min-df ${vectorizerConfig.minDf} in ${totalRows} reviews; lower --min-df or add batches`,
    );
  }

  options.onPhase?.("vectorize", { vocabulary: vectorizer.size });
  started = performance.now();
  const datasetBuilder = new SparseDatasetBuilder(vectorizer.size);
  // The held-out reviews' feature ids, scored once the forest is grown.
  const heldOutRows: Uint32Array[] = [];
  const heldOutLabels: number[] = [];
  let positives = 0;
  progress = createProgress("vectorize", { total: totalRows, unit: "reviews", mode: options.progress });
  done = 0;
  for (const batch of batches) {
    let line = 0;
    for await (const row of readProcessed(batch.path, { signal })) {
      const label = row.polarity === 2 ? 1 : 0;
      if (heldOut(batch, line++)) {
        heldOutRows.push(vectorizer.transform(row.tokens));
        heldOutLabels.push(label);
      } else {
        positives += label;
        datasetBuilder.addRow(vectorizer.transform(row.tokens), label);
      }
      progress.update(++done);
    }
  }
  progress.finish();
  const dataset = datasetBuilder.finish();
  const vectorizeSeconds = (performance.now() - started) / 1000;
  if (positives === 0 || positives === dataset.numRows) {
    throw new PipelineError(
      `the chosen batches hold only ${
        positives === 0 ? "negative" : "positive"
      } reviews; a classifier needs both`,
    );
  }

  options.onPhase?.("fit", { rows: dataset.numRows, nonZeros: dataset.nnz, ...forestParams });
  started = performance.now();
  progress = createProgress("fit", { total: forestParams.trees, unit: "trees", mode: options.progress });
  const forest = await trainForest(dataset, forestParams, {
    ...(options.workers !== undefined ? { workers: options.workers } : {}),
    ...(signal ? { signal } : {}),
    onProgress: (p) => progress.update(p.treesDone),
  });
  progress.finish();
  const fitSeconds = (performance.now() - started) / 1000;
  const calibration = options.calibration
    ? decideCalibration(
      heldOutRows.map((ids) => forest.predictProba(ids)),
      heldOutLabels,
      "probability",
      {
        ...(options.calibration.threshold !== undefined ? { threshold: options.calibration.threshold } : {}),
      },
    )
    : undefined;

  return {
    vectorizer,
    forest,
    engineName: FOREST_ENGINE_NAME,
    engineBytes: serializeForest(forest),
    vectorizerConfig,
    forestParams,
    rows: dataset.numRows,
    positives,
    seconds: { vocabulary: vocabularySeconds, vectorize: vectorizeSeconds, fit: fitSeconds },
    ...(calibration ? { calibration } : {}),
  };
}

/** The model families `train --model` offers. */
export const MODEL_FAMILIES = ["forest", "linear"] as const;

/** A model family. */
export type ModelFamily = typeof MODEL_FAMILIES[number];

/** The batches as the linear trainer reads them (the batch index is the hold-out split's file key). */
export function trainingFilesOf(batches: readonly TrainingBatch[]): TrainingFile[] {
  return batches.map((batch) => ({ path: batch.path, rows: batch.meta.rows, key: batch.index }));
}

/** Options of {@linkcode trainLinearModel}. */
export interface TrainLinearModelOptions {
  batches: readonly TrainingBatch[];
  params?: Partial<LinearParams>;
  /** Continue training this model (a warm start); its shape overrides `params`' dim, buckets and ngrams. */
  initial?: LinearModel;
  /** Hold these reviews out of training (a validation split). */
  holdout?: HoldoutSplit;
  /** Hold reviews out to measure calibration and fit a calibrator if needed (replaces `holdout`). */
  calibration?: CalibrationSplit;
  signal?: AbortSignal;
  /** Progress display mode. */
  progress?: ProgressOptions["mode"];
  /** Called when training starts, for logs. */
  onPhase?: (phase: "fit", detail: Record<string, unknown>) => void;
}

/** A trained linear model and how it was made. */
export interface TrainedLinearModel {
  model: LinearModel;
  engineName: string;
  engineBytes: Uint8Array;
  params: LinearParams;
  /** Reviews per epoch. */
  rows: number;
  positives: number;
  /** Mean training log loss of each epoch. */
  epochLosses: number[];
  seconds: { fit: number };
  /** The calibration measured on the held-out reviews, and the calibrator to keep, if any. */
  calibration?: CalibrationDecision;
}

/**
 * Trains a linear model on processed batches, or continues training `initial` on them.
 *
 * @param options Batches, parameters, optional warm-start model and hold-out split.
 * @returns The model, its engine file and statistics.
 * @throws {PipelineError} for empty batches, batches with one label only, or malformed files.
 */
export async function trainLinearModel(options: TrainLinearModelOptions): Promise<TrainedLinearModel> {
  const shape = options.initial?.shape;
  const params = resolveLinearParams({
    ...options.params,
    ...(shape
      ? { dim: shape.dim, buckets: shape.buckets, ngrams: shape.ngrams, pooling: shape.pooling }
      : {}),
  });
  const files = trainingFilesOf(options.batches);
  const holdout = options.calibration?.holdout ?? options.holdout;
  const totalRows = files.reduce((sum, file) => sum + file.rows, 0);
  if (totalRows === 0) throw new PipelineError("the chosen batches hold no reviews; check data/processed");
  options.onPhase?.("fit", {
    rows: totalRows,
    ...params,
    ...(options.initial ? { warm_start_examples: options.initial.history.examples } : {}),
  });
  const filter = holdout ? { holdout, side: "train" as const } : undefined;
  const progress = createProgress("fit", {
    total: countRows(files, filter) * params.epochs,
    unit: "reviews",
    mode: options.progress,
  });
  const result = await trainLinear({
    files,
    params,
    ...(options.initial ? { initial: options.initial } : {}),
    ...(holdout ? { holdout } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
    onProgress: (p) => progress.update(p.done),
  });
  progress.finish();
  if (result.positives === 0 || result.positives === result.rows) {
    throw new PipelineError(
      `the chosen batches hold only ${
        result.positives === 0 ? "negative" : "positive"
      } reviews; a classifier needs both`,
    );
  }
  let calibration: CalibrationDecision | undefined;
  if (options.calibration) {
    const { scores, labels } = await scoreHeldOut(
      result.model,
      files,
      options.calibration.holdout,
      options.signal,
    );
    calibration = decideCalibration(scores, labels, "logit", {
      ...(options.calibration.threshold !== undefined ? { threshold: options.calibration.threshold } : {}),
    });
  }
  return {
    model: result.model,
    engineName: LINEAR_ENGINE_NAME,
    engineBytes: serializeLinear(result.model),
    params,
    rows: result.rows,
    positives: result.positives,
    epochLosses: result.epochLosses,
    seconds: { fit: result.seconds },
    ...(calibration ? { calibration } : {}),
  };
}
