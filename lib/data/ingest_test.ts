import assert from "node:assert/strict";
import { join } from "node:path";
import {
  downloadName,
  ingest,
  type IngestOptions,
  type IngestSource,
  isUpToDate,
  streamSeed,
} from "./ingest.ts";
import { PipelineError } from "../core/errors.ts";
import { createLogger } from "../core/log.ts";
import { buildZip, goodRows, readLines, scratchDir as scratchFolder } from "../_testing.ts";

interface Dir extends AsyncDisposable {
  path: string;
  raw: string;
  downloads: string;
  external: string;
}

async function scratchDir(): Promise<Dir> {
  const dir = await scratchFolder("ingest-");
  const external = join(dir.path, "external");
  await Deno.mkdir(external);
  return {
    path: dir.path,
    raw: join(dir.path, "raw"),
    downloads: join(dir.path, "downloads"),
    external,
    [Symbol.asyncDispose]: () => dir[Symbol.asyncDispose](),
  };
}

function options(dir: Dir, source: IngestSource, extra: Partial<IngestOptions> = {}): IngestOptions & {
  lines: string[];
} {
  const lines: string[] = [];
  return {
    source,
    rawDir: dir.raw,
    downloadsDir: dir.downloads,
    readableDirs: [dir.raw, dir.downloads, dir.external],
    log: createLogger({ name: "ingest", sink: (line) => lines.push(line) }),
    progressMode: "off",
    lines,
    ...extra,
  };
}

const SAMPLE: IngestSource = { kind: "sample", rows: 300, testRows: 120, seed: 7 };

Deno.test("streamSeed() derives distinct, stable, safe-integer seeds for train and test", () => {
  const train = streamSeed(42, "train");
  const test = streamSeed(42, "test");
  assert.notEqual(train, test);
  assert.equal(streamSeed(42, "train"), train);
  assert.notEqual(streamSeed(43, "train"), train);
  assert.ok(Number.isSafeInteger(train) && train >= 0);
});

Deno.test("downloadName() keeps a URL's safe file name and always ends in .zip", () => {
  assert.equal(downloadName(new URL("https://h/x/amazon%20reviews.zip?sig=1")), "amazon_reviews.zip");
  assert.equal(downloadName(new URL("https://h/get?id=3")), "get.zip");
  assert.equal(downloadName(new URL("https://h/")), "download.zip");
  assert.equal(downloadName(new URL("https://h/..%2F..%2Fetc")), "etc.zip");
});

Deno.test("ingest() writes sample rows deterministically with no test row repeating a train row", async () => {
  await using a = await scratchDir();
  await using b = await scratchDir();
  const first = await ingest(options(a, SAMPLE));
  const second = await ingest(options(b, SAMPLE));
  assert.equal(first.upToDate, false);
  assert.deepEqual(
    { train: first.manifest.files.train.accepted, test: first.manifest.files.test.accepted },
    { train: 300, test: 120 },
  );
  assert.equal(first.manifest.files.train.sha256, second.manifest.files.train.sha256);
  assert.equal(first.manifest.files.test.sha256, second.manifest.files.test.sha256);
  assert.deepEqual(first.manifest.source, { kind: "sample", rows: 300, testRows: 120, seed: 7 });
  const train = new Set(await readLines(join(a.raw, "train.csv")));
  const test = await readLines(join(a.raw, "test.csv"));
  assert.equal(train.size > 250, true, "generated train rows are mostly distinct");
  assert.equal(test.length, 120);
  assert.equal(test.filter((line) => train.has(line)).length, 0);
  assert.deepEqual(await readLines(join(a.raw, "rejects.csv")), ["file,line,reason,raw"]);
});

Deno.test("ingest() with another seed writes other rows", async () => {
  await using a = await scratchDir();
  const first = await ingest(options(a, SAMPLE));
  const other = await ingest(options(a, { ...SAMPLE, seed: 8 }));
  assert.equal(other.upToDate, false);
  assert.notEqual(first.manifest.files.train.sha256, other.manifest.files.train.sha256);
});

Deno.test("ingest() skips an up-to-date raw folder, and redoes it with force or after a file changed", async () => {
  await using dir = await scratchDir();
  await ingest(options(dir, SAMPLE));
  const again = options(dir, SAMPLE);
  const skipped = await ingest(again);
  assert.equal(skipped.upToDate, true);
  assert.match(again.lines.join("\n"), /is up to date with source sample .*pass --force to ingest again/);
  assert.equal((await ingest(options(dir, SAMPLE, { force: true }))).upToDate, false);

  await Deno.writeTextFile(join(dir.raw, "test.csv"), '"1","x","y"\n', { append: true });
  const key = JSON.parse(await Deno.readTextFile(join(dir.raw, "ingest_manifest.json"))).key;
  assert.equal(await isUpToDate(dir.raw, key), undefined);
  assert.equal((await ingest(options(dir, SAMPLE))).upToDate, false);
});

Deno.test("ingest() of a folder rewrites rows canonically and lists every bad line in rejects.csv", async () => {
  await using dir = await scratchDir();
  const folder = join(dir.external, "kaggle", "amazon_review_polarity_csv");
  await Deno.mkdir(folder, { recursive: true });
  // Unquoted fields and CRLF are valid input; the output is always quoted with LF.
  await Deno.writeTextFile(
    join(folder, "train.csv"),
    '2,Nice,Works well\r\n"3","Bad label","x"\n"1","He said ""no""","Broke.\\nSent back."\n"1","open\n\n',
  );
  await Deno.writeTextFile(join(folder, "test.csv"), goodRows(4));
  const opts = options(dir, { kind: "path", path: join(dir.external, "kaggle") });
  const { manifest } = await ingest(opts);
  const train = manifest.files.train;
  assert.deepEqual([train.read, train.accepted, train.rejected], [5, 2, 3]);
  assert.equal(train.read, train.accepted + train.rejected);
  assert.equal(manifest.rejects.rows, 3);
  assert.deepEqual(await readLines(join(dir.raw, "train.csv")), [
    '"2","Nice","Works well"',
    '"1","He said ""no""","Broke.\\nSent back."',
  ]);
  assert.deepEqual(await readLines(join(dir.raw, "rejects.csv")), [
    "file,line,reason,raw",
    'train.csv,2,"label not 1 or 2 (got ""3"")","""3"",""Bad label"",""x"""',
    'train.csv,4,"unbalanced quotes","""1"",""open"',
    'train.csv,5,"empty line",""',
  ]);
  assert.ok(opts.lines.includes("[ingest] train.csv: read 5 = accepted 2 + rejected 3"));
  assert.ok(opts.lines.includes("[ingest] test.csv: read 4 = accepted 4 + rejected 0"));
  assert.match(train.origin, /kaggle\/amazon_review_polarity_csv\/train\.csv$/);
});

Deno.test("ingest() of a zip honours --limit per file", async () => {
  await using dir = await scratchDir();
  const zip = join(dir.external, "data.zip");
  await Deno.writeFile(zip, await buildZip({ "train.csv": goodRows(5000), "test.csv": goodRows(800) }));
  const { manifest } = await ingest(options(dir, { kind: "path", path: zip }, { limit: 100 }));
  assert.equal(manifest.files.train.accepted, 100);
  assert.equal(manifest.files.test.accepted, 100);
  assert.equal(manifest.limit, 100);
  assert.equal((await readLines(join(dir.raw, "train.csv"))).length, 100);
});

Deno.test("ingest() of a zip with a CRC error leaves data/raw untouched and says so", async () => {
  await using dir = await scratchDir();
  await ingest(options(dir, SAMPLE));
  const before = await Deno.readTextFile(join(dir.raw, "ingest_manifest.json"));
  const bytes = await buildZip({ "test.csv": goodRows(10), "train.csv": goodRows(3000) }, 0);
  bytes[bytes.length - 2000]! ^= 0x20;
  const zip = join(dir.external, "bad.zip");
  await Deno.writeFile(zip, bytes);
  await assert.rejects(
    ingest(options(dir, { kind: "path", path: zip })),
    (error: unknown) =>
      error instanceof PipelineError &&
      error.message ===
        `${zip} is corrupt: CRC-32 mismatch in entry "train.csv"; nothing in ${dir.raw} was changed, replace the archive`,
  );
  assert.equal(await Deno.readTextFile(join(dir.raw, "ingest_manifest.json")), before);
  const names = [];
  for await (const entry of Deno.readDir(dir.raw)) names.push(entry.name);
  assert.deepEqual(names.sort(), ["ingest_manifest.json", "rejects.csv", "test.csv", "train.csv"]);
});

Deno.test("ingest() fails on a file without one valid row and writes nothing", async () => {
  await using dir = await scratchDir();
  const folder = join(dir.external, "tsv");
  await Deno.mkdir(folder);
  await Deno.writeTextFile(join(folder, "train.csv"), "label\ttitle\ttext\n2\tGood\tFine\n");
  await Deno.writeTextFile(join(folder, "test.csv"), goodRows(3));
  await assert.rejects(
    ingest(options(dir, { kind: "path", path: folder })),
    /none of the 2 lines of .*train\.csv is a valid review \(line 1: wrong field count \(expected 3, got 1\)\)/,
  );
  await assert.rejects(Deno.stat(dir.raw + "/train.csv"), Deno.errors.NotFound);
  await assert.rejects(Deno.stat(dir.raw + "/train.csv.partial"), Deno.errors.NotFound);
});

Deno.test("ingest() names a missing train.csv and a source that is not a folder or zip", async () => {
  await using dir = await scratchDir();
  const folder = join(dir.external, "half");
  await Deno.mkdir(folder);
  await Deno.writeTextFile(join(folder, "test.csv"), goodRows(3));
  await assert.rejects(
    ingest(options(dir, { kind: "path", path: folder })),
    new RegExp(`${folder} has no train\\.csv \\(looked at the top level and one folder down\\)`),
  );
  await assert.rejects(
    ingest(options(dir, { kind: "path", path: join(folder, "test.csv") })),
    /is neither a folder nor a zip archive/,
  );
  await assert.rejects(
    ingest(options(dir, { kind: "path", path: join(dir.external, "missing") })),
    /does not exist; pass a folder or \.zip holding train\.csv and test\.csv/,
  );
});

/** A fake Kaggle: the API checks the Basic header and redirects; storage refuses any Authorization header. */
function fakeKaggle(
  zips: Record<string, Uint8Array<ArrayBuffer>>,
): { fetch: typeof fetch; requests: string[] } {
  const requests: string[] = [];
  const fetchImpl = ((input: string | URL | Request, init?: RequestInit) => {
    const url = new URL(input instanceof Request ? input.url : input);
    const headers = new Headers(init?.headers);
    requests.push(`${url.host}${url.pathname}`);
    if (url.port === "7001") {
      if (headers.get("authorization") !== "Basic " + btoa("alice:s3cret-kaggle-key")) {
        return Promise.resolve(new Response("", { status: 401 }));
      }
      const file = url.pathname.split("/").pop()!;
      return Promise.resolve(
        new Response(null, { status: 302, headers: { location: `http://127.0.0.1:7002/${file}.zip?sig=x` } }),
      );
    }
    if (headers.has("authorization")) return Promise.resolve(new Response("", { status: 400 }));
    const body = zips[url.pathname.slice(1)];
    return Promise.resolve(body ? new Response(body) : new Response("", { status: 404 }));
  }) as typeof fetch;
  return { fetch: fetchImpl, requests };
}

const KAGGLE: IngestSource = {
  kind: "kaggle",
  apiBase: new URL("http://127.0.0.1:7001"),
  dataset: "kritanjalijain/amazon-reviews",
  credentials: { kind: "basic", username: "alice", key: "s3cret-kaggle-key" },
};

Deno.test("ingest() from Kaggle downloads both zips, extracts them and removes the downloads", async () => {
  await using dir = await scratchDir();
  const kaggle = fakeKaggle({
    "train.csv.zip": await buildZip({ "train.csv": goodRows(50) }),
    "test.csv.zip": await buildZip({ "test.csv": goodRows(20, 50) }),
  });
  const { manifest } = await ingest(options(dir, KAGGLE, { fetch: kaggle.fetch }));
  assert.deepEqual(kaggle.requests, [
    "127.0.0.1:7001/api/v1/datasets/download/kritanjalijain/amazon-reviews/train.csv",
    "127.0.0.1:7002/train.csv.zip",
    "127.0.0.1:7001/api/v1/datasets/download/kritanjalijain/amazon-reviews/test.csv",
    "127.0.0.1:7002/test.csv.zip",
  ]);
  assert.equal(manifest.files.train.accepted, 50);
  assert.equal(manifest.files.test.accepted, 20);
  assert.deepEqual(manifest.source, {
    kind: "kaggle",
    dataset: "kritanjalijain/amazon-reviews",
    apiBase: "http://127.0.0.1:7001/",
  });
  assert.ok(!JSON.stringify(manifest).includes("s3cret"), "no credential in the manifest");
  assert.deepEqual([...Deno.readDirSync(dir.downloads)], []);
});

Deno.test("ingest() from Kaggle removes a corrupt download so that the next run fetches it again", async () => {
  await using dir = await scratchDir();
  const bad = await buildZip({ "train.csv": goodRows(3000) }, 0);
  bad[bad.length - 3000]! ^= 0x01;
  const zips = { "train.csv.zip": bad, "test.csv.zip": await buildZip({ "test.csv": goodRows(5) }) };
  await assert.rejects(
    ingest(options(dir, KAGGLE, { fetch: fakeKaggle(zips).fetch })),
    (error: unknown) =>
      error instanceof PipelineError &&
      /train\.csv\.zip is corrupt: CRC-32 mismatch in entry "train\.csv"; nothing in .* was changed, and the download was removed: run again to fetch it again$/
        .test(error.message),
  );
  await assert.rejects(Deno.stat(join(dir.raw, "train.csv")), Deno.errors.NotFound);
  await assert.rejects(Deno.stat(join(dir.downloads, "train.csv.zip")), Deno.errors.NotFound);
  zips["train.csv.zip"] = await buildZip({ "train.csv": goodRows(30) });
  const { manifest } = await ingest(options(dir, KAGGLE, { fetch: fakeKaggle(zips).fetch }));
  assert.equal(manifest.files.train.accepted, 30);
});

Deno.test("ingest() from a URL downloads the zip to the downloads folder and removes it after", async () => {
  await using dir = await scratchDir();
  const zip = await buildZip({ "data/train.csv": goodRows(10), "data/test.csv": goodRows(4) });
  const seen: string[] = [];
  const fetchImpl = ((input: string | URL) => {
    seen.push(String(input));
    return Promise.resolve(new Response(zip));
  }) as typeof fetch;
  const url = new URL("http://127.0.0.1:7003/files/amazon.zip?token=secret");
  const { manifest } = await ingest(options(dir, { kind: "url", url }, { fetch: fetchImpl }));
  assert.deepEqual(seen, [url.href]);
  assert.equal(manifest.files.train.accepted, 10);
  assert.equal((manifest.source as { url: string }).url, "http://127.0.0.1:7003/files/amazon.zip?…");
  assert.ok(!JSON.stringify(manifest).includes("secret"));
  assert.match(manifest.files.train.origin, /amazon\.zip:data\/train\.csv$/);
  assert.deepEqual([...Deno.readDirSync(dir.downloads)], []);
});
