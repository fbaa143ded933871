/**
 * The model artifact: everything evaluate, predict and the HTTP API need to score a review, in one folder
 * that train uploads to MLflow (`<run artifact_uri>/model/`) and registers as a model version.
 *
 * ```
 * model/
 *   MLmodel          MLflow's model descriptor (flavor, signature), so the MLflow UI shows a model
 *   model.json       manifest: format version, engine, tokenizer, vectorizer config, label map, versions,
 *                    and the SHA-256 of every other file
 *   vocabulary.json  the vectorizer (vocabulary and n-gram config), for engines that score vocabulary ids
 *   engine.bin       the trained engine (e.g. the sparse forest), in the engine's own compact format
 * ```
 *
 * Engines come in two kinds: a {@linkcode ScoringEngine} scores the vocabulary ids of `vocabulary.json`
 * (the forest); a {@linkcode TokenScoringEngine} featurises tokens itself (the hashed linear model keeps
 * its hashing configuration in `engine.bin`) and its artifact has no `vocabulary.json`. Loading asks the
 * engine which kind it is, so evaluate, predict and the API never need to know the family in advance.
 *
 * Loading verifies each file's checksum and refuses unknown format versions, a tokenizer other than this
 * build's, or an engine it does not know, each with a one-line message saying what to do.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { PipelineError } from "../core/errors.ts";
import { LABEL_MAP, type Polarity, type Review, type SentimentLabel } from "../data/review.ts";
import {
  createTokenizerFromInfo,
  type Tokenizer,
  TOKENIZER_VERSION,
  type TokenizerInfo,
  tokenizerInfo,
} from "../features/tokenizer.ts";
import { TokenHashes } from "../features/token_hash.ts";
import { Vectorizer } from "../features/vectorizer.ts";
import {
  buildExplanation,
  type Explanation,
  type ExplanationMethod,
  type FeatureContribution,
  type ScoreDecomposition,
} from "./explanation.ts";
import { calibratedProbability, type Calibration, calibrationProblem } from "./calibration.ts";

/** Identifies our artifact layout in `model.json`. */
export const MODEL_FORMAT = "amazon-reviews-sentiment-model";
/** Version of the artifact layout; bump on any incompatible change. */
export const MODEL_FORMAT_VERSION = 1;
/** The MLflow flavor name written into `MLmodel`. */
export const MLFLOW_FLAVOR = "deno_sentiment";

/** A trained scorer over vectorizer feature ids. */
export interface ScoringEngine {
  /** Probability that a review with these (sorted, unique) feature ids is positive. */
  predictProba(featureIds: Uint32Array): number;
  /** Whether {@linkcode ScoringEngine.explainProba} can run (a model saved without what it needs cannot). */
  readonly explainable?: boolean;
  /**
   * The exact decomposition of {@linkcode ScoringEngine.predictProba}: a bias plus one contribution per
   * feature id (ids absent from the review included, when the engine's score depends on absences).
   */
  explainProba?(featureIds: Uint32Array): { bias: number; words: Uint32Array; contributions: Float64Array };
}

/** A trained scorer that turns tokens into features itself (e.g. by hashing n-grams). */
export interface TokenScoringEngine {
  /** Probability that a review with these tokens is positive. */
  predictTokensProba(tokens: readonly string[]): number;
  /** The score before the sigmoid, for a calibrator that maps it to a probability. */
  logitTokens?(tokens: readonly string[]): number;
  /** The exact decomposition of the logit over the features made from the tokens. */
  explainTokens?(tokens: readonly string[]): ScoreDecomposition;
  /**
   * {@linkcode TokenScoringEngine.predictTokensProba} of the tokens given as their hashes
   * (`Tokenizer.tokenizeReviewHashes`), for an engine that only ever hashes its tokens: the same number,
   * without building the token strings.
   */
  predictTokenHashesProba?(hashes: Uint32Array, count: number): number;
  /** {@linkcode TokenScoringEngine.logitTokens} of the tokens given as their hashes. */
  logitTokenHashes?(hashes: Uint32Array, count: number): number;
}

/** How an engine is stored: its name, its own format version, and how to read it back. */
export interface EngineCodec {
  /** Engine name recorded in model.json, e.g. "sparse-forest". */
  name: string;
  /** Decodes the engine file; throws PipelineError for a format version it does not support. */
  decode(bytes: Uint8Array): ScoringEngine | TokenScoringEngine;
  /**
   * Splits a decoded engine into structured-clonable state and the buffers to transfer, so that a worker
   * can decode it and hand it to another thread without a copy. Absent when the engine cannot move.
   */
  pack?(engine: ScoringEngine | TokenScoringEngine): { state: unknown; transfer: ArrayBuffer[] };
  /** Rebuilds an engine from what {@linkcode EngineCodec.pack} gave. */
  unpack?(state: unknown): ScoringEngine | TokenScoringEngine;
}

/** Options of {@linkcode loadModel}. */
export interface LoadModelOptions {
  /**
   * The engine, already decoded from these files by `loadModel` on another thread (which also verified
   * every checksum): checksums and decoding are not repeated.
   */
  decoded?: ScoringEngine | TokenScoringEngine;
}

/** Whether an engine featurises tokens itself. */
export function isTokenScoringEngine(
  engine: ScoringEngine | TokenScoringEngine,
): engine is TokenScoringEngine {
  return typeof (engine as Partial<TokenScoringEngine>).predictTokensProba === "function";
}

/** The manifest stored as `model.json`. */
export interface ModelManifest {
  format: typeof MODEL_FORMAT;
  format_version: number;
  engine: string;
  created: string;
  app_version: string;
  deno_version: string;
  tokenizer: Record<string, unknown> & { version: string };
  label_map: Record<string, SentimentLabel>;
  positive_polarity: Polarity;
  files: Record<string, { sha256: string; bytes: number }>;
  training?: Record<string, unknown>;
  /**
   * The calibrator fitted by train when the model's probabilities were off by more than it allows;
   * absent in a model that needed none, or that predates calibration.
   */
  calibration?: Calibration;
}

/** One prediction. */
export interface Prediction {
  label: SentimentLabel;
  polarity: Polarity;
  /** Probability of the predicted label. */
  probability: number;
  /** Probability that the review is positive. */
  positiveProbability: number;
}

/** A loaded, ready-to-score model. */
export interface SentimentModel {
  manifest: ModelManifest;
  /** The vocabulary, for engines that score vocabulary ids; undefined for a {@linkcode TokenScoringEngine}. */
  vectorizer: Vectorizer | undefined;
  engine: ScoringEngine | TokenScoringEngine;
  /** The tokenizer the model was trained with, rebuilt from its manifest. */
  tokenizer: Tokenizer;
  /** Tokenises, vectorises and scores one review. */
  predict(review: Pick<Review, "title" | "text">): Prediction;
  /** Scores already-tokenised text (evaluate reads tokens from data/processed). */
  predictTokens(tokens: string[]): Prediction;
  /**
   * The probability this model serves for a probability its engine computed (e.g. in parallel workers
   * that score the engine directly): the calibrator applied, or the identity without one.
   */
  calibrate(engineProbability: number): number;
  /** Whether {@linkcode SentimentModel.explain} works for this model. */
  readonly explainable: boolean;
  /**
   * Explains the prediction of one review exactly: the same tokens, the same features and the same score
   * as {@linkcode SentimentModel.predict}, decomposed over features and over the words as typed.
   *
   * @throws {PipelineError} for a model that cannot explain (a forest saved before explanations).
   */
  explain(review: Pick<Review, "title" | "text">): Explanation;
  /** The prediction for a probability of `positive` (e.g. one computed by a copy of this model elsewhere). */
  predictionFor(positiveProbability: number): Prediction;
}

/** Lower-case hex SHA-256 of bytes. */
export function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** What train passes to {@linkcode buildModelFiles}. */
export interface BuildModelOptions {
  engineName: string;
  engineBytes: Uint8Array;
  /** The vocabulary; omitted for an engine that featurises tokens itself. */
  vectorizer?: Vectorizer;
  appVersion: string;
  /**
   * The tokenizer that made the training tokens, as recorded with them; the model is served with it.
   * @default {this build's tokenizerInfo()}
   */
  tokenizer?: TokenizerInfo;
  runId?: string;
  training?: Record<string, unknown>;
  /** A calibrator to apply to the engine's score. */
  calibration?: Calibration;
}

/**
 * Builds the artifact's files, ready to upload. The returned map's keys are paths relative to `model/`.
 */
export function buildModelFiles(options: BuildModelOptions): Map<string, Uint8Array> {
  const files = new Map<string, Uint8Array>();
  if (options.vectorizer) {
    files.set("vocabulary.json", encoder.encode(JSON.stringify(options.vectorizer.toJSON())));
  }
  files.set("engine.bin", options.engineBytes);
  const manifest: ModelManifest = {
    format: MODEL_FORMAT,
    format_version: MODEL_FORMAT_VERSION,
    engine: options.engineName,
    created: new Date().toISOString(),
    app_version: options.appVersion,
    deno_version: Deno.version.deno,
    tokenizer: (options.tokenizer ?? tokenizerInfo()) as ModelManifest["tokenizer"],
    label_map: { "1": LABEL_MAP[1], "2": LABEL_MAP[2] },
    positive_polarity: 2,
    files: Object.fromEntries(
      [...files].map(([name, bytes]) => [name, { sha256: sha256Hex(bytes), bytes: bytes.length }]),
    ),
    ...(options.training ? { training: options.training } : {}),
    ...(options.calibration ? { calibration: options.calibration } : {}),
  };
  files.set("model.json", encoder.encode(JSON.stringify(manifest, null, 2) + "\n"));
  files.set("MLmodel", encoder.encode(mlmodelYaml(manifest, options.runId, files.has("vocabulary.json"))));
  return files;
}

function mlmodelYaml(manifest: ModelManifest, runId: string | undefined, vocabulary: boolean): string {
  const inputs = JSON.stringify([
    { type: "string", name: "title", required: true },
    { type: "string", name: "message", required: true },
  ]);
  const outputs = JSON.stringify([
    { type: "string", name: "label", required: true },
    { type: "long", name: "polarity", required: true },
    { type: "double", name: "probability", required: true },
  ]);
  const created = manifest.created.replace("T", " ").replace("Z", "000");
  const uuid = crypto.randomUUID().replaceAll("-", "");
  return [
    "artifact_path: model",
    "flavors:",
    `  ${MLFLOW_FLAVOR}:`,
    `    engine: ${manifest.engine}`,
    `    format_version: ${manifest.format_version}`,
    "    manifest: model.json",
    "    data: engine.bin",
    ...(vocabulary ? ["    vocabulary: vocabulary.json"] : []),
    `    tokenizer_version: '${manifest.tokenizer.version}'`,
    `    app_version: '${manifest.app_version}'`,
    `model_uuid: ${uuid}`,
    ...(runId ? [`run_id: ${runId}`] : []),
    "signature:",
    `  inputs: '${inputs}'`,
    `  outputs: '${outputs}'`,
    `utc_time_created: '${created}'`,
    "",
  ].join("\n");
}

function parseManifest(bytes: Uint8Array | undefined): ModelManifest {
  if (!bytes) {
    throw new PipelineError("model artifact has no model.json; it was not made by this project's train");
  }
  let manifest: ModelManifest;
  try {
    manifest = JSON.parse(decoder.decode(bytes));
  } catch {
    throw new PipelineError("model artifact's model.json is not valid JSON (truncated or tampered)");
  }
  if (manifest.format !== MODEL_FORMAT) {
    throw new PipelineError(`model artifact has format "${manifest.format}", expected "${MODEL_FORMAT}"`);
  }
  if (manifest.format_version !== MODEL_FORMAT_VERSION) {
    throw new PipelineError(
      `model format version ${manifest.format_version} is not supported by this build (supports ${MODEL_FORMAT_VERSION}); retrain the model or upgrade`,
    );
  }
  return manifest;
}

/**
 * Loads a model from its files (as downloaded from MLflow), verifying checksums and versions.
 *
 * @param files Paths relative to `model/` → bytes.
 * @param codecs The engines this build can read, by name.
 * @param options An engine decoded elsewhere.
 */
export function loadModel(
  files: Map<string, Uint8Array>,
  codecs: readonly EngineCodec[],
  options: LoadModelOptions = {},
): SentimentModel {
  const manifest = parseManifest(files.get("model.json"));
  for (const [name, expected] of Object.entries(options.decoded ? {} : manifest.files)) {
    const bytes = files.get(name);
    if (!bytes) throw new PipelineError(`model artifact is missing ${name}`);
    if (bytes.length !== expected.bytes || sha256Hex(bytes) !== expected.sha256) {
      throw new PipelineError(
        `model artifact file ${name} fails its checksum (truncated or tampered); retrain`,
      );
    }
  }
  if (manifest.tokenizer.version !== TOKENIZER_VERSION) {
    throw new PipelineError(
      `model was trained with tokenizer ${manifest.tokenizer.version} but this build has ${TOKENIZER_VERSION}; retrain the model with this build`,
    );
  }
  // The model's own recorded tokenizer, not the build's default: a default that changed after the model
  // was trained must not change the features it is served.
  let tokenizer: Tokenizer;
  try {
    tokenizer = createTokenizerFromInfo(manifest.tokenizer);
  } catch (error) {
    if (!(error instanceof RangeError)) throw error;
    throw new PipelineError(`model's tokenizer cannot be rebuilt by this build (${error.message}); retrain`, {
      cause: error,
    });
  }
  const codec = codecs.find((candidate) => candidate.name === manifest.engine);
  if (!codec) {
    throw new PipelineError(
      `model engine "${manifest.engine}" is not known to this build (knows ${
        codecs.map((c) => c.name).join(", ")
      })`,
    );
  }
  const engineBytes = files.get("engine.bin");
  if (!engineBytes || !manifest.files["engine.bin"]) {
    throw new PipelineError("model artifact is missing engine.bin");
  }
  const engine = options.decoded ?? codec.decode(engineBytes);
  const calibration = checkCalibration(manifest.calibration);
  let vectorizer: Vectorizer | undefined;
  let score: (tokens: string[]) => number;
  // Scores a review from its token hashes, when the engine can: what `predict` uses then.
  let scoreReview: ((review: Pick<Review, "title" | "text">) => number) | undefined;
  let decompose: ((tokens: string[]) => ScoreDecomposition) | undefined;
  let method: ExplanationMethod;
  if (isTokenScoringEngine(engine)) {
    method = "linear-decomposition";
    if (calibration?.input === "logit") {
      if (!engine.logitTokens) {
        throw new PipelineError(`model engine "${manifest.engine}" has no logit for its calibrator; retrain`);
      }
      const logit = engine.logitTokens.bind(engine);
      score = (tokens) => calibratedProbability(calibration, logit(tokens));
      if (engine.logitTokenHashes) {
        const logitHashes = engine.logitTokenHashes.bind(engine);
        const hashes = new TokenHashes();
        scoreReview = (review) => {
          tokenizer.tokenizeReviewHashes(review, hashes);
          return calibratedProbability(calibration, logitHashes(hashes.values, hashes.length));
        };
      }
    } else {
      score = (tokens) => engine.predictTokensProba(tokens);
      if (engine.predictTokenHashesProba) {
        const predictHashes = engine.predictTokenHashesProba.bind(engine);
        const hashes = new TokenHashes();
        scoreReview = (review) => {
          tokenizer.tokenizeReviewHashes(review, hashes);
          return predictHashes(hashes.values, hashes.length);
        };
      }
    }
    if (engine.explainTokens) decompose = engine.explainTokens.bind(engine);
  } else {
    method = "path-contribution";
    const vocabulary = manifest.files["vocabulary.json"] ? files.get("vocabulary.json") : undefined;
    if (!vocabulary) {
      throw new PipelineError(
        `model artifact is missing vocabulary.json, which engine "${manifest.engine}" needs`,
      );
    }
    const loaded = Vectorizer.fromJSON(JSON.parse(decoder.decode(vocabulary)));
    vectorizer = loaded;
    score = calibration
      ? (tokens) => calibratedProbability(calibration, engine.predictProba(loaded.transform(tokens)))
      : (tokens) => engine.predictProba(loaded.transform(tokens));
    if (engine.explainProba && engine.explainable !== false) {
      const explainProba = engine.explainProba.bind(engine);
      decompose = (tokens) => decomposeOverVocabulary(loaded, explainProba, tokens);
    }
  }
  if (calibration && calibration.input !== (method === "linear-decomposition" ? "logit" : "probability")) {
    throw new PipelineError(
      `model's calibrator maps a ${calibration.input}, which engine "${manifest.engine}" does not give; retrain`,
    );
  }
  const positive = manifest.positive_polarity;
  const negative: Polarity = positive === 2 ? 1 : 2;

  function explain(review: Pick<Review, "title" | "text">): Explanation {
    if (!decompose) {
      throw new PipelineError(
        `this ${manifest.engine} model was saved without what explanations need; retrain it to explain`,
      );
    }
    const { tokens, sources } = tokenizer.tokenizeReviewWithSources(review);
    const explanation = buildExplanation(decompose(tokens), tokens, sources, method, calibration);
    // The served probability itself, not one recomputed from the decomposition's sum, which can differ
    // from it in the last bit (or dip below 0 for a forest whose trees all said 0).
    explanation.probability = score(tokens);
    return explanation;
  }

  function predictionFor(positiveProbability: number): Prediction {
    const polarity = positiveProbability >= 0.5 ? positive : negative;
    return {
      polarity,
      label: manifest.label_map[String(polarity)]!,
      probability: polarity === positive ? positiveProbability : 1 - positiveProbability,
      positiveProbability,
    };
  }
  const predictTokens = (tokens: string[]): Prediction => predictionFor(score(tokens));
  return {
    manifest,
    vectorizer,
    engine,
    predictTokens,
    predictionFor,
    tokenizer,
    predict: scoreReview
      ? (review) => predictionFor(scoreReview(review))
      : (review) => predictTokens(tokenizer.tokenizeReview(review)),
    explainable: decompose !== undefined,
    explain,
    calibrate(engineProbability) {
      if (!calibration) return engineProbability;
      if (calibration.input === "probability") return calibratedProbability(calibration, engineProbability);
      const p = Math.min(1 - 1e-15, Math.max(1e-15, engineProbability));
      return calibratedProbability(calibration, Math.log(p / (1 - p)));
    },
  };
}

/** Validates a manifest's calibrator, so that a damaged one fails at load, not as NaN probabilities. */
function checkCalibration(calibration: Calibration | undefined): Calibration | undefined {
  if (calibration === undefined) return undefined;
  const problem = calibrationProblem(calibration);
  if (problem !== undefined) {
    throw new PipelineError(`model's calibrator is invalid (${problem}); retrain`);
  }
  return calibration;
}

/** A forest's decomposition over vocabulary ids, named by the vocabulary and placed on the tokens. */
function decomposeOverVocabulary(
  vectorizer: Vectorizer,
  explainProba: NonNullable<ScoringEngine["explainProba"]>,
  tokens: readonly string[],
): ScoreDecomposition {
  const origins: number[] = [];
  const ids = vectorizer.transform(tokens, origins);
  const occurrences = new Map<number, number[]>();
  for (let k = 0; k < origins.length; k += 3) {
    const id = origins[k]!;
    const list = occurrences.get(id) ?? [];
    for (let i = origins[k + 1]!; i <= origins[k + 2]!; i++) if (tokens[i]!.length > 0) list.push(i);
    occurrences.set(id, list);
  }
  const { bias, words, contributions } = explainProba(ids);
  const features: FeatureContribution[] = [];
  // The largest absent words by size, kept sorted (few: most of a deep forest's words barely count).
  const top: number[] = [];
  let absentTotal = 0;
  for (let k = 0; k < words.length; k++) {
    const id = words[k]!;
    const contribution = contributions[k]!;
    const tokensOfId = occurrences.get(id);
    if (tokensOfId) {
      features.push({ feature: vectorizer.termOf(id) ?? `#${id}`, contribution, tokens: tokensOfId });
      continue;
    }
    absentTotal += contribution;
    const size = Math.abs(contribution);
    if (top.length === MAX_ABSENT_LISTED && size <= Math.abs(contributions[top.at(-1)!]!)) continue;
    let at = top.length;
    while (at > 0 && Math.abs(contributions[top[at - 1]!]!) < size) at--;
    top.splice(at, 0, k);
    if (top.length > MAX_ABSENT_LISTED) top.pop();
  }
  let listed = 0;
  for (const k of top) {
    features.push({
      feature: vectorizer.termOf(words[k]!) ?? `#${words[k]}`,
      contribution: contributions[k]!,
      tokens: [],
    });
    listed += contributions[k]!;
  }
  // The absent words not listed only count in the total.
  return { scale: "probability", bias, features, unlisted: absentTotal - listed };
}

/** How many absent words a forest's explanation lists by name. */
const MAX_ABSENT_LISTED = 20;
