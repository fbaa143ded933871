/**
 * Test support: a fake MLflow tracking server that answers the registry and artifact-proxy calls the API
 * makes to load a model, with the response shapes of MLflow 3's REST API. It is a plain
 * `(Request) => Response` function, so a unit test passes it as `fetch` to `MlflowClient` and a stage test
 * serves it on a loopback port with `Deno.serve`. Tests change `state` to move an alias or add a version
 * between calls.
 *
 * @module
 */

/** One registered version: its run and the files of its `model/` folder. */
export interface FakeVersion {
  runId: string;
  files: Map<string, Uint8Array> | Record<string, string>;
  status?: string;
  /** Version tags, e.g. the model.json checksum train records. */
  tags?: Record<string, string>;
}

/** What the fake registry holds; mutable. */
export interface FakeMlflowState {
  /** Registered model name. */
  name: string;
  /** Version number (as text) → version. */
  versions: Record<string, FakeVersion>;
  /** Alias → version number (as text). */
  aliases: Record<string, string>;
}

/** The fake server: a fetch-compatible function and the paths it was asked for. */
export interface FakeMlflow {
  fetch: (input: string | URL | Request, init?: RequestInit) => Promise<Response>;
  calls: string[];
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
  const artifactUri = (runId: string) => `mlflow-artifacts:/1/${runId}/artifacts/model`;
  const versionJson = (version: string) => ({
    name: state.name,
    version,
    run_id: state.versions[version]!.runId,
    source: artifactUri(state.versions[version]!.runId),
    status: state.versions[version]!.status ?? "READY",
    tags: Object.entries(state.versions[version]!.tags ?? {}).map(([key, value]) => ({ key, value })),
  });
  const notFound = (message: string) =>
    Response.json({ error_code: "RESOURCE_DOES_NOT_EXIST", message }, { status: 404 });
  const byRun = (runId: string) => Object.values(state.versions).find((v) => v.runId === runId);

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
      case "/api/2.0/mlflow-artifacts/artifacts": {
        const version = byRun(q.get("path")!.split("/")[1]!);
        if (!version) return Response.json({});
        return Response.json({
          files: fileNames(version).map((path) => ({
            path,
            is_dir: false,
            file_size: fileBytes(version, path)!.length,
          })),
        });
      }
    }
    const download = /^\/api\/2\.0\/mlflow-artifacts\/artifacts\/1\/([^/]+)\/artifacts\/model\/(.+)$/.exec(
      url.pathname,
    );
    if (download) {
      const version = byRun(download[1]!);
      const bytes = version && fileBytes(version, decodeURIComponent(download[2]!));
      return bytes ? new Response(bytes.slice()) : notFound("no such artifact");
    }
    return new Response("no such route", { status: 404 });
  }

  return {
    calls,
    fetch(input: string | URL | Request): Promise<Response> {
      const url = new URL(input instanceof Request ? input.url : String(input));
      calls.push(url.pathname);
      return Promise.resolve(answer(url));
    },
  };
}
