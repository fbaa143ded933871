/**
 * Runs abandoned by a killed process. A stage ends its MLflow run `FINISHED`, `FAILED` or `KILLED` itself
 * (`withRun`), but a process killed with SIGKILL, by the OOM killer or by a power cut cannot: its run would
 * stay `RUNNING` forever, looking like a training that is still going.
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
import type { MlflowClient, Run } from "./mlflow_client.ts";

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
