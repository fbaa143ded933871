/**
 * The model card of a registered version (Mitchell et al. 2019, "Model Cards for Model Reporting"): what
 * the model is, what it was trained on, how well it does with what uncertainty, whether its probabilities
 * mean what they say, where it is weaker, which behaviour checks it passed, what it is for and where it
 * should not be trusted.
 *
 * Train writes the first part ({@linkcode TrainingCard}) when it registers a version; evaluate completes it
 * ({@linkcode EvaluationCard}). Both keep the facts as `model_card.json` and render them with
 * {@linkcode renderModelCard} as `model_card.md` (an artifact of the version's run) and, shorter, with
 * {@linkcode renderModelCardSummary} as the version's description in the MLflow registry, which MLflow
 * shows on the version's page. Rendering is a pure function of the facts.
 *
 * @module
 */
import type { BehaviourResult } from "./behaviour.ts";
import type { CalibrationDecision, CalibrationReport } from "./calibration.ts";
import type { Interval } from "./classification_metrics.ts";
import type { SliceReport } from "./slices.ts";
import type { ModelManifest } from "./artifact.ts";
import type { Evaluation } from "./evaluate.ts";
import type { ProcessedMeta } from "../data/processed_data.ts";

/** Calibration figures as the card keeps them. */
export interface CardCalibration {
  /** Reviews measured. */
  rows: number;
  /** Expected calibration error. */
  ece: number;
  /** Brier score. */
  brier: number;
  /** Mean log loss. */
  log_loss: number;
}

/** What train knows about a version. */
export interface TrainingCard {
  model: {
    name: string;
    version: string;
    run_id: string;
    /** `linear` or `forest`. */
    family: string;
    engine: string;
    created: string;
    app_version: string;
  };
  /** The training data; absent for a version trained before model cards, whose card evaluate starts. */
  data?: {
    /** Where the training reviews came from (the batch files, as split from the raw training set). */
    sources: string[];
    batches: number[];
    /** Reviews trained on. */
    rows: number;
    /** Reviews held out of training to measure calibration. */
    held_out: number;
    /** Share of positive reviews among those trained on. */
    positive_share: number;
    /** The training data's digest (MLflow's dataset digest). */
    digest: string;
    /** When the batches were preprocessed: the first and the last. */
    dates: [string, string];
    /** The tokenizer's settings, recorded with the data and the model. */
    tokenizer: Record<string, unknown>;
  };
  /** Training parameters, as logged. */
  params: Record<string, string | number | boolean>;
  /** Training figures: training log loss, out-of-bag accuracy, seconds. */
  training: Record<string, number>;
  /** Calibration on the held-out reviews: before, and after with the calibrator kept (if one was). */
  calibration?: {
    before: CardCalibration;
    after?: CardCalibration;
    /** The calibrator kept, e.g. `isotonic`; absent when none was needed or none helped. */
    method?: string;
    reason: string;
  };
}

/** What evaluate adds. */
export interface EvaluationCard {
  run_id: string;
  evaluated: string;
  test_set: { path: string; rows: number; sha256: string; source: string; created: string };
  /** Metrics by name, with a 95% interval where there is one. */
  metrics: { name: string; value: number; interval?: Interval }[];
  calibration: CardCalibration & { mce: number };
  /** Accuracy per review length. */
  slices: SliceReport[];
  /** Accuracy per source, when evaluate was given sources, and over all of them. */
  sources?: { slices: SliceReport[]; pooled: SliceReport };
  behaviour: BehaviourResult[];
}

/** A model card's facts: `model_card.json`. */
export interface ModelCard {
  format: "model-card/1";
  training: TrainingCard;
  evaluation?: EvaluationCard;
}

/**
 * Domain shift of the default linear recipe, measured by leave-one-source-out on the development reviews
 * (train on seven sources, score the eighth). These are the recipe's figures, not one version's: a
 * version's own figures on named sources come from `evaluate --sources`.
 *
 * Regenerate them whenever the linear defaults or the tokenizer change: `deno task feature_study --no-peers`
 * prints them as its "domain shift" line (the row of the defaults); copy that line here with the date.
 */
export const LINEAR_RECIPE_DOMAIN_SHIFT = Object.freeze({
  reviews: 18_752,
  sources: 8,
  randomSplitAccuracy: 0.897,
  leaveOneSourceOutAccuracy: 0.863,
  weakestSource: { name: "hu_liu_customer_reviews_cr", accuracy: 0.802 },
  measured: "2026-12-07",
});

const percent = (value: number) => `${(100 * value).toFixed(1)}%`;
const fixed = (value: number) => (Number.isFinite(value) ? value.toFixed(4) : "n/a");
const interval = (range?: Interval) =>
  range && range.every(Number.isFinite) ? `${fixed(range[0])} – ${fixed(range[1])}` : "";

function table(header: string[], rows: string[][]): string[] {
  return [
    `| ${header.join(" | ")} |`,
    `| ${header.map(() => "---").join(" | ")} |`,
    ...rows.map((row) => `| ${row.map((cell) => cell.replaceAll("|", "\\|")).join(" | ")} |`),
  ];
}

function calibrationLine(c: CardCalibration): string {
  return `calibration error ${fixed(c.ece)}, Brier score ${fixed(c.brier)}, log loss ${fixed(c.log_loss)} (${
    c.rows.toLocaleString("en-US")
  } reviews)`;
}

function sliceRows(slices: readonly SliceReport[]): string[][] {
  return slices.map((s) => [
    s.name,
    s.rows.toLocaleString("en-US"),
    fixed(s.accuracy),
    interval(s.interval),
    percent(s.positiveShare),
  ]);
}

const INTENDED_USE = [
  "Tells whether an English product review is positive or negative, with the probability that it is " +
  "positive and, on request, the words that decided it (exact contributions, not a sampled approximation).",
  "Made for reviews like Amazon's: a title and a text of a few sentences about a product bought online.",
  "Not for: other languages, text that is not a review (posts, support tickets, news), a star rating " +
  "(the training labels are 1-2 stars vs 4-5; 3-star reviews were left out, so mixed reviews are forced " +
  "into one class), or any decision about a person.",
];

/** The "known limits" paragraph: language, domain shift, weak slices. */
function limits(card: ModelCard): string[] {
  const lines = [
    "- **Language**: English only. The tokenizer's contractions, negations and sentiment lexicon " +
    "(AFINN-165) are English; other languages are tokenized but their words mean nothing to the model.",
  ];
  const family = card.training.model.family;
  const shift = LINEAR_RECIPE_DOMAIN_SHIFT;
  const recipe = family === "linear"
    ? `For the default linear recipe, leave-one-source-out on ${
      shift.reviews.toLocaleString("en-US")
    } real reviews from ${shift.sources} sources (${shift.measured}): ${
      percent(shift.leaveOneSourceOutAccuracy)
    } on a source it never saw against ${
      percent(shift.randomSplitAccuracy)
    } on a random split; weakest: ${shift.weakestSource.name} at ${percent(shift.weakestSource.accuracy)}.`
    : "Leave-one-source-out was measured for the linear recipe, not for this family.";
  const sources = card.evaluation?.sources;
  const own = sources
    ? ` This version on the named sources of its evaluation: ${percent(sources.pooled.accuracy)} pooled, ` +
      `from ${percent(Math.min(...sources.slices.map((s) => s.accuracy)))} to ${
        percent(Math.max(...sources.slices.map((s) => s.accuracy)))
      }.`
    : "";
  lines.push(
    `- **Domain shift**: accuracy drops on kinds of product and review the training data lacks. ${recipe}${own}`,
  );
  const slices = card.evaluation?.slices.filter((s) => s.rows >= 30) ?? [];
  if (slices.length > 1) {
    const weakest = slices.reduce((a, b) => (b.accuracy < a.accuracy ? b : a));
    lines.push(
      `- **Weakest length**: reviews of ${weakest.name} tokens, ${fixed(weakest.accuracy)} accuracy ` +
        `(${interval(weakest.interval)}) on ${weakest.rows.toLocaleString("en-US")} test reviews.`,
    );
  }
  lines.push(
    "- **What a bag of words misses**: sarcasm, comparisons with other products, and sentiment that depends " +
      "on word order beyond adjacent pairs and the three words after a negation.",
  );
  if (family === "forest") {
    lines.push(
      '- **Forest explanations** also credit words a review lacks (its path went the "absent" way), which ' +
        "no highlighting can show.",
    );
  }
  return lines;
}

/**
 * The model card as Markdown (`model_card.md`).
 *
 * @param card The facts.
 * @returns The document.
 *
 * @example Usage
 * ```ts ignore
 * import { renderModelCard } from "./model_card.ts";
 * await Deno.writeTextFile("model_card.md", renderModelCard(card));
 * ```
 */
export function renderModelCard(card: ModelCard): string {
  const { model, data, params, training, calibration } = card.training;
  const evaluation = card.evaluation;
  const lines: string[] = [
    `# Model card: ${model.name} version ${model.version}`,
    "",
    `A ${model.family} sentiment classifier (engine \`${model.engine}\`), trained ${model.created} by run ` +
    `\`${model.run_id}\` with amazon-reviews-mlops ${model.app_version}.` +
    (evaluation
      ? ` Evaluated ${evaluation.evaluated} by run \`${evaluation.run_id}\`.`
      : " Not evaluated yet: run `deno task evaluate`."),
    "",
    "## Intended use",
    "",
    ...INTENDED_USE.map((line) => `- ${line}`),
    "",
    "## Training data",
    "",
    ...(data === undefined
      ? ["Not recorded: the version was trained before model cards (see its run's inputs)."]
      : table(["", ""], [
        ["source", data.sources.join(", ")],
        ["batches", data.batches.join(", ")],
        ["reviews trained on", data.rows.toLocaleString("en-US")],
        ["held out for calibration", data.held_out.toLocaleString("en-US")],
        ["positive share", percent(data.positive_share)],
        ["digest", `\`${data.digest}\``],
        [
          "preprocessed",
          data.dates[0] === data.dates[1] ? data.dates[0] : `${data.dates[0]} to ${data.dates[1]}`,
        ],
        ["tokenizer", `\`${JSON.stringify(data.tokenizer)}\``],
      ])),
    "",
    "## Family and parameters",
    "",
    ...table(["parameter", "value"], Object.entries(params).map(([key, value]) => [key, String(value)])),
    "",
    ...(Object.keys(training).length > 0
      ? [
        "Training: " + Object.entries(training).map(([key, value]) => `${key} ${fixed(value)}`).join(", ") +
        ".",
        "",
      ]
      : []),
    "## Calibration",
    "",
  ];
  if (calibration) {
    lines.push(`Held-out reviews as the model scores them: ${calibrationLine(calibration.before)}.`);
    if (calibration.method && calibration.after) {
      lines.push(
        `A calibrator (${calibration.method}) is saved with the model, so served probabilities go through it; ` +
          `on held-out reviews it was not fitted on: ${calibrationLine(calibration.after)}.`,
      );
    } else lines.push(`No calibrator: ${calibration.reason}.`);
  } else lines.push("Not measured at training (trained without a calibration hold-out).");
  if (evaluation) {
    lines.push(
      "",
      `On the test set, served probabilities: ${
        calibrationLine(evaluation.calibration)
      }; largest gap of a bin ${
        fixed(evaluation.calibration.mce)
      } (reliability diagram: \`reliability_diagram.svg\` of the evaluate run).`,
    );
  }
  lines.push("", "## Evaluation", "");
  if (evaluation) {
    const t = evaluation.test_set;
    lines.push(
      `Test set \`${t.path}\` (${t.rows.toLocaleString("en-US")} reviews from \`${t.source}\`, SHA-256 \`${
        t.sha256.slice(0, 16)
      }…\`, preprocessed ${t.created}). Intervals are 95% (Wilson for proportions, Hanley & McNeil for ROC AUC).`,
      "",
      ...table(
        ["metric", "value", "95% interval"],
        evaluation.metrics.map((m) => [m.name, fixed(m.value), interval(m.interval)]),
      ),
      "",
      "### Slices",
      "",
      "By review length (tokens):",
      "",
      ...table(["tokens", "reviews", "accuracy", "95% interval", "positive"], sliceRows(evaluation.slices)),
      "",
    );
    if (evaluation.sources) {
      lines.push(
        "By source (`evaluate --sources`):",
        "",
        ...table(
          ["source", "reviews", "accuracy", "95% interval", "positive"],
          sliceRows([...evaluation.sources.slices, evaluation.sources.pooled]),
        ),
        "",
      );
    } else lines.push("By source: the test data names no sources (`evaluate --sources DIR` adds them).", "");
    const passed = evaluation.behaviour.filter((b) => b.passed).length;
    lines.push(
      "## Behaviour checks",
      "",
      `Passed ${passed} of ${evaluation.behaviour.length} (minimum functionality, invariance, direction, lexicon).`,
      "",
      ...table(
        ["check", "kind", "result", "detail"],
        evaluation.behaviour.map((b) => [b.name, b.kind, b.passed ? "passed" : "**failed**", b.detail]),
      ),
      "",
    );
  } else lines.push("Not evaluated yet.", "");
  lines.push("## Known limits", "", ...limits(card), "");
  return lines.join("\n");
}

/** The longest description MLflow's registry stores for a model version. */
export const MAX_DESCRIPTION_CHARS = 5000;

/**
 * The model card in brief, for the version's description in the MLflow registry (at most
 * {@linkcode MAX_DESCRIPTION_CHARS}): the headline facts and figures, and where the full card is.
 *
 * @param card The facts.
 * @param fullCard Where `model_card.md` is, e.g. the run's artifact path.
 */
export function renderModelCardSummary(card: ModelCard, fullCard: string): string {
  const { model, data, calibration } = card.training;
  const evaluation = card.evaluation;
  const trainedOn = data
    ? ` on ${data.rows.toLocaleString("en-US")} reviews (batches ${data.batches.join(", ")}, digest \`${
      data.digest.slice(0, 12)
    }\`)`
    : "";
  const lines = [
    `**${model.family} sentiment classifier** for English product reviews (positive / negative), trained ${
      model.created.slice(0, 10)
    }${trainedOn}.`,
    "",
  ];
  if (evaluation) {
    const shown = evaluation.metrics.filter((m) => ["accuracy", "f1", "roc_auc"].includes(m.name));
    lines.push(
      `**Test** (${evaluation.test_set.rows.toLocaleString("en-US")} reviews): ` +
        shown.map((m) => `${m.name} ${fixed(m.value)}${m.interval ? ` (95%: ${interval(m.interval)})` : ""}`)
          .join(", ") +
        ".",
      "",
      `**Calibration** on the test set: error ${fixed(evaluation.calibration.ece)}, Brier ${
        fixed(evaluation.calibration.brier)
      }${calibration?.method ? ` (through its ${calibration.method} calibrator)` : ""}.`,
      "",
      `**Behaviour checks**: passed ${
        evaluation.behaviour.filter((b) => b.passed).length
      } of ${evaluation.behaviour.length}.`,
      "",
    );
  } else if (calibration) {
    lines.push(
      `**Calibration** on held-out reviews: error ${fixed(calibration.before.ece)}${
        calibration.method
          ? `, ${fixed(calibration.after!.ece)} with its ${calibration.method} calibrator`
          : ""
      }.`,
      "",
    );
    lines.push("Not evaluated yet.", "");
  }
  lines.push(
    "**Limits**: English only; accuracy drops on product domains the training data lacks (leave-one-source-out); " +
      "mixed (3-star) reviews are forced into one class.",
    "",
    `Full model card: \`${fullCard}\`.`,
  );
  const text = lines.join("\n");
  return text.length <= MAX_DESCRIPTION_CHARS ? text : `${text.slice(0, MAX_DESCRIPTION_CHARS - 1)}…`;
}

/** A calibration report as the card keeps it. */
export function cardCalibration(report: CalibrationReport): CardCalibration {
  return { rows: report.rows, ece: report.ece, brier: report.brier, log_loss: report.logLoss };
}

/** Train's calibration decision as the card keeps it. */
export function cardCalibrationDecision(decision: CalibrationDecision): TrainingCard["calibration"] {
  return {
    before: cardCalibration(decision.before),
    ...(decision.calibration && decision.after
      ? { after: cardCalibration(decision.after), method: decision.calibration.method }
      : {}),
    reason: decision.reason,
  };
}

/** What train passes to {@linkcode buildTrainingCard}. */
export interface TrainingCardInput {
  name: string;
  version: string;
  runId: string;
  family: string;
  engine: string;
  appVersion: string;
  /** The batches trained on, with their processed files' meta. */
  batches: readonly { index: number; meta: ProcessedMeta }[];
  /** Reviews trained on. */
  rows: number;
  /** Positive reviews among them. */
  positives: number;
  /** The training data's digest. */
  digest: string;
  params: Record<string, string | number | boolean>;
  training: Record<string, number>;
  calibration?: CalibrationDecision;
}

/**
 * The card's training half, from what train knows.
 *
 * @param input The version, its data and its training.
 * @param now The training time. @default {new Date()}
 */
export function buildTrainingCard(input: TrainingCardInput, now: Date = new Date()): TrainingCard {
  const dates = input.batches.map((batch) => batch.meta.created).sort();
  const total = input.batches.reduce((sum, batch) => sum + batch.meta.rows, 0);
  return {
    model: {
      name: input.name,
      version: input.version,
      run_id: input.runId,
      family: input.family,
      engine: input.engine,
      created: now.toISOString(),
      app_version: input.appVersion,
    },
    data: {
      sources: input.batches.map((batch) => batch.meta.source),
      batches: input.batches.map((batch) => batch.index),
      rows: input.rows,
      held_out: Math.max(0, total - input.rows),
      positive_share: input.rows > 0 ? input.positives / input.rows : NaN,
      digest: input.digest,
      dates: [dates[0] ?? "", dates.at(-1) ?? ""],
      tokenizer: input.batches[0]?.meta.tokenizer ?? {},
    },
    params: input.params,
    training: input.training,
    ...(input.calibration ? { calibration: cardCalibrationDecision(input.calibration) } : {}),
  };
}

/**
 * The card's training half for a version trained before model cards: what its manifest records.
 *
 * @param manifest The version's `model.json`.
 * @param version Its name, number and run.
 */
export function trainingCardOfManifest(
  manifest: Pick<ModelManifest, "engine" | "created" | "app_version" | "training">,
  version: { name: string; version: string; runId: string },
): TrainingCard {
  const training = manifest.training ?? {};
  const params =
    (typeof training.params === "object" && training.params !== null ? training.params : {}) as Record<
      string,
      string | number | boolean
    >;
  return {
    model: {
      name: version.name,
      version: version.version,
      run_id: version.runId,
      family: typeof training.family === "string" ? training.family : manifest.engine,
      engine: manifest.engine,
      created: manifest.created,
      app_version: manifest.app_version,
    },
    params,
    training: {},
  };
}

/** What evaluate passes to {@linkcode buildEvaluationCard}. */
export interface EvaluationCardInput {
  runId: string;
  /** The test set's path. */
  path: string;
  evaluation: Evaluation;
  sources?: { slices: SliceReport[]; pooled: SliceReport };
  behaviour: BehaviourResult[];
}

/**
 * The card's evaluation half, from what evaluate measured.
 *
 * @param input The run, the evaluation, the per-source slices and the behaviour checks.
 * @param now The evaluation time. @default {new Date()}
 */
export function buildEvaluationCard(input: EvaluationCardInput, now: Date = new Date()): EvaluationCard {
  const { evaluation } = input;
  const { metrics, intervals, meta } = evaluation;
  return {
    run_id: input.runId,
    evaluated: now.toISOString(),
    test_set: {
      path: input.path,
      rows: meta.rows,
      sha256: meta.output.sha256,
      source: meta.source,
      created: meta.created,
    },
    metrics: [
      { name: "accuracy", value: metrics.accuracy, interval: intervals.accuracy },
      { name: "precision", value: metrics.precision, interval: intervals.precision },
      { name: "recall", value: metrics.recall, interval: intervals.recall },
      { name: "f1", value: metrics.f1 },
      { name: "roc_auc", value: metrics.rocAuc, interval: intervals.rocAuc },
      { name: "log_loss", value: metrics.logLoss },
    ],
    calibration: { ...cardCalibration(evaluation.calibration), mce: evaluation.calibration.mce },
    slices: evaluation.slices,
    ...(input.sources ? { sources: input.sources } : {}),
    behaviour: input.behaviour,
  };
}
