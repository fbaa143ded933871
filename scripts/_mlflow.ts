/**
 * MLflow set-up shared by the stages that talk to it (train, evaluate, predict, serve): configuration from
 * flags and the environment, the network-grant check, and a first-contact health check, so a wrong or
 * unreachable `MLFLOW_TRACKING_URI` fails in seconds, before any heavy work.
 *
 * @module
 */
import type { Logger } from "../lib/core/log.ts";
import { type Experiment, MlflowClient } from "../lib/tracking/mlflow_client.ts";
import { reapAbandonedRuns } from "../lib/tracking/run_lifecycle.ts";
import {
  checkMlflowNetGrant,
  DEFAULT_EXPERIMENT_NAME,
  DEFAULT_TRACKING_URI,
  MLFLOW_ENV_NAMES,
  type MlflowConfig,
  resolveMlflowConfig,
} from "../lib/tracking/mlflow_config.ts";
import { validateModelName } from "../lib/tracking/mlflow_registry.ts";
import { readEnv } from "./_cli.ts";

/** Registered model name used when neither `--model-name` nor `MLFLOW_MODEL_NAME` is set. */
export const DEFAULT_MODEL_NAME = "amazon-reviews-sentiment";

/** Usage lines every MLflow stage prints about its environment. */
export const MLFLOW_ENV_USAGE = `Environment:
  MLFLOW_TRACKING_URI        tracking server (default ${DEFAULT_TRACKING_URI}; \`make mlflow\` starts one)
  MLFLOW_EXPERIMENT_NAME     experiment (default ${DEFAULT_EXPERIMENT_NAME})
  MLFLOW_MODEL_NAME          registered model name (default ${DEFAULT_MODEL_NAME})
  MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD   basic auth
  MLFLOW_TRACKING_TOKEN      bearer token (when no username/password)
  MLFLOW_RUN_TAGS            train, evaluate: extra run tags as a JSON object (an orchestrator's run and task)
  MLFLOW_ALLOW_NET           deno task only: --allow-net=host:port when the URI is not the default`;

/** A connected MLflow client with its configuration. */
export interface MlflowSession {
  config: MlflowConfig;
  client: MlflowClient;
  modelName: string;
  /** Standard run tags: source, user, git commit when known, and the orchestrator's `MLFLOW_RUN_TAGS`. */
  sourceTags(script: string, stage: string): Record<string, string>;
}

/**
 * Resolves the MLflow configuration, checks the network grant and the server's health.
 *
 * @param flags `--model-name` and friends, as parsed.
 * @param log Logger for retries.
 * @param signal The stage's Ctrl-C signal.
 */
export async function connectMlflow(
  flags: { modelName?: string | undefined },
  log: Logger,
  signal: AbortSignal,
): Promise<MlflowSession> {
  const env = readEnv([...MLFLOW_ENV_NAMES, "MLFLOW_MODEL_NAME", "USER", "GIT_COMMIT"]);
  const config = resolveMlflowConfig({}, env);
  const modelName = validateModelName(
    flags.modelName ?? env.MLFLOW_MODEL_NAME ?? DEFAULT_MODEL_NAME,
    flags.modelName !== undefined ? "--model-name" : "MLFLOW_MODEL_NAME",
  );
  await checkMlflowNetGrant(config.trackingUri, config.trackingUriSource);
  const client = new MlflowClient({ ...config, log, signal });
  await client.health();
  return {
    config,
    client,
    modelName,
    sourceTags: (script, stage) => ({
      "mlflow.source.name": script,
      "mlflow.source.type": "LOCAL",
      "mlflow.user": env.USER ?? "unknown",
      "pipeline.stage": stage,
      ...(env.GIT_COMMIT ? { "mlflow.source.git.commit": env.GIT_COMMIT } : {}),
      ...config.runTags,
    }),
  };
}

/**
 * The configured experiment, created if missing, after marking `FAILED` the runs of it that a killed
 * process left `RUNNING` (`lib/tracking/run_lifecycle.ts`). Failing to mark them only warns: it must not stop the
 * stage (for example a server whose auth lets this user create runs but not end other users' runs).
 *
 * @param session The connected MLflow session.
 * @param log Where to say which runs were marked.
 * @param stage The stage doing it, recorded in the reason tag.
 * @returns The experiment.
 */
export async function openExperiment(
  session: MlflowSession,
  log: Logger,
  stage: string,
): Promise<Experiment> {
  const experiment = await session.client.getOrCreateExperiment(session.config.experimentName);
  try {
    const reaped = await reapAbandonedRuns(session.client, experiment.experimentId, { reapedBy: stage });
    for (const run of reaped) {
      log.warn(`marked MLflow run ${run.runId} (${run.runName}) FAILED: left RUNNING by a killed process`, {
        last_heartbeat: run.lastHeartbeat,
      });
    }
  } catch (error) {
    log.warn("could not look for runs left RUNNING by a killed process", {
      reason: error instanceof Error ? error.message : String(error),
    });
  }
  return experiment;
}
