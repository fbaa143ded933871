/**
 * Request metrics of the HTTP API in the Prometheus text exposition format (version 0.0.4), served at
 * `GET /metrics`: a request counter by route, method and status, a latency histogram by route, requests
 * shed under overload, failures of the listening socket (file descriptors running out), the number of
 * reviews scored, reload outcomes, which model is serving, and the process's CPU time and memory.
 *
 * Routes are the API's fixed paths (an unknown path counts as `unmatched`), so a scanner probing random
 * URLs cannot grow the number of time series without bound.
 *
 * @module
 */

import process from "node:process";

/** Upper bounds of the latency histogram's buckets, in seconds (0.5 ms to 10 s). */
export const LATENCY_BUCKETS: readonly number[] = Object.freeze([
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
]);

/** Content type of the exposition format. */
export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** What the exposition reports about the serving model. */
export interface ModelInfo {
  name: string;
  version: string;
  runId?: string;
}

interface Histogram {
  counts: number[];
  sum: number;
  count: number;
}

/** Escapes a label value as the exposition format requires (backslash, double quote, newline). */
export function escapeLabelValue(value: string): string {
  return value.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n");
}

function formatNumber(value: number): string {
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  if (Number.isNaN(value)) return "NaN";
  return String(value);
}

/** Why the listening socket failed: file descriptors ran out (EMFILE/ENFILE), or anything else. */
export type ListenerFailure = "fd_exhausted" | "other";

/**
 * Counters and histograms of one server process. Recording a request touches a few preallocated slots
 * found through two map lookups on constant strings; label text is only built in {@linkcode render}.
 *
 * @example Usage
 * ```ts
 * import { ApiMetrics } from "./prometheus.ts";
 * const metrics = new ApiMetrics();
 * metrics.observeRequest("/predict", "POST", 200, 0.0012);
 * metrics.render(); // "# HELP http_requests_total ..."
 * ```
 */
export class ApiMetrics {
  /** route → method → status → count. */
  #requests = new Map<string, Map<string, Map<number, number>>>();
  #latency = new Map<string, Histogram>();
  #predictions = 0;
  #reloads = new Map<string, number>();
  #inFlight = 0;
  #shed = 0;
  #listenerFailures = new Map<ListenerFailure, number>([["fd_exhausted", 0], ["other", 0]]);
  #listening = 0;
  #startTime: number;

  /** @param now Clock in milliseconds since the epoch, for the process start time. */
  constructor(now: () => number = Date.now) {
    this.#startTime = now() / 1000;
  }

  /** Notes that a request started (for the in-flight gauge). */
  requestStarted(): void {
    this.#inFlight++;
  }

  /** Requests being handled now. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /**
   * Records a finished request.
   *
   * @param route The matched route, e.g. "/predict", or "unmatched".
   * @param method The HTTP method.
   * @param status The response status.
   * @param seconds How long the request took.
   */
  observeRequest(route: string, method: string, status: number, seconds: number): void {
    this.#inFlight = Math.max(0, this.#inFlight - 1);
    let methods = this.#requests.get(route);
    if (methods === undefined) this.#requests.set(route, methods = new Map());
    let statuses = methods.get(method);
    if (statuses === undefined) methods.set(method, statuses = new Map());
    statuses.set(status, (statuses.get(status) ?? 0) + 1);
    let histogram = this.#latency.get(route);
    if (histogram === undefined) {
      histogram = { counts: new Array<number>(LATENCY_BUCKETS.length).fill(0), sum: 0, count: 0 };
      this.#latency.set(route, histogram);
    }
    // Buckets are stored non-cumulative and summed when rendered, so an observation touches one slot.
    let bucket = 0;
    while (bucket < LATENCY_BUCKETS.length && seconds > LATENCY_BUCKETS[bucket]!) bucket++;
    if (bucket < LATENCY_BUCKETS.length) histogram.counts[bucket]!++;
    histogram.sum += seconds;
    histogram.count++;
  }

  /** Counts a request refused with 503 because the server was at its in-flight budget. */
  countShed(): void {
    this.#shed++;
  }

  /** Records a failure of the listening socket, which the server then reopens. */
  countListenerFailure(reason: ListenerFailure): void {
    this.#listenerFailures.set(reason, this.#listenerFailures.get(reason)! + 1);
  }

  /** Whether the server is accepting connections now (0 while it waits to reopen its socket). */
  setListening(listening: boolean): void {
    this.#listening = listening ? 1 : 0;
  }

  /** Adds `count` reviews to the number scored. */
  countPredictions(count: number): void {
    this.#predictions += count;
  }

  /** Records the outcome of a reload: "loaded", "unchanged" or "failed". */
  countReload(outcome: "loaded" | "unchanged" | "failed"): void {
    this.#reloads.set(outcome, (this.#reloads.get(outcome) ?? 0) + 1);
  }

  /** Total requests recorded for a route (all methods and statuses); for tests and summaries. */
  requestCount(route?: string): number {
    let total = 0;
    for (const [name, methods] of this.#requests) {
      if (route !== undefined && name !== route) continue;
      for (const statuses of methods.values()) for (const count of statuses.values()) total += count;
    }
    return total;
  }

  /**
   * Renders every metric in the Prometheus text format.
   *
   * @param model The model serving now, if any.
   * @returns The exposition text, ending with a newline.
   */
  render(model?: ModelInfo): string {
    const lines: string[] = [];
    lines.push(
      "# HELP http_requests_total HTTP requests handled, by route, method and status.",
      "# TYPE http_requests_total counter",
    );
    const series: string[] = [];
    for (const [route, methods] of this.#requests) {
      for (const [method, statuses] of methods) {
        for (const [status, count] of statuses) {
          series.push(
            `http_requests_total{route="${escapeLabelValue(route)}",method="${
              escapeLabelValue(method)
            }",status="${status}"} ${count}`,
          );
        }
      }
    }
    lines.push(...series.sort());
    lines.push(
      "# HELP http_request_duration_seconds Time from receiving a request to having its response, by route.",
      "# TYPE http_request_duration_seconds histogram",
    );
    for (const [route, histogram] of [...this.#latency].sort(([a], [b]) => a.localeCompare(b))) {
      const label = `route="${escapeLabelValue(route)}"`;
      let cumulative = 0;
      LATENCY_BUCKETS.forEach((le, i) => {
        cumulative += histogram.counts[i]!;
        lines.push(`http_request_duration_seconds_bucket{${label},le="${le}"} ${cumulative}`);
      });
      lines.push(
        `http_request_duration_seconds_bucket{${label},le="+Inf"} ${histogram.count}`,
        `http_request_duration_seconds_sum{${label}} ${formatNumber(histogram.sum)}`,
        `http_request_duration_seconds_count{${label}} ${histogram.count}`,
      );
    }
    lines.push(
      "# HELP http_requests_in_flight Requests being handled now (a scrape counts itself).",
      "# TYPE http_requests_in_flight gauge",
      `http_requests_in_flight ${this.#inFlight}`,
      "# HELP http_requests_shed_total Requests answered 503 at once because the in-flight budget was full.",
      "# TYPE http_requests_shed_total counter",
      `http_requests_shed_total ${this.#shed}`,
      "# HELP http_listener_failures_total Failures of the listening socket (then reopened), by reason.",
      "# TYPE http_listener_failures_total counter",
      ...[...this.#listenerFailures].map(([reason, count]) =>
        `http_listener_failures_total{reason="${reason}"} ${count}`
      ),
      "# HELP http_listening Whether the server accepts connections (0 while it waits to reopen its socket).",
      "# TYPE http_listening gauge",
      `http_listening ${this.#listening}`,
      "# HELP predictions_total Reviews scored.",
      "# TYPE predictions_total counter",
      `predictions_total ${this.#predictions}`,
      "# HELP model_reloads_total Model reloads, by outcome.",
      "# TYPE model_reloads_total counter",
    );
    for (const outcome of ["loaded", "unchanged", "failed"]) {
      lines.push(`model_reloads_total{outcome="${outcome}"} ${this.#reloads.get(outcome) ?? 0}`);
    }
    lines.push(
      "# HELP model_loaded Whether a model is loaded and requests can be scored.",
      "# TYPE model_loaded gauge",
      `model_loaded ${model ? 1 : 0}`,
    );
    if (model) {
      lines.push(
        "# HELP model_info The model serving now (always 1).",
        "# TYPE model_info gauge",
        `model_info{name="${escapeLabelValue(model.name)}",version="${
          escapeLabelValue(model.version)
        }",run_id="${escapeLabelValue(model.runId ?? "")}"} 1`,
      );
    }
    const cpu = process.cpuUsage();
    lines.push(
      "# HELP process_cpu_seconds_total User and system CPU time of the process, in seconds.",
      "# TYPE process_cpu_seconds_total counter",
      `process_cpu_seconds_total ${formatNumber((cpu.user + cpu.system) / 1e6)}`,
      "# HELP process_resident_memory_bytes Resident memory of the process, in bytes.",
      "# TYPE process_resident_memory_bytes gauge",
      `process_resident_memory_bytes ${Deno.memoryUsage().rss}`,
      "# HELP process_start_time_seconds Start time of the process since the Unix epoch, in seconds.",
      "# TYPE process_start_time_seconds gauge",
      `process_start_time_seconds ${formatNumber(this.#startTime)}`,
    );
    return lines.join("\n") + "\n";
  }
}
