import assert from "node:assert/strict";
import { createProjectRoot, errorLines, type ProjectRoot, runTask, type StageRun } from "./_testing.ts";
import { exists } from "../lib/core/atomic_file.ts";
import { buildZip, goodRows, readLines } from "../lib/_testing.ts";

/** Every Kaggle variable set explicitly, so a developer's own credentials never leak into a test. */
const NO_KAGGLE = { KAGGLE_API_TOKEN: "", KAGGLE_USERNAME: "", KAGGLE_KEY: "", KAGGLE_API_BASE_URL: "" };

const ROW = /^"[12]","(?:[^"]|"")*","(?:[^"]|"")*"$/;

function ingestTask(root: ProjectRoot, args: string[], env: Record<string, string> = {}): Promise<StageRun> {
  return runTask(root, "ingest", args, { env: { ...NO_KAGGLE, ...env } });
}

/** 2 bad rows out of 6: a wrong label and a broken quote. */
const TRAIN_WITH_BAD_ROWS = goodRows(2) + '"0","zero","label"\n' + goodRows(2, 2) + '"2","broken\n';

async function rawFiles(root: ProjectRoot): Promise<string[]> {
  if (!(await exists(root.resolve("data/raw")))) return [];
  return [...Deno.readDirSync(root.resolve("data/raw"))].map((entry) => entry.name).sort();
}

Deno.test("ingest --help prints the usage and exits 0", async () => {
  await using root = await createProjectRoot();
  const run = await ingestTask(root, ["--help"]);
  assert.equal(run.code, 0);
  assert.match(run.stdout, /^Usage: deno task ingest \[--source kaggle\|sample\|PATH\|URL\]/);
  assert.match(run.stdout, /--limit N/);
  assert.match(run.stdout, /KAGGLE_API_TOKEN/);
});

Deno.test("ingest exits 2 with one error line and the usage on a bad flag or value", async () => {
  await using root = await createProjectRoot();
  const bogus = await ingestTask(root, ["--bogus"]);
  assert.equal(bogus.code, 2);
  assert.deepEqual(errorLines(bogus), ["error: Unknown option '--bogus'"]);
  assert.match(bogus.stderr, /Usage: deno task ingest/);
  const rows = await ingestTask(root, ["--source", "sample", "--rows", "0"]);
  assert.equal(rows.code, 2);
  assert.deepEqual(errorLines(rows), ["error: --rows must be >= 1, got 0"]);
  const limit = await ingestTask(root, ["--source", "sample", "--limit", "5"]);
  assert.equal(limit.code, 2);
  assert.deepEqual(errorLines(limit), [
    "error: --limit applies to real sources; use --rows and --test-rows with sample",
  ]);
  assert.deepEqual(await rawFiles(root), []);
});

Deno.test("ingest exits 1 naming a missing source", async () => {
  await using root = await createProjectRoot();
  const run = await ingestTask(root, ["--source", "data/external/nope"]);
  assert.equal(run.code, 1);
  assert.deepEqual(errorLines(run), [
    'error: --source data/external/nope does not exist; pass a folder or .zip holding train.csv and test.csv, or "sample" or "kaggle"',
  ]);
  assert.ok(!run.stderr.includes("    at "), "no stack trace");
});

Deno.test("ingest refuses a path outside its read grant and says how to grant it", async () => {
  await using root = await createProjectRoot();
  // The copy's scripts/ folder exists, but the ingest permission set cannot read it.
  const outside = root.resolve("scripts");
  const run = await ingestTask(root, ["--source", outside]);
  assert.equal(run.code, 1);
  const [line] = errorLines(run);
  assert.equal(
    line,
    `error: --source ${outside} is outside the folders ingest may read (data/raw, data/downloads, data/external); ` +
      `copy it under data/external/, or add the grant: deno run -q -P=ingest ` +
      `--allow-read=data/raw,data/downloads,data/external,${outside} scripts/ingest.ts --source ${outside}`,
  );
});

Deno.test("ingest --source sample writes the requested rows in the Kaggle format, deterministically", async () => {
  await using root = await createProjectRoot();
  await using other = await createProjectRoot();
  const args = ["--source", "sample", "--rows", "400", "--test-rows", "100", "--seed", "3", "--json"];
  const run = await ingestTask(root, args);
  assert.equal(run.code, 0, run.stderr);
  const result = JSON.parse(run.stdout);
  assert.equal(result.source, "sample");
  assert.deepEqual(
    [result.files.train.read, result.files.train.accepted, result.files.train.rejected, result.rejects],
    [400, 400, 0, 0],
  );
  assert.equal(result.files.test.accepted, 100);
  assert.match(run.stderr, /train\.csv: read 400 = accepted 400 \+ rejected 0/);
  const train = await readLines(root.resolve("data/raw/train.csv"));
  const test = await readLines(root.resolve("data/raw/test.csv"));
  assert.equal(train.length, 400);
  assert.equal(test.length, 100);
  for (const line of [...train, ...test]) assert.match(line, ROW);
  const trainSet = new Set(train);
  assert.equal(test.filter((line) => trainSet.has(line)).length, 0, "test rows never repeat train rows");
  assert.deepEqual(await rawFiles(root), ["ingest_manifest.json", "rejects.csv", "test.csv", "train.csv"]);
  const manifest = JSON.parse(await Deno.readTextFile(root.resolve("data/raw/ingest_manifest.json")));
  assert.deepEqual(manifest.source, { kind: "sample", rows: 400, testRows: 100, seed: 3 });
  assert.equal(manifest.files.train.sha256, result.files.train.sha256);

  // Same seed in another root: the same bytes. Another seed: other bytes.
  const same = JSON.parse((await ingestTask(other, args)).stdout);
  assert.equal(same.files.train.sha256, result.files.train.sha256);
  assert.equal(same.files.test.sha256, result.files.test.sha256);
  const reseeded = await ingestTask(other, ["--source", "sample", "--rows", "400", "--seed", "4", "--json"]);
  assert.notEqual(JSON.parse(reseeded.stdout).files.train.sha256, result.files.train.sha256);

  // Unchanged parameters: nothing is redone.
  const again = await ingestTask(root, args);
  assert.equal(again.code, 0);
  assert.equal(JSON.parse(again.stdout).upToDate, true);
  assert.match(again.stderr, /data\/raw is up to date with source sample/);
});

Deno.test("ingest defaults to sample without Kaggle credentials and says why", async () => {
  await using root = await createProjectRoot();
  const run = await ingestTask(root, ["--rows", "50", "--test-rows", "10"]);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stderr, /\[ingest\] source: sample \(no Kaggle credentials; set KAGGLE_API_TOKEN/);
  assert.equal((await readLines(root.resolve("data/raw/train.csv"))).length, 50);

  // Half a Kaggle key pair: an error when Kaggle would be the default, ignored for an explicit sample.
  const half = await ingestTask(root, ["--rows", "50"], { KAGGLE_USERNAME: "alice" });
  assert.equal(half.code, 1);
  assert.deepEqual(errorLines(half), [
    "error: KAGGLE_USERNAME is set but KAGGLE_KEY is not; set both, or KAGGLE_API_TOKEN instead",
  ]);
  const explicit = await ingestTask(root, ["--source", "sample", "--rows", "60", "--test-rows", "10"], {
    KAGGLE_USERNAME: "alice",
  });
  assert.equal(explicit.code, 0, explicit.stderr);
  assert.equal((await readLines(root.resolve("data/raw/train.csv"))).length, 60);
});

Deno.test("ingest of a folder under data/external lists bad rows in rejects.csv", async () => {
  await using root = await createProjectRoot();
  const folder = root.resolve("data/external/amazon/amazon_review_polarity_csv");
  await Deno.mkdir(folder, { recursive: true });
  await Deno.writeTextFile(`${folder}/train.csv`, TRAIN_WITH_BAD_ROWS);
  await Deno.writeTextFile(`${folder}/test.csv`, goodRows(3));
  const run = await ingestTask(root, ["--source", "data/external/amazon", "--json"]);
  assert.equal(run.code, 0, run.stderr);
  const { files, rejects, source } = JSON.parse(run.stdout);
  assert.equal(source, "data/external/amazon");
  assert.deepEqual([files.train.read, files.train.accepted, files.train.rejected], [6, 4, 2]);
  assert.equal(files.train.read, files.train.accepted + files.train.rejected);
  assert.deepEqual([files.test.read, files.test.accepted, files.test.rejected], [3, 3, 0]);
  assert.equal(rejects, 2);
  assert.match(run.stderr, /train\.csv: read 6 = accepted 4 \+ rejected 2/);
  assert.deepEqual(await readLines(root.resolve("data/raw/rejects.csv")), [
    "file,line,reason,raw",
    'train.csv,3,"label not 1 or 2 (got ""0"")","""0"",""zero"",""label"""',
    'train.csv,6,"unbalanced quotes","""2"",""broken"',
  ]);
  const train = await readLines(root.resolve("data/raw/train.csv"));
  assert.equal(train.length, 4);
  for (const line of train) assert.match(line, ROW);
});

Deno.test("ingest of a .zip under data/external takes train/test one folder down and honours --limit", async () => {
  await using root = await createProjectRoot();
  await Deno.mkdir(root.resolve("data/external"), { recursive: true });
  await Deno.writeFile(
    root.resolve("data/external/reviews.zip"),
    await buildZip({
      "csv/train.csv": TRAIN_WITH_BAD_ROWS + goodRows(100, 10),
      "csv/test.csv": goodRows(30),
    }),
  );
  const run = await ingestTask(root, ["--source", "data/external/reviews.zip", "--json"]);
  assert.equal(run.code, 0, run.stderr);
  const { files } = JSON.parse(run.stdout);
  assert.deepEqual([files.train.read, files.train.accepted, files.train.rejected], [106, 104, 2]);
  assert.equal((await readLines(root.resolve("data/raw/rejects.csv"))).length, 3);

  const limited = await ingestTask(root, ["--source", "data/external/reviews.zip", "--limit", "3", "--json"]);
  assert.equal(limited.code, 0, limited.stderr);
  const counts = JSON.parse(limited.stdout).files;
  assert.deepEqual([counts.train.read, counts.train.accepted, counts.train.rejected], [4, 3, 1]);
  assert.equal(counts.test.accepted, 3);
  assert.equal((await readLines(root.resolve("data/raw/train.csv"))).length, 3);
});

Deno.test("ingest of a zip with a CRC error leaves no train.csv and says the archive is corrupt", async () => {
  await using root = await createProjectRoot();
  await Deno.mkdir(root.resolve("data/external"), { recursive: true });
  const bytes = await buildZip({ "test.csv": goodRows(5), "train.csv": goodRows(2000) }, 0);
  bytes[bytes.length - 5000]! ^= 0x04;
  await Deno.writeFile(root.resolve("data/external/bad.zip"), bytes);
  const run = await ingestTask(root, ["--source", "data/external/bad.zip"]);
  assert.equal(run.code, 1);
  assert.deepEqual(errorLines(run), [
    'error: data/external/bad.zip is corrupt: CRC-32 mismatch in entry "train.csv"; nothing in data/raw was changed, replace the archive',
  ]);
  assert.deepEqual(await rawFiles(root), [], "no train.csv, and no .partial file either");
});

interface KaggleServer extends AsyncDisposable {
  env: Record<string, string>;
  apiPort: number;
  storagePort: number;
  /** Authorization header of each API request. */
  apiAuth: (string | null)[];
  /** Each storage request: path, Authorization and Range headers. */
  storage: { path: string; auth: string | null; range: string | null }[];
}

/**
 * A local stand-in for Kaggle on two ports, like the real thing on two hosts: the API checks the Basic
 * header and answers 302 to a signed URL on the storage port; storage serves the zips with
 * `Accept-Ranges` and an ETag, honours `Range`, and (with `cutFirst`) drops the first response half-way.
 */
function startKaggle(
  zips: Record<string, Uint8Array<ArrayBuffer>>,
  options: { key?: string; cutFirst?: boolean } = {},
): KaggleServer {
  const apiAuth: (string | null)[] = [];
  const storageLog: KaggleServer["storage"] = [];
  let cut = options.cutFirst ?? false;
  const storage = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request) => {
    const url = new URL(request.url);
    const auth = request.headers.get("authorization");
    const range = request.headers.get("range");
    storageLog.push({ path: url.pathname, auth, range });
    if (auth !== null) return new Response("signed URLs take no Authorization header", { status: 400 });
    if (!url.searchParams.has("X-Goog-Signature")) return new Response("unsigned", { status: 403 });
    const body = zips[url.pathname.slice(1)];
    if (!body) return new Response("no such object", { status: 404 });
    const headers = { "accept-ranges": "bytes", etag: '"v1"', "content-type": "application/zip" };
    const from = /^bytes=(\d+)-$/.exec(range ?? "");
    if (from && request.headers.get("if-range") === '"v1"') {
      const start = Number(from[1]);
      return new Response(body.subarray(start), {
        status: 206,
        headers: { ...headers, "content-range": `bytes ${start}-${body.length - 1}/${body.length}` },
      });
    }
    if (cut) {
      cut = false;
      const half = body.subarray(0, Math.floor(body.length / 2));
      // The body ends early while Content-Length promises more: the server closes the connection
      // mid-body, which the client sees exactly like a dropped network connection.
      const stream = new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(half);
          controller.close();
        },
      });
      return new Response(stream, { headers: { ...headers, "content-length": String(body.length) } });
    }
    return new Response(body, { headers });
  });
  const storagePort = storage.addr.port;
  const expected = "Basic " + btoa(`alice:${options.key ?? "right-key"}`);
  const api = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request) => {
    const auth = request.headers.get("authorization");
    apiAuth.push(auth);
    if (auth !== expected) return Response.json({ code: 401, message: "Unauthorized" }, { status: 401 });
    const match = /^\/api\/v1\/datasets\/download\/kritanjalijain\/amazon-reviews\/([^/]+)$/.exec(
      new URL(request.url).pathname,
    );
    if (!match) return Response.json({ code: 404, message: "Not found" }, { status: 404 });
    const location = `http://127.0.0.1:${storagePort}/${
      match[1]
    }.zip?X-Goog-Expires=259200&X-Goog-Signature=abc`;
    return new Response(null, { status: 302, headers: { location } });
  });
  const apiPort = api.addr.port;
  return {
    apiPort,
    storagePort,
    apiAuth,
    storage: storageLog,
    env: {
      INGEST_ALLOW_NET: `--allow-net=127.0.0.1:${apiPort},127.0.0.1:${storagePort}`,
      KAGGLE_API_BASE_URL: `http://127.0.0.1:${apiPort}`,
      KAGGLE_USERNAME: "alice",
      KAGGLE_KEY: "right-key",
    },
    async [Symbol.asyncDispose]() {
      await Promise.all([api.shutdown(), storage.shutdown()]);
    },
  };
}

async function kaggleZips(): Promise<Record<string, Uint8Array<ArrayBuffer>>> {
  return {
    // Large enough that half of it is many TCP chunks, so the cut really happens mid-body.
    "train.csv.zip": await buildZip({ "train.csv": TRAIN_WITH_BAD_ROWS + goodRows(20_000, 10) }, 0),
    "test.csv.zip": await buildZip({ "test.csv": goodRows(40) }),
  };
}

Deno.test("ingest --source kaggle downloads through the API's redirect, auth on the API only", async () => {
  await using root = await createProjectRoot();
  await using kaggle = startKaggle(await kaggleZips());
  const run = await ingestTask(root, ["--source", "kaggle", "--json"], kaggle.env);
  assert.equal(run.code, 0, run.stderr);
  const { source, files, rejects } = JSON.parse(run.stdout);
  assert.equal(source, "kaggle");
  assert.deepEqual([files.train.read, files.train.accepted, files.train.rejected], [20_006, 20_004, 2]);
  assert.equal(files.test.accepted, 40);
  assert.equal(rejects, 2);
  assert.deepEqual(kaggle.apiAuth, Array(2).fill("Basic " + btoa("alice:right-key")));
  assert.deepEqual(kaggle.storage.map((request) => [request.path, request.auth]), [
    ["/train.csv.zip", null],
    ["/test.csv.zip", null],
  ]);
  assert.match(run.stderr, /downloaded train\.csv\.zip: [\d.]+ [kM]B in [\d.]+ s \([\d.]+ MB\/s\)/);
  assert.ok(!run.stderr.includes("right-key"), "the key is never printed");
  assert.ok(!run.stderr.includes("X-Goog-Signature"), "the signed URL is never printed");
  assert.deepEqual([...Deno.readDirSync(root.resolve("data/downloads"))], [], "downloads removed");
  assert.deepEqual(await rawFiles(root), ["ingest_manifest.json", "rejects.csv", "test.csv", "train.csv"]);
});

Deno.test("ingest --source kaggle with a wrong key exits 1 with a credentials error", async () => {
  await using root = await createProjectRoot();
  await using kaggle = startKaggle(await kaggleZips());
  const run = await ingestTask(root, ["--source", "kaggle"], { ...kaggle.env, KAGGLE_KEY: "wrong-key" });
  assert.equal(run.code, 1);
  assert.deepEqual(errorLines(run), [
    "error: Kaggle refused the credentials in KAGGLE_USERNAME and KAGGLE_KEY for kritanjalijain/amazon-reviews/" +
    `train.csv (HTTP 401 from 127.0.0.1:${kaggle.apiPort}); create a new API token at kaggle.com > Settings > ` +
    "API, and accept the dataset's rules on its page",
  ]);
  assert.ok(!run.stderr.includes("wrong-key"));
  assert.equal(kaggle.storage.length, 0);
  assert.deepEqual(await rawFiles(root), []);
});

Deno.test("ingest --source kaggle resumes a download cut half-way on the next run", async () => {
  await using root = await createProjectRoot();
  await using kaggle = startKaggle(await kaggleZips(), { cutFirst: true });
  const first = await ingestTask(root, ["--source", "kaggle"], kaggle.env);
  assert.equal(first.code, 1);
  const [line] = errorLines(first);
  assert.match(
    line!,
    new RegExp(
      `^error: download of train\\.csv\\.zip from 127\\.0\\.0\\.1:${kaggle.storagePort} broke off at [\\d.]+ kB ` +
        `of [\\d.]+ kB \\(.+\\); run again to resume$`,
    ),
  );
  assert.deepEqual(await rawFiles(root), [], "no train.csv after a failed download");
  const partial = (await Deno.stat(root.resolve("data/downloads/train.csv.zip.partial"))).size;
  assert.ok(partial > 0);

  const second = await ingestTask(root, ["--source", "kaggle", "--json"], kaggle.env);
  assert.equal(second.code, 0, second.stderr);
  assert.equal(JSON.parse(second.stdout).files.train.accepted, 20_004);
  const resumed = kaggle.storage.filter((request) => request.range !== null);
  assert.deepEqual(resumed.map((request) => request.range), [`bytes=${partial}-`]);
  assert.match(second.stderr, /resuming train\.csv\.zip at/);
  assert.ok(kaggle.storage.every((request) => request.auth === null));
});

Deno.test("ingest --source kaggle without a net grant for the hosts says what to set", async () => {
  await using root = await createProjectRoot();
  await using kaggle = startKaggle(await kaggleZips());
  const { INGEST_ALLOW_NET: _, ...noGrant } = kaggle.env;
  const api = `127.0.0.1:${kaggle.apiPort}`;
  const storage = `127.0.0.1:${kaggle.storagePort}`;
  const run = await ingestTask(root, ["--source", "kaggle"], noGrant);
  assert.equal(run.code, 1);
  assert.deepEqual(errorLines(run), [
    `error: net access to ${api} is not granted; set INGEST_ALLOW_NET=--allow-net=${api},storage.googleapis.com ` +
    `for deno task/make (or pass --allow-net=${api},storage.googleapis.com to deno run)`,
  ]);
  const apiOnly = await ingestTask(root, ["--source", "kaggle"], {
    ...noGrant,
    INGEST_ALLOW_NET: `--allow-net=${api}`,
  });
  assert.equal(apiOnly.code, 1);
  assert.match(
    errorLines(apiOnly)[0]!,
    new RegExp(
      `redirects to ${storage}, which is not granted; set INGEST_ALLOW_NET=--allow-net=${api},${storage},`,
    ),
  );
  assert.equal(kaggle.storage.length, 0);
});

Deno.test("ingest interrupted by SIGINT exits 130 and leaves no partial output", async () => {
  await using root = await createProjectRoot();
  const run = await runTask(root, "ingest", ["--source", "sample", "--rows", "5000000"], {
    env: NO_KAGGLE,
    kill: { signal: "SIGINT", afterMs: 1500 },
  });
  assert.equal(run.code, 130, run.stderr);
  assert.match(run.stderr, /error: interrupted by SIGINT; no output was left half-written/);
  assert.deepEqual(await rawFiles(root), []);
});
