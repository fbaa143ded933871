import assert from "node:assert/strict";
import {
  ApiError,
  DEFAULT_LIMITS,
  parseInvocationsBody,
  parsePredictBody,
  readBodyBytes,
  readJsonBody,
  requireJsonContentType,
} from "./validation.ts";

function jsonRequest(contentType: string | null): Request {
  const headers = new Headers();
  if (contentType !== null) headers.set("content-type", contentType);
  return new Request("http://localhost/predict", { method: "POST", headers, body: new Blob(["{}"]) });
}

Deno.test("requireJsonContentType() accepts JSON media types in any case and UTF-8 only", () => {
  for (
    const type of [
      "application/json",
      "Application/JSON; charset=UTF-8",
      'application/json; charset="utf-8"',
      "application/vnd.api+json",
    ]
  ) {
    requireJsonContentType(jsonRequest(type));
  }
  for (const type of [null, "text/plain", "application/jsonx", "application/json; charset=utf-16"]) {
    assert.throws(
      () => requireJsonContentType(jsonRequest(type)),
      (error: unknown) => error instanceof ApiError && error.status === 415,
      String(type),
    );
  }
});

Deno.test("readBodyBytes() joins a body that arrives in several chunks", async () => {
  const parts = ['{"mess', 'age": "h', 'i"}'];
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const part of parts) controller.enqueue(new TextEncoder().encode(part));
      controller.close();
    },
  });
  const request = new Request("http://localhost/", { method: "POST", body });
  const bytes = await readBodyBytes(request, DEFAULT_LIMITS);
  assert.equal(new TextDecoder().decode(bytes), parts.join(""));
});

Deno.test("readBodyBytes() refuses a declared Content-Length over the limit without reading", async () => {
  const body = new ReadableStream<Uint8Array>({ pull: () => {} });
  const request = new Request("http://localhost/", {
    method: "POST",
    headers: { "content-length": "5000" },
    body,
  });
  await assert.rejects(
    readBodyBytes(request, { maxBodyBytes: 4096, bodyTimeoutMs: 1000 }),
    (error: unknown) =>
      error instanceof ApiError && error.status === 413 && /4,096 bytes/.test(error.message),
  );
  assert.equal(request.bodyUsed, false, "the body was not touched");
});

Deno.test("parsePredictBody() accepts fields at their length limits and a missing or null title", () => {
  const limits = { ...DEFAULT_LIMITS, maxBatch: 3 };
  const atLimit = { title: "t".repeat(limits.maxTitleChars), message: "m".repeat(limits.maxMessageChars) };
  assert.deepEqual(parsePredictBody(atLimit, limits), { batch: false, reviews: [atLimit], explain: false });
  assert.deepEqual(
    parsePredictBody([{ message: "a" }, { title: null, message: "b" }, { message: "c" }], limits),
    {
      batch: true,
      reviews: [{ title: "", message: "a" }, { title: "", message: "b" }, { title: "", message: "c" }],
      explain: false,
    },
  );
  assert.throws(() => parsePredictBody(Array(4).fill({ message: "a" }), limits), { status: 413 });
  assert.throws(() => parsePredictBody({ title: "x".repeat(1001), message: "a" }, limits), {
    status: 413,
    message: '"title" is 1,001 characters long, over the limit of 1,000',
  });
});

Deno.test("parseInvocationsBody() reads a split frame without a title column and null cells", () => {
  assert.deepEqual(
    parseInvocationsBody({
      dataframe_split: { columns: ["message", "stars"], data: [["good", 5], ["bad", null]] },
    }, DEFAULT_LIMITS),
    [{ title: "", message: "good" }, { title: "", message: "bad" }],
  );
  assert.deepEqual(
    parseInvocationsBody({ dataframe_records: [{ title: null, message: "ok", extra: 1 }] }, DEFAULT_LIMITS),
    [{ title: "", message: "ok" }],
  );
});

Deno.test("parseInvocationsBody() names the row and column of a wrong cell", () => {
  assert.throws(
    () => parseInvocationsBody({ dataframe_records: [{ message: "ok" }, { message: 3 }] }, DEFAULT_LIMITS),
    { status: 400, message: 'dataframe_records[1]: "message" must be a string, got number' },
  );
  assert.throws(
    () => parseInvocationsBody({ inputs: "text" }, DEFAULT_LIMITS),
    { status: 400, message: '"inputs" must be a list of records or an object of columns, got string' },
  );
  assert.throws(
    () => parseInvocationsBody({ dataframe_split: { columns: "message", data: [] } }, DEFAULT_LIMITS),
    { status: 400, message: '"dataframe_split.columns" must be a list of column names' },
  );
});

Deno.test("readJsonBody() accepts a U+FFFD the client sent and refuses bytes that are not UTF-8", async () => {
  const post = (bytes: Uint8Array<ArrayBuffer>) =>
    new Request("http://localhost/predict", {
      method: "POST",
      headers: { "content-type": "application/json", "content-length": String(bytes.length) },
      body: bytes,
    });
  const sent = new TextEncoder().encode('{"message":"odd \uFFFD character"}');
  assert.deepEqual(await readJsonBody(post(sent), DEFAULT_LIMITS), { message: "odd \uFFFD character" });
  for (const invalid of [[0x22, 0xff, 0x22], [0x22, 0xc3, 0x22], [0x22, 0xed, 0xa0, 0x80, 0x22]]) {
    await assert.rejects(
      readJsonBody(post(new Uint8Array(invalid)), DEFAULT_LIMITS),
      (error: unknown) =>
        error instanceof ApiError && error.status === 400 &&
        error.message === "request body is not valid UTF-8",
    );
  }
});
