/**
 * Reading a V8 CPU profile (`deno run --cpu-prof`) of the API server: which share of its busy time went to
 * the model, the request body, the handler, the request log, metrics, and Deno's own HTTP and stream code.
 * Each sample goes to the innermost frame of its stack that belongs to a category, so time spent in a
 * runtime function called from, say, the body reader counts as body reading.
 *
 * @module
 */

/** The categories, from the innermost frame outwards; the first that matches a frame wins. */
export const PROFILE_CATEGORIES: readonly { name: string; test: (url: string, fn: string) => boolean }[] = [
  { name: "model: tokenizer", test: (url) => /\/text_features\.ts$|\/features\/tokenizer/.test(url) },
  {
    name: "model: features and scoring",
    test: (url) => /\/linear\/|\/forest\/|\/model_artifact\.ts$|\/models\/artifact/.test(url),
  },
  { name: "request log", test: (url) => /\/log\.ts$|\/line_buffer\.ts$/.test(url) },
  {
    name: "request body (read, UTF-8, JSON)",
    test: (url, fn) =>
      /\/validation\.ts$/.test(url) &&
      /^(readJsonBody|readBodyBytes|readChunks|requireJsonContentType)$/.test(fn),
  },
  { name: "validation", test: (url) => /\/validation\.ts$/.test(url) },
  { name: "body time limit", test: (url) => /\/deadlines\.ts$/.test(url) },
  { name: "metrics", test: (url) => /\/prometheus\.ts$/.test(url) },
  { name: "handler (routing, response)", test: (url) => /\/handler\.ts$|\/supervised_server\.ts$/.test(url) },
];

/** Frames of loading a model (start-up, reloads); samples under them are left out of the request costs. */
const LOADING = /\/mlflow_model_loader\.ts$|\/mlflow_client\.ts$|\/model_store\.ts$|\/tracking\//;

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber?: number };
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

/** Busy time of a profile by category. */
export interface ProfileSummary {
  /** Microseconds the process spent in JavaScript or in the runtime (not idle). */
  busyMicros: number;
  /** Microseconds idle (waiting for I/O). */
  idleMicros: number;
  /** Category → microseconds; "garbage collection" and "Deno runtime and HTTP server" besides the above. */
  byCategory: Map<string, number>;
  /** Microseconds spent loading models (left out of `busyMicros`). */
  loadingMicros: number;
  /**
   * Busy time by the function the sample was taken in (its self time), keyed `name (file:line)`: where
   * inside a category the time goes.
   */
  byFunction: Map<string, number>;
}

/** The key of a frame in {@linkcode ProfileSummary.byFunction}: `name (file:line)`, lines from 1. */
function functionKey(frame: ProfileNode["callFrame"]): string {
  const file = frame.url.slice(frame.url.lastIndexOf("/") + 1) || "native";
  const line = frame.url !== "" && (frame.lineNumber ?? -1) >= 0 ? `:${frame.lineNumber! + 1}` : "";
  return `${frame.functionName || "(anonymous)"} (${file}${line})`;
}

/**
 * Sums a profile's samples by category.
 *
 * @param profile The parsed `.cpuprofile` JSON.
 * @returns Busy and idle time, and busy time by category.
 */
export function summarizeProfile(profile: Profile): ProfileSummary {
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const loadingOf = new Map<number, boolean>();
  const loading = (id: number): boolean => {
    const known = loadingOf.get(id);
    if (known !== undefined) return known;
    const frame = nodes.get(id)!.callFrame;
    const up = parent.get(id);
    const result = LOADING.test(frame.url) || frame.functionName === "loadModel" ||
      (up !== undefined && loading(up));
    loadingOf.set(id, result);
    return result;
  };
  const categoryOf = new Map<number, string>();
  const classify = (id: number): string => {
    const known = categoryOf.get(id);
    if (known !== undefined) return known;
    const frame = nodes.get(id)!.callFrame;
    let category: string;
    if (frame.functionName === "(garbage collector)") {
      category = "garbage collection";
    } else {
      const match = PROFILE_CATEGORIES.find((c) => c.test(frame.url, frame.functionName));
      const up = parent.get(id);
      category = match?.name ?? (up === undefined ? "Deno runtime and HTTP server" : classify(up));
    }
    categoryOf.set(id, category);
    return category;
  };
  const byCategory = new Map<string, number>();
  const byFunction = new Map<string, number>();
  let busy = 0;
  let idle = 0;
  let loadingMicros = 0;
  profile.samples.forEach((id, i) => {
    const micros = profile.timeDeltas[i + 1] ?? 0;
    const name = nodes.get(id)!.callFrame.functionName;
    if (name === "(idle)") {
      idle += micros;
      return;
    }
    if (loading(id)) {
      loadingMicros += micros;
      return;
    }
    busy += micros;
    const category = classify(id);
    byCategory.set(category, (byCategory.get(category) ?? 0) + micros);
    const key = functionKey(nodes.get(id)!.callFrame);
    byFunction.set(key, (byFunction.get(key) ?? 0) + micros);
  });
  return { busyMicros: busy, idleMicros: idle, byCategory, loadingMicros, byFunction };
}
