/**
 * Test support: a fake MLflow tracking server, with the response shapes of MLflow 3's REST API. It answers
 * the registry and artifact-proxy calls that load a model, the calls a training run makes (create a run,
 * log params, metrics, tags and inputs, upload artifacts, end the run, register a version) and those an
 * evaluation adds (read a run and its artifacts, tag a version, move an alias), keeping what they wrote in
 * `state.runs` and `state` so a test can read it back. It is a plain `(Request) => Response`
 * function, so a unit test passes it as `fetch` to `MlflowClient` and a stage test serves it on a loopback
 * port with `Deno.serve`. Tests change `state` to move an alias or add a version between calls.
 *
 * @module
 */
import { MlflowClient } from "./mlflow_client.ts";

/** One registered version: its run and the files of its `model/` folder. */
export interface FakeVersion {
  runId: string;
  files: Map<string, Uint8Array> | Record<string, string>;
  status?: string;
  /** Version tags, e.g. the model.json checksum train records. */
  tags?: Record<string, string>;
  /** The version's description (the model card, once train or evaluate published it). */
  description?: string;
}

/** A run created through the fake, with everything logged to it. */
export interface FakeRun {
  runId: string;
  runName: string;
  experimentId: string;
  status: string;
  params: Record<string, string>;
  tags: Record<string, string>;
  /** Every metric point, in the order logged. */
  metrics: { key: string; value: number; step: number }[];
  /** Artifact path under the run's root → bytes. */
  artifacts: Map<string, Uint8Array>;
  /** Names of the datasets logged as inputs. */
  inputs: string[];
}

/** What the fake registry holds; mutable. */
export interface FakeMlflowState {
  /** Registered model name. */
  name: string;
  /** Version number (as text) → version. */
  versions: Record<string, FakeVersion>;
  /** Alias → version number (as text). */
  aliases: Record<string, string>;
  /** Runs created through the fake, by run id, in creation order; filled in when absent. */
  runs?: Record<string, FakeRun>;
}

/** The fake server: a fetch-compatible function and the paths it was asked for. */
export interface FakeMlflow {
  fetch: (input: string | URL | Request, init?: RequestInit) => Promise<Response>;
  calls: string[];
  /** The runs created through the fake (the same object as `state.runs`). */
  runs: Record<string, FakeRun>;
}

const encoder = new TextEncoder();

function fileBytes(version: FakeVersion, path: string): Uint8Array | undefined {
  if (version.files instanceof Map) return version.files.get(path);
  const text = version.files[path];
  return text === undefined ? undefined : encoder.encode(text);
}

function fileNames(version: FakeVersion): string[] {
  return version.files instanceof Map ? [...version.files.keys()] : Object.keys(version.files);
}

/**
 * Creates the fake.
 *
 * @param state The registry; read on every call.
 * @returns The fetch function and its call log.
 */
export function createFakeMlflow(state: FakeMlflowState): FakeMlflow {
  const calls: string[] = [];
  const runs = state.runs ??= {};
  const artifactUri = (runId: string) => `mlflow-artifacts:/1/${runId}/artifacts/model`;
  const versionJson = (version: string) => ({
    name: state.name,
    version,
    run_id: state.versions[version]!.runId,
    source: artifactUri(state.versions[version]!.runId),
    status: state.versions[version]!.status ?? "READY",
    description: state.versions[version]!.description ?? "",
    tags: Object.entries(state.versions[version]!.tags ?? {}).map(([key, value]) => ({ key, value })),
  });
  const notFound = (message: string) =>
    Response.json({ error_code: "RESOURCE_DOES_NOT_EXIST", message }, { status: 404 });
  const byRun = (runId: string) => Object.values(state.versions).find((v) => v.runId === runId);

  const runInfo = (run: FakeRun) => ({
    run_id: run.runId,
    run_name: run.runName,
    experiment_id: run.experimentId,
    status: run.status,
    start_time: 1,
    artifact_uri: `mlflow-artifacts:/1/${run.runId}/artifacts`,
    lifecycle_stage: "active",
  });
  const runJson = (run: FakeRun) => ({
    info: runInfo(run),
    data: {
      params: Object.entries(run.params).map(([key, value]) => ({ key, value })),
      tags: Object.entries(run.tags).map(([key, value]) => ({ key, value })),
    },
  });
  type Body = Record<string, unknown>;
  const keyValues = (list: unknown) =>
    Object.fromEntries(((list ?? []) as { key: string; value: string }[]).map((e) => [e.key, e.value]));
  const runOf = (body: Body) => runs[String(body.run_id)];

  /** The calls that write; `undefined` for any other. */
  function write(method: string, url: URL, body: Body): Response | undefined {
    switch (`${method} ${url.pathname}`) {
      case "POST /api/2.0/mlflow/runs/create": {
        const runId = `run${Object.keys(runs).length + 1}`.padEnd(32, "0");
        const run: FakeRun = {
          runId,
          runName: String(body.run_name ?? `fake-run-${Object.keys(runs).length + 1}`),
          experimentId: String(body.experiment_id),
          status: "RUNNING",
          params: {},
          tags: keyValues(body.tags),
          metrics: [],
          artifacts: new Map(),
          inputs: [],
        };
        runs[runId] = run;
        return Response.json({ run: runJson(run) });
      }
      case "POST /api/2.0/mlflow/runs/log-batch": {
        const run = runOf(body);
        if (!run) return notFound("no such run");
        Object.assign(run.params, keyValues(body.params));
        Object.assign(run.tags, keyValues(body.tags));
        for (const m of (body.metrics ?? []) as { key: string; value: number; step: number }[]) {
          run.metrics.push({ key: m.key, value: Number(m.value), step: m.step });
        }
        return Response.json({});
      }
      case "POST /api/2.0/mlflow/runs/set-tag": {
        const run = runOf(body);
        if (!run) return notFound("no such run");
        run.tags[String(body.key)] = String(body.value);
        return Response.json({});
      }
      case "POST /api/2.0/mlflow/runs/log-inputs": {
        const run = runOf(body);
        if (!run) return notFound("no such run");
        for (const d of body.datasets as { dataset: { name: string } }[]) run.inputs.push(d.dataset.name);
        return Response.json({});
      }
      case "POST /api/2.0/mlflow/runs/update": {
        const run = runOf(body);
        if (!run) return notFound("no such run");
        run.status = String(body.status);
        return Response.json({ run_info: runInfo(run) });
      }
      case "PATCH /api/2.0/mlflow/model-versions/update": {
        const version = state.versions[String(body.version)];
        if (!version) return notFound("no such version");
        version.description = String(body.description ?? "");
        return Response.json({ model_version: versionJson(String(body.version)) });
      }
      case "POST /api/2.0/mlflow/model-versions/set-tag": {
        const version = state.versions[String(body.version)];
        if (!version) return notFound("no such version");
        (version.tags ??= {})[String(body.key)] = String(body.value);
        return Response.json({});
      }
      case "POST /api/2.0/mlflow/registered-models/alias":
        if (!state.versions[String(body.version)]) return notFound("no such version");
        state.aliases[String(body.alias)] = String(body.version);
        return Response.json({});
      case "DELETE /api/2.0/mlflow/registered-models/alias":
        delete state.aliases[String(body.alias)];
        return Response.json({});
      case "POST /api/2.0/mlflow/registered-models/create":
        return Response.json({ registered_model: { name: body.name } });
      case "POST /api/2.0/mlflow/model-versions/create": {
        const run = runOf(body);
        if (!run) return notFound("no such run");
        const files = new Map<string, Uint8Array>();
        for (const [path, bytes] of run.artifacts) {
          if (path.startsWith("model/")) files.set(path.slice("model/".length), bytes);
        }
        const version = String(
          Object.keys(state.versions).map(Number).reduce((a, b) => Math.max(a, b), 0) + 1,
        );
        state.versions[version] = { runId: run.runId, files, tags: keyValues(body.tags) };
        return Response.json({ model_version: versionJson(version) });
      }
    }
    return undefined;
  }

  function answer(url: URL): Response {
    const q = url.searchParams;
    switch (url.pathname) {
      case "/health":
        return new Response("OK");
      case "/api/2.0/mlflow/model-versions/get": {
        const version = q.get("version")!;
        return state.versions[version]
          ? Response.json({ model_version: versionJson(version) })
          : notFound(`Model Version (name=${state.name}, version=${version}) not found`);
      }
      case "/api/2.0/mlflow/model-versions/search": {
        const latest = Object.keys(state.versions).map(Number).sort((a, b) => b - a)[0];
        return Response.json(latest === undefined ? {} : { model_versions: [versionJson(String(latest))] });
      }
      case "/api/2.0/mlflow/registered-models/alias": {
        const version = state.aliases[q.get("alias")!];
        return version ? Response.json({ model_version: versionJson(version) }) : Response.json(
          {
            error_code: "INVALID_PARAMETER_VALUE",
            message: `Registered model alias ${q.get("alias")} not found.`,
          },
          { status: 400 },
        );
      }
      case "/api/2.0/mlflow/registered-models/get":
        return Object.keys(state.versions).length === 0 && Object.keys(state.aliases).length === 0
          ? notFound(`Registered Model with name=${state.name} not found`)
          : Response.json({
            registered_model: {
              name: state.name,
              aliases: Object.entries(state.aliases).map(([alias, version]) => ({ alias, version })),
            },
          });
      case "/api/2.0/mlflow/model-versions/get-download-uri": {
        const version = state.versions[q.get("version")!];
        return version
          ? Response.json({ artifact_uri: artifactUri(version.runId) })
          : notFound("no such version");
      }
      case "/api/2.0/mlflow/runs/get": {
        const run = runs[q.get("run_id")!];
        return run ? Response.json({ run: runJson(run) }) : notFound("no such run");
      }
      case "/api/2.0/mlflow-artifacts/artifacts": {
        const [, runId = "", , ...folder] = q.get("path")!.split("/");
        const version = byRun(runId);
        // A version's download URI is its run's model/ folder: the registry's files answer for it.
        if (version && folder[0] === "model") {
          return Response.json({
            files: fileNames(version).map((path) => ({
              path,
              is_dir: false,
              file_size: fileBytes(version, path)!.length,
            })),
          });
        }
        return Response.json(runs[runId] ? { files: runListing(runs[runId]!, folder.join("/")) } : {});
      }
    }
    const download = /^\/api\/2\.0\/mlflow-artifacts\/artifacts\/1\/([^/]+)\/artifacts\/(.+)$/.exec(
      url.pathname,
    );
    if (download) {
      const path = decodeURIComponent(download[2]!);
      const version = byRun(download[1]!);
      const bytes = version && path.startsWith("model/")
        ? fileBytes(version, path.slice("model/".length))
        : runs[download[1]!]?.artifacts.get(path);
      return bytes ? new Response(bytes.slice()) : notFound("no such artifact");
    }
    return new Response("no such route", { status: 404 });
  }

  /** The entries directly under `folder` of a run's artifacts, as the artifact proxy lists them. */
  function runListing(run: FakeRun, folder: string) {
    const prefix = folder === "" ? "" : `${folder}/`;
    const entries = new Map<string, { path: string; is_dir: boolean; file_size?: number }>();
    for (const [path, bytes] of run.artifacts) {
      if (!path.startsWith(prefix)) continue;
      const [name, ...rest] = path.slice(prefix.length).split("/");
      entries.set(
        name!,
        rest.length > 0 ? { path: name!, is_dir: true } : {
          path: name!,
          is_dir: false,
          file_size: bytes.length,
        },
      );
    }
    return [...entries.values()];
  }

  const upload = /^\/api\/2\.0\/mlflow-artifacts\/artifacts\/1\/([^/]+)\/artifacts\/(.+)$/;

  return {
    calls,
    runs,
    async fetch(input: string | URL | Request, init?: RequestInit): Promise<Response> {
      const request = new Request(input, init);
      const url = new URL(request.url);
      calls.push(url.pathname);
      const method = request.method;
      if (method === "PUT") {
        const target = upload.exec(url.pathname);
        const run = target && runs[target[1]!];
        if (!run) return notFound("no such run");
        run.artifacts.set(decodeURIComponent(target[2]!), new Uint8Array(await request.arrayBuffer()));
        return Response.json({});
      }
      if (method === "POST" || method === "PATCH" || method === "DELETE") {
        const text = await request.text();
        const written = write(method, url, text === "" ? {} : JSON.parse(text));
        if (written) return written;
      }
      return answer(url);
    },
  };
}

/**
 * A client of the fake, without retries: a test wants the fake's first answer.
 *
 * @param fake The fake server.
 * @returns A client whose requests the fake answers.
 */
export function fakeMlflowClient(fake: FakeMlflow): MlflowClient {
  return new MlflowClient({
    trackingUri: "http://mlflow.test:5000",
    fetch: fake.fetch,
    retry: { retries: 0 },
  });
}
