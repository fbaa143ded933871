import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import {
  checkNetPermission,
  downloadFile,
  googMd5,
  HttpStatusError,
  type NetCheck,
  parseContentRange,
  redactUrl,
} from "./download.ts";
import {
  authorizationHeader,
  downloadKaggleFile,
  kaggleDownloadUrl,
  parseApiBase,
  resolveKaggleCredentials,
} from "./kaggle.ts";
import { PipelineError, UsageError } from "../core/errors.ts";
import { canMount, MOUNT_SKIP_NOTE, mountTmpfs, scratchDir } from "../_testing.ts";

interface Seen {
  url: string;
  headers: Headers;
  redirect: RequestRedirect | undefined;
}

/** A fake `fetch` that records each request and answers through `handler`. */
function fakeFetch(handler: (url: URL, headers: Headers, call: number) => Response): {
  fetch: typeof fetch;
  seen: Seen[];
} {
  const seen: Seen[] = [];
  const fetchImpl = ((input: string | URL | Request, init?: RequestInit) => {
    const url = new URL(input instanceof Request ? input.url : input);
    const headers = new Headers(init?.headers);
    seen.push({ url: url.href, headers, redirect: init?.redirect });
    return Promise.resolve(handler(url, headers, seen.length - 1));
  }) as typeof fetch;
  return { fetch: fetchImpl, seen };
}

/** A body that delivers `bytes`, then fails like a dropped connection. */
function cutBody(bytes: Uint8Array): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      controller.enqueue(bytes);
    },
    pull(controller) {
      controller.error(new TypeError("error reading a body from connection"));
    },
  });
}

const allowAll: NetCheck = () => Promise.resolve();
const API = "http://127.0.0.1:1";
const STORAGE = "http://127.0.0.1:2";
const PAYLOAD = new TextEncoder().encode("PK\x03\x04 pretend zip ".repeat(500));
const CREDENTIALS = { kind: "basic", username: "alice", key: "s3cret-key" } as const;

Deno.test("resolveKaggleCredentials() prefers KAGGLE_API_TOKEN, then username+key, else undefined", () => {
  assert.deepEqual(
    resolveKaggleCredentials({ KAGGLE_API_TOKEN: " KGAT_abc\n", KAGGLE_USERNAME: "a", KAGGLE_KEY: "k" }),
    { kind: "token", token: "KGAT_abc" },
  );
  assert.deepEqual(resolveKaggleCredentials({ KAGGLE_USERNAME: "a", KAGGLE_KEY: "k" }), {
    kind: "basic",
    username: "a",
    key: "k",
  });
  assert.equal(resolveKaggleCredentials({}), undefined);
  assert.equal(resolveKaggleCredentials({ KAGGLE_API_TOKEN: "  " }), undefined);
});

Deno.test("resolveKaggleCredentials() names the missing half of username+key and never echoes a value", () => {
  assert.throws(
    () => resolveKaggleCredentials({ KAGGLE_KEY: "s3cret" }),
    (error: unknown) =>
      error instanceof PipelineError &&
      error.message === "KAGGLE_KEY is set but KAGGLE_USERNAME is not; set both, or KAGGLE_API_TOKEN instead",
  );
  assert.throws(
    () => resolveKaggleCredentials({ KAGGLE_API_TOKEN: "/home/me/.kaggle/access_token" }),
    (error: unknown) =>
      error instanceof PipelineError && /looks like a file path/.test(error.message) &&
      !error.message.includes("/home/me"),
  );
});

Deno.test("authorizationHeader() builds Basic base64(user:key) and Bearer headers", () => {
  assert.equal(authorizationHeader({ kind: "basic", username: "alice", key: "k" }), "Basic YWxpY2U6aw==");
  assert.equal(
    authorizationHeader({ kind: "basic", username: "zoë", key: "ключ" }),
    "Basic " + Buffer.from("zoë:ключ").toString("base64"),
  );
  assert.equal(authorizationHeader({ kind: "token", token: "KGAT_x" }), "Bearer KGAT_x");
});

Deno.test("kaggleDownloadUrl() appends the API path to the base, keeping a base path", () => {
  assert.equal(
    kaggleDownloadUrl(new URL("https://www.kaggle.com"), "kritanjalijain/amazon-reviews", "train.csv").href,
    "https://www.kaggle.com/api/v1/datasets/download/kritanjalijain/amazon-reviews/train.csv",
  );
  assert.equal(
    kaggleDownloadUrl(new URL("http://127.0.0.1:9/proxy"), "o/s", "a b.csv").href,
    "http://127.0.0.1:9/proxy/api/v1/datasets/download/o/s/a%20b.csv",
  );
});

Deno.test("parseApiBase() accepts http(s) URLs and rejects anything else with a UsageError", () => {
  assert.equal(parseApiBase("http://127.0.0.1:8080", "--kaggle-api-base").host, "127.0.0.1:8080");
  assert.throws(() => parseApiBase("www.kaggle.com", "KAGGLE_API_BASE_URL"), UsageError);
  assert.throws(
    () => parseApiBase("ftp://x", "--kaggle-api-base"),
    /--kaggle-api-base expects an http\(s\) URL/,
  );
});

Deno.test("redactUrl() drops user info and the signed query", () => {
  assert.equal(
    redactUrl(new URL("https://u:p@storage.googleapis.com/b/train.csv.zip?X-Goog-Signature=abc")),
    "https://storage.googleapis.com/b/train.csv.zip?…",
  );
  assert.equal(redactUrl(new URL("http://h:81/a.zip")), "http://h:81/a.zip");
});

Deno.test("parseContentRange() and googMd5() read the headers a resumed GCS download sends", () => {
  assert.deepEqual(parseContentRange("bytes 100-999/1000"), { start: 100, total: 1000 });
  assert.deepEqual(parseContentRange("bytes 5-9/*"), { start: 5, total: undefined });
  assert.equal(parseContentRange("items 1-2/3"), undefined);
  assert.equal(googMd5("crc32c=n03x6A==, md5=Ojk9c3dhfxgoKVVHYwFbHQ=="), "Ojk9c3dhfxgoKVVHYwFbHQ==");
  assert.equal(googMd5("crc32c=n03x6A=="), undefined);
  assert.equal(googMd5(null), undefined);
});

Deno.test("downloadKaggleFile() sends auth to the API only, follows its 302 by hand and verifies MD5", async () => {
  await using dir = await scratchDir("kaggle-");
  const md5 = createHash("md5").update(PAYLOAD).digest("base64");
  const { fetch, seen } = fakeFetch((url) => {
    if (url.origin === API) {
      return new Response(null, {
        status: 302,
        headers: { location: `${STORAGE}/signed/train.csv.zip?sig=1` },
      });
    }
    return new Response(PAYLOAD, {
      headers: { "content-length": String(PAYLOAD.length), "x-goog-hash": `crc32c=AAAAAA==,md5=${md5}` },
    });
  });
  const dest = join(dir.path, "train.csv.zip");
  const result = await downloadKaggleFile({
    apiBase: new URL(API),
    dataset: "kritanjalijain/amazon-reviews",
    file: "train.csv",
    credentials: CREDENTIALS,
    dest,
    fetch,
    checkNet: allowAll,
  });
  assert.equal(seen.length, 2);
  assert.equal(seen[0]!.url, `${API}/api/v1/datasets/download/kritanjalijain/amazon-reviews/train.csv`);
  assert.equal(seen[0]!.headers.get("authorization"), "Basic " + btoa("alice:s3cret-key"));
  assert.equal(seen[0]!.redirect, "manual");
  assert.equal(seen[1]!.url, `${STORAGE}/signed/train.csv.zip?sig=1`);
  assert.equal(seen[1]!.headers.get("authorization"), null, "the signed URL must not receive credentials");
  assert.equal(seen[1]!.redirect, "manual");
  assert.deepEqual(await Deno.readFile(dest), PAYLOAD);
  assert.equal(result.md5Verified, true);
  assert.equal(result.bytes, PAYLOAD.length);
  await assert.rejects(Deno.stat(dest + ".partial"), Deno.errors.NotFound);
});

Deno.test("downloadFile() keeps auth on a same-origin redirect and resolves a relative Location", async () => {
  await using dir = await scratchDir("kaggle-");
  const { fetch, seen } = fakeFetch((url) => {
    if (url.pathname === "/start") {
      return new Response(null, { status: 301, headers: { location: "/moved" } });
    }
    return new Response(PAYLOAD);
  });
  await downloadFile({
    url: new URL(`${API}/start`),
    dest: join(dir.path, "x.zip"),
    key: "k",
    authorization: "Bearer t",
    fetch,
    checkNet: allowAll,
  });
  assert.deepEqual(seen.map((s) => [s.url, s.headers.get("authorization")]), [
    [`${API}/start`, "Bearer t"],
    [`${API}/moved`, "Bearer t"],
  ]);
});

Deno.test("downloadKaggleFile() turns 401 into a credentials error that never shows the key", async () => {
  await using dir = await scratchDir("kaggle-");
  const { fetch } = fakeFetch(() => new Response("Unauthorized", { status: 401 }));
  await assert.rejects(
    downloadKaggleFile({
      apiBase: new URL(API),
      dataset: "o/s",
      file: "train.csv",
      credentials: CREDENTIALS,
      dest: join(dir.path, "train.csv.zip"),
      fetch,
      checkNet: allowAll,
    }),
    (error: unknown) => {
      assert.ok(error instanceof PipelineError);
      assert.match(
        error.message,
        /^Kaggle refused the credentials in KAGGLE_USERNAME and KAGGLE_KEY for o\/s/,
      );
      assert.match(error.message, /HTTP 401 from 127\.0\.0\.1:1/);
      assert.ok(!error.message.includes("s3cret"));
      assert.ok(!error.message.includes(btoa("alice:s3cret-key")));
      return true;
    },
  );
});

Deno.test("downloadKaggleFile() maps 404 to not found and a storage 403 to an expired signed URL", async () => {
  await using dir = await scratchDir("kaggle-");
  const base = { apiBase: new URL(API), dataset: "o/s", file: "nope.csv", credentials: CREDENTIALS };
  const notFound = fakeFetch(() => new Response("", { status: 404 }));
  await assert.rejects(
    downloadKaggleFile({ ...base, dest: join(dir.path, "a.zip"), fetch: notFound.fetch, checkNet: allowAll }),
    /^PipelineError: Kaggle has no dataset file o\/s\/nope\.csv \(HTTP 404 from 127\.0\.0\.1:1\)/,
  );
  const expired = fakeFetch((url) =>
    url.origin === API
      ? new Response(null, { status: 302, headers: { location: `${STORAGE}/x` } })
      : new Response("", { status: 403 })
  );
  await assert.rejects(
    downloadKaggleFile({ ...base, dest: join(dir.path, "b.zip"), fetch: expired.fetch, checkNet: allowAll }),
    /the signed download URL for o\/s\/nope\.csv was refused \(HTTP 403 from 127\.0\.0\.1:2\)/,
  );
});

Deno.test("downloadFile() names the host when the network fails", async () => {
  await using dir = await scratchDir("kaggle-");
  const fetchImpl = (() => Promise.reject(new TypeError("dns error: failed to lookup"))) as typeof fetch;
  await assert.rejects(
    downloadFile({
      url: new URL("https://nowhere.example/a.zip"),
      dest: join(dir.path, "a.zip"),
      key: "k",
      fetch: fetchImpl,
      checkNet: allowAll,
    }),
    /^PipelineError: cannot reach nowhere\.example \(dns error: failed to lookup\); check the network/,
  );
});

Deno.test("checkNetPermission() says which INGEST_ALLOW_NET grant covers every hop", async () => {
  // The test permission set grants 127.0.0.1 and localhost only.
  await checkNetPermission(new URL("http://127.0.0.1:5/"), { visited: [], hintHosts: [] });
  await assert.rejects(
    checkNetPermission(new URL("https://storage.invalid/x"), {
      visited: [new URL("http://127.0.0.1:5/api?token=1")],
      hintHosts: ["storage.googleapis.com"],
    }),
    (error: unknown) =>
      error instanceof PipelineError &&
      error.message ===
        "http://127.0.0.1:5/api?… redirects to storage.invalid, which is not granted; set " +
          "INGEST_ALLOW_NET=--allow-net=127.0.0.1:5,storage.invalid,storage.googleapis.com for deno task/make " +
          "(or pass --allow-net=127.0.0.1:5,storage.invalid,storage.googleapis.com to deno run)",
  );
});

Deno.test("downloadFile() keeps a cut download and resumes it with Range + If-Range", async () => {
  await using dir = await scratchDir("kaggle-");
  const dest = join(dir.path, "train.csv.zip");
  const half = 1234;
  const headers = { "accept-ranges": "bytes", etag: '"v1"', "content-length": String(PAYLOAD.length) };
  const first = fakeFetch(() => new Response(cutBody(PAYLOAD.subarray(0, half)), { headers }));
  await assert.rejects(
    downloadFile({ url: new URL(`${STORAGE}/f`), dest, key: "k", fetch: first.fetch, checkNet: allowAll }),
    (error: unknown) =>
      error instanceof PipelineError &&
      /^download of train\.csv\.zip from 127\.0\.0\.1:2 broke off at 1\.2 kB of 8\.5 kB \(.*\); run again to resume$/
        .test(error.message),
  );
  await assert.rejects(Deno.stat(dest), Deno.errors.NotFound);
  assert.equal((await Deno.stat(dest + ".partial")).size, half);

  const second = fakeFetch((_url, h) => {
    assert.equal(h.get("range"), `bytes=${half}-`);
    assert.equal(h.get("if-range"), '"v1"');
    return new Response(PAYLOAD.subarray(half), {
      status: 206,
      headers: { ...headers, "content-range": `bytes ${half}-${PAYLOAD.length - 1}/${PAYLOAD.length}` },
    });
  });
  const notices: string[] = [];
  const result = await downloadFile({
    url: new URL(`${STORAGE}/f`),
    dest,
    key: "k",
    fetch: second.fetch,
    checkNet: allowAll,
    onNotice: (m) => notices.push(m),
  });
  assert.equal(result.resumedFrom, half);
  assert.equal(result.transferred, PAYLOAD.length - half);
  assert.deepEqual(await Deno.readFile(dest), PAYLOAD);
  assert.deepEqual(notices, ["resuming train.csv.zip at 1.2 kB"]);

  // A third call reuses the complete file without any request.
  const third = fakeFetch(() => {
    throw new Error("no request expected");
  });
  const reused = await downloadFile({
    url: new URL(`${STORAGE}/f`),
    dest,
    key: "k",
    fetch: third.fetch,
    checkNet: allowAll,
  });
  assert.equal(reused.reused, true);
  assert.equal(third.seen.length, 0);
});

Deno.test("downloadFile() restarts cleanly when the server did not offer ranges or sends the whole file", async () => {
  await using dir = await scratchDir("kaggle-");
  const dest = join(dir.path, "t.zip");
  const length = { "content-length": String(PAYLOAD.length) };
  const first = fakeFetch(() => new Response(cutBody(PAYLOAD.subarray(0, 100)), { headers: length }));
  await assert.rejects(
    downloadFile({ url: new URL(`${STORAGE}/f`), dest, key: "k", fetch: first.fetch, checkNet: allowAll }),
    /; run again to restart it$/,
  );
  const second = fakeFetch(() => new Response(PAYLOAD, { headers: length }));
  await downloadFile({
    url: new URL(`${STORAGE}/f`),
    dest,
    key: "k",
    fetch: second.fetch,
    checkNet: allowAll,
  });
  assert.equal(second.seen[0]!.headers.get("range"), null, "no Range without Accept-Ranges on the first try");
  assert.deepEqual(await Deno.readFile(dest), PAYLOAD);

  // A resumable partial, but the server ignores Range and answers 200: the file must not be appended to.
  await Deno.remove(dest);
  await Deno.remove(dest + ".json");
  const ranged = { ...length, "accept-ranges": "bytes", "last-modified": "Tue, 01 Jul 2025 00:00:00 GMT" };
  const third = fakeFetch(() => new Response(cutBody(PAYLOAD.subarray(0, 300)), { headers: ranged }));
  await assert.rejects(
    downloadFile({ url: new URL(`${STORAGE}/f`), dest, key: "k", fetch: third.fetch, checkNet: allowAll }),
    /run again to resume$/,
  );
  const fourth = fakeFetch(() => new Response(PAYLOAD, { headers: ranged }));
  await downloadFile({
    url: new URL(`${STORAGE}/f`),
    dest,
    key: "k",
    fetch: fourth.fetch,
    checkNet: allowAll,
  });
  assert.equal(fourth.seen[0]!.headers.get("range"), "bytes=300-");
  assert.deepEqual(await Deno.readFile(dest), PAYLOAD);
});

Deno.test("downloadFile() never resumes a partial that belongs to another key", async () => {
  await using dir = await scratchDir("kaggle-");
  const dest = join(dir.path, "t.zip");
  const headers = { "accept-ranges": "bytes", etag: '"a"', "content-length": String(PAYLOAD.length) };
  const first = fakeFetch(() => new Response(cutBody(PAYLOAD.subarray(0, 100)), { headers }));
  await assert.rejects(
    downloadFile({ url: new URL(`${STORAGE}/f`), dest, key: "one", fetch: first.fetch, checkNet: allowAll }),
    PipelineError,
  );
  const second = fakeFetch(() => new Response(PAYLOAD, { headers }));
  await downloadFile({
    url: new URL(`${STORAGE}/g`),
    dest,
    key: "two",
    fetch: second.fetch,
    checkNet: allowAll,
  });
  assert.equal(second.seen[0]!.headers.get("range"), null);
  assert.deepEqual(await Deno.readFile(dest), PAYLOAD);
});

Deno.test("downloadFile() removes a file whose MD5 does not match x-goog-hash", async () => {
  await using dir = await scratchDir("kaggle-");
  const dest = join(dir.path, "t.zip");
  const { fetch } = fakeFetch(() =>
    new Response(PAYLOAD, { headers: { "x-goog-hash": "md5=AAAAAAAAAAAAAAAAAAAAAA==" } })
  );
  await assert.rejects(
    downloadFile({ url: new URL(`${STORAGE}/f`), dest, key: "k", fetch, checkNet: allowAll }),
    /t\.zip from 127\.0\.0\.1:2 does not match its MD5 checksum; it was removed, run again/,
  );
  await assert.rejects(Deno.stat(dest), Deno.errors.NotFound);
  await assert.rejects(Deno.stat(dest + ".partial"), Deno.errors.NotFound);
});

Deno.test("downloadFile() throws HttpStatusError with a redacted URL for other statuses", async () => {
  await using dir = await scratchDir("kaggle-");
  const { fetch } = fakeFetch(() => new Response("", { status: 500, statusText: "Internal Server Error" }));
  await assert.rejects(
    downloadFile({
      url: new URL(`${STORAGE}/f.zip?sig=secret`),
      dest: join(dir.path, "f.zip"),
      key: "k",
      fetch,
      checkNet: allowAll,
    }),
    (error: unknown) =>
      error instanceof HttpStatusError && error.status === 500 && !error.message.includes("secret") &&
      error.message === "http://127.0.0.1:2/f.zip?… answered HTTP 500 Internal Server Error; check the URL",
  );
});

Deno.test('downloadFile() reports the cause Deno hides behind "fetch failed"', async () => {
  await using dir = await scratchDir("kaggle-");
  const failure = new TypeError("fetch failed", {
    cause: new Error(
      "error sending request for url (https://www.kaggle.com/x): client error (Connect): dns error: failed to lookup",
    ),
  });
  const fetchImpl = (() => Promise.reject(failure)) as typeof fetch;
  await assert.rejects(
    downloadFile({
      url: new URL("https://www.kaggle.com/x"),
      dest: join(dir.path, "a.zip"),
      key: "k",
      fetch: fetchImpl,
      checkNet: allowAll,
    }),
    (error: unknown) =>
      error instanceof PipelineError &&
      error.message ===
        "cannot reach www.kaggle.com (client error (Connect): dns error: failed to lookup); check the network " +
          "connection and proxy settings",
  );
});

Deno.test("resolveKaggleCredentials() keeps an opaque token with slashes but refuses a path", () => {
  assert.deepEqual(resolveKaggleCredentials({ KAGGLE_API_TOKEN: "KGAT_ab/cd+ef==" }), {
    kind: "token",
    token: "KGAT_ab/cd+ef==",
  });
  for (const path of ["~/.kaggle/access_token", "./token", "../token"]) {
    assert.throws(() => resolveKaggleCredentials({ KAGGLE_API_TOKEN: path }), /looks like a file path/);
  }
});

const mountable = await canMount();
if (!mountable) console.warn(`kaggle_test.ts: ${MOUNT_SKIP_NOTE}`);

Deno.test({
  name:
    'downloadFile() on a full disk says so (not "broke off"), with the size it needs, and keeps a resumable part',
  ignore: !mountable,
  async fn() {
    await using dir = await scratchDir("kaggle-");
    const disk = join(dir.path, "downloads");
    await using _mount = await mountTmpfs(disk, 64 << 10);
    const dest = join(disk, "train.csv.zip");
    const big = new Uint8Array(200_000).fill(7);
    const headers = { "accept-ranges": "bytes", etag: '"v1"', "content-length": String(big.length) };
    const chunks = () =>
      new ReadableStream<Uint8Array>({
        start(controller) {
          for (let at = 0; at < big.length; at += 8_000) controller.enqueue(big.slice(at, at + 8_000));
          controller.close();
        },
      });
    const server = fakeFetch(() => new Response(chunks(), { headers }));
    await assert.rejects(
      downloadFile({ url: new URL(`${STORAGE}/f`), dest, key: "k", fetch: server.fetch, checkNet: allowAll }),
      (error: unknown) =>
        error instanceof PipelineError &&
        new RegExp(
          `^no space left on the device holding ${dest} \\(needs about 200 kB\\); free space there, ` +
            "or move data/ to a larger disk, then run again \\(the \\S+ kB downloaded so far are kept and resumed\\)$",
        ).test(error.message),
    );
  },
});
