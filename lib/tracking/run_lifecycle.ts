/**
 * The life of an MLflow run the pipeline creates: {@linkcode withRun} creates it, keeps its heartbeat while
 * the stage works and always ends it; {@linkcode reapAbandonedRuns} ends the runs a killed process left open.
 *
 * A stage ends its MLflow run `FINISHED`, `FAILED` or `KILLED` itself (`withRun`), but a process killed
 * with SIGKILL, by the OOM killer or by a power cut cannot: its run would stay `RUNNING` forever, looking
 * like a training that is still going.
 *
 * So every run the project creates carries a heartbeat: the tag {@linkcode HEARTBEAT_TAG}, set when the run
 * is created and refreshed every {@linkcode DEFAULT_HEARTBEAT_MS} while the stage works. The next `train` or
 * `evaluate` on the experiment looks for `RUNNING` runs whose heartbeat is older than
 * {@linkcode DEFAULT_STALE_AFTER_MS} and marks them `FAILED`, ended at their last heartbeat, with the reason
 * in the tag {@linkcode ABANDONED_TAG}. Runs without the tag (other tools, older versions) are never
 * touched. Heartbeats are wall-clock times of the machine that ran the stage: the staleness margin is
 * many beats long so that clocks a few minutes apart cannot make a live run look dead.
 *
 * @module
 */
import type { MlflowClient, MlflowClientLog, Run, RunStatus } from "./mlflow_client.ts";

/** Tag holding the ISO 8601 time of a run's last heartbeat. */
export const HEARTBEAT_TAG = "pipeline.heartbeat";
/** Tag saying why a run was marked `FAILED` by another process. */
export const ABANDONED_TAG = "pipeline.abandoned";
/** How often a working stage refreshes its run's heartbeat. */
export const DEFAULT_HEARTBEAT_MS = 60_000;
/** How old a `RUNNING` run's heartbeat must be for the run to count as abandoned: 15 missed beats. */
export const DEFAULT_STALE_AFTER_MS = 15 * 60_000;

/** Where heartbeat warnings go. */
export interface HeartbeatLog {
  warn(message: string, fields?: Record<string, unknown>): void;
}

/** A running heartbeat; {@linkcode Heartbeat.stop} ends it and waits for a beat in flight. */
export interface Heartbeat {
  stop(): Promise<void>;
}

/** Options of {@linkcode withRun}. */
export interface WithRunOptions {
  experimentId: string;
  runName?: string;
  tags?: Record<string, string>;
  /** The stage's Ctrl-C signal: when it fired, the run ends `KILLED` rather than `FAILED`. */
  signal?: AbortSignal;
  /** Receives a warning when the final status could not be set after a failure. */
  log?: MlflowClientLog;
  /**
   * Limit for the final `runs/update` after a failure; long enough to outlast a restart of the server,
   * since a run whose end is never recorded stays `RUNNING`. @default {60000}
   */
  endTimeoutMs?: number;
  /**
   * How often the run's heartbeat tag is refreshed while `fn` works, so that a run left `RUNNING` by a
   * killed process can be told from a live one (the heartbeat below). @default {DEFAULT_HEARTBEAT_MS}
   */
  heartbeatMs?: number;
}

/**
 * Creates a run, calls `fn`, and always ends the run: `FINISHED` when `fn` resolves, `FAILED` when
 * it throws, `KILLED` when `options.signal` fired. The original error is rethrown; a run is never
 * left `RUNNING` unless the process itself is killed.
 *
 * @param client The client.
 * @param options Experiment, run name, tags, signal.
 * @param fn The work, given the new run.
 * @returns What `fn` returns.
 *
 * @example Usage
 * ```ts ignore
 * const result = await withRun(client, { experimentId, runName: "train", signal: ctx.signal }, async (run) => {
 *   await client.logBatch(run.info.runId, { metrics: { f1: 0.9 } });
 *   return run.info.runId;
 * });
 * ```
 */
export async function withRun<T>(
  client: MlflowClient,
  options: WithRunOptions,
  fn: (run: Run) => Promise<T>,
): Promise<T> {
  const run = await client.createRun({
    experimentId: options.experimentId,
    ...(options.runName !== undefined ? { runName: options.runName } : {}),
    tags: { ...options.tags, [HEARTBEAT_TAG]: new Date().toISOString() },
  });
  const heartbeat = startHeartbeat(client, run.info.runId, {
    intervalMs: options.heartbeatMs ?? DEFAULT_HEARTBEAT_MS,
    ...(options.log ? { log: options.log } : {}),
  });
  let result: T;
  try {
    result = await fn(run);
  } catch (error) {
    await heartbeat.stop();
    const status: RunStatus = options.signal?.aborted ? "KILLED" : "FAILED";
    try {
      // A fresh signal: the stage's own one may be the reason we are here (Ctrl-C).
      await client.updateRun(run.info.runId, status, {
        signal: AbortSignal.timeout(options.endTimeoutMs ?? 60_000),
      });
    } catch (endError) {
      options.log?.warn(`could not mark MLflow run ${run.info.runId} ${status}`, {
        reason: endError instanceof Error ? endError.message : String(endError),
      });
    }
    throw error;
  }
  await heartbeat.stop();
  await client.updateRun(run.info.runId, "FINISHED");
  return result;
}

/**
 * Refreshes a run's heartbeat tag every `intervalMs` until stopped. A failed beat is logged, not thrown:
 * the stage's work matters more than its heartbeat, and the next beat may succeed. The timer does not keep
 * the process alive.
 *
 * @param client The MLflow client.
 * @param runId The run.
 * @param options Interval and where to warn.
 * @returns The heartbeat, to stop when the run ends.
 */
export function startHeartbeat(
  client: Pick<MlflowClient, "setTag">,
  runId: string,
  options: { intervalMs?: number; log?: HeartbeatLog } = {},
): Heartbeat {
  const intervalMs = options.intervalMs ?? DEFAULT_HEARTBEAT_MS;
  let inFlight: Promise<void> | undefined;
  let failing = false;
  const beat = () => {
    if (inFlight) return;
    inFlight = client.setTag(runId, HEARTBEAT_TAG, new Date().toISOString()).then(
      () => {
        failing = false;
      },
      (error: unknown) => {
        // Once per streak of failures, so an unreachable server does not flood the log.
        if (!failing) {
          options.log?.warn(`could not refresh the heartbeat of MLflow run ${runId}`, {
            reason: error instanceof Error ? error.message : String(error),
          });
        }
        failing = true;
      },
    ).finally(() => {
      inFlight = undefined;
    });
  };
  const timer = setInterval(beat, intervalMs);
  Deno.unrefTimer(timer);
  return {
    async stop() {
      clearInterval(timer);
      await inFlight;
    },
  };
}

/** A run {@linkcode reapAbandonedRuns} marked `FAILED`. */
export interface AbandonedRun {
  runId: string;
  runName: string;
  /** The last heartbeat, ISO 8601. */
  lastHeartbeat: string;
}

/**
 * Marks `FAILED` the `RUNNING` runs of an experiment whose heartbeat is older than `staleAfterMs`, ending
 * each at its last heartbeat and recording why in {@linkcode ABANDONED_TAG}.
 *
 * @param client The MLflow client.
 * @param experimentId The experiment to look in.
 * @param options Staleness margin, the current time (for tests) and a note naming who reaped.
 * @returns The runs marked, oldest first.
 */
export async function reapAbandonedRuns(
  client: Pick<MlflowClient, "searchRuns" | "updateRun" | "setTag">,
  experimentId: string,
  options: { staleAfterMs?: number; now?: number; reapedBy?: string } = {},
): Promise<AbandonedRun[]> {
  const staleAfterMs = options.staleAfterMs ?? DEFAULT_STALE_AFTER_MS;
  const now = options.now ?? Date.now();
  const running: Run[] = [];
  let pageToken: string | undefined;
  do {
    const page = await client.searchRuns({
      experimentIds: [experimentId],
      filter: "attributes.status = 'RUNNING'",
      orderBy: ["attributes.start_time ASC"],
      maxResults: 1000,
      ...(pageToken ? { pageToken } : {}),
    });
    running.push(...page.runs);
    pageToken = page.nextPageToken;
  } while (pageToken !== undefined);

  const reaped: AbandonedRun[] = [];
  for (const run of running) {
    const lastHeartbeat = run.data.tags[HEARTBEAT_TAG];
    if (lastHeartbeat === undefined) continue;
    const beatAt = Date.parse(lastHeartbeat);
    if (!Number.isFinite(beatAt) || now - beatAt <= staleAfterMs) continue;
    const minutes = Math.round((now - beatAt) / 60_000);
    await client.setTag(
      run.info.runId,
      ABANDONED_TAG,
      `no heartbeat since ${lastHeartbeat} (${minutes} min): the process ended without closing the run ` +
        `(killed?); marked FAILED${options.reapedBy ? ` by ${options.reapedBy}` : ""}`,
    );
    await client.updateRun(run.info.runId, "FAILED", { endTime: Math.max(beatAt, run.info.startTime) });
    reaped.push({ runId: run.info.runId, runName: run.info.runName, lastHeartbeat });
  }
  return reaped;
}
