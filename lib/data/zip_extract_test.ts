import assert from "node:assert/strict";
import { join } from "node:path";
import { TextReader, Uint8ArrayWriter, ZipWriter } from "@zip.js/zip.js";
import { findDatasetEntry, isZipFile, ZipArchive, ZipExtractError } from "./zip_extract.ts";
import { PipelineError } from "../core/errors.ts";
import { scratchDir } from "../_testing.ts";

/** Builds a zip in memory; `level: 0` stores entries uncompressed so a test can flip a data byte. */
async function buildZip(
  files: Record<string, string>,
  options: { level?: number; zip64?: boolean } = {},
): Promise<Uint8Array> {
  const writer = new ZipWriter(new Uint8ArrayWriter(), { useWebWorkers: false });
  for (const [name, text] of Object.entries(files)) {
    await writer.add(name, new TextReader(text), { level: options.level ?? 6, zip64: options.zip64 });
  }
  return await writer.close();
}

function csvRows(count: number): string {
  let text = "";
  for (let i = 0; i < count; i++) text += `"${1 + (i % 2)}","title ${i}","body of review ${i}"\n`;
  return text;
}

async function readAll(stream: ReadableStream<Uint8Array>): Promise<string> {
  return await new Response(stream).text();
}

Deno.test("findDatasetEntry() prefers the top level, then one folder down, and skips __MACOSX", () => {
  assert.equal(findDatasetEntry(["x/train.csv", "train.csv"], "train.csv", "a.zip"), "train.csv");
  assert.equal(
    findDatasetEntry(["__MACOSX/train.csv", "amazon_review_polarity_csv/train.csv"], "train.csv", "a.zip"),
    "amazon_review_polarity_csv/train.csv",
  );
  assert.equal(findDatasetEntry(["a/b/train.csv", "test.csv"], "train.csv", "a.zip"), undefined);
  assert.equal(findDatasetEntry(["TRAIN.CSV"], "train.csv", "a.zip"), "TRAIN.CSV");
});

Deno.test("findDatasetEntry() throws naming both paths when two folders hold the file", () => {
  assert.throws(
    () => findDatasetEntry(["a/train.csv", "b/train.csv"], "train.csv", "data/external/x.zip"),
    (error: unknown) =>
      error instanceof PipelineError &&
      /data\/external\/x\.zip holds several train\.csv/.test(error.message) &&
      error.message.includes("a/train.csv, b/train.csv"),
  );
});

Deno.test("isZipFile() tells a zip from a CSV by its signature", async () => {
  await using dir = await scratchDir("zip-");
  await Deno.writeFile(join(dir.path, "a.zip"), await buildZip({ "train.csv": csvRows(3) }));
  await Deno.writeTextFile(join(dir.path, "a.csv"), csvRows(3));
  await Deno.writeTextFile(join(dir.path, "tiny"), "PK");
  assert.equal(await isZipFile(join(dir.path, "a.zip")), true);
  assert.equal(await isZipFile(join(dir.path, "a.csv")), false);
  assert.equal(await isZipFile(join(dir.path, "tiny")), false);
});

Deno.test("ZipArchive.open() streams a nested deflated entry byte for byte", async () => {
  await using dir = await scratchDir("zip-");
  const train = csvRows(5000);
  const path = join(dir.path, "data.zip");
  await Deno.writeFile(
    path,
    await buildZip({
      "amazon_review_polarity_csv/train.csv": train,
      "amazon_review_polarity_csv/test.csv": "x",
    }),
  );
  await using zip = await ZipArchive.open(path);
  assert.deepEqual(zip.names, [
    "amazon_review_polarity_csv/train.csv",
    "amazon_review_polarity_csv/test.csv",
  ]);
  const name = zip.find("train.csv");
  assert.equal(name, "amazon_review_polarity_csv/train.csv");
  const entry = zip.open(name!);
  assert.equal(entry.size, new TextEncoder().encode(train).length);
  assert.equal(await readAll(entry.readable), train);
  await entry.done;
});

Deno.test("ZipArchive.open() extracts a zip64 entry", async () => {
  await using dir = await scratchDir("zip-");
  const path = join(dir.path, "z64.zip");
  await Deno.writeFile(path, await buildZip({ "test.csv": csvRows(100) }, { zip64: true }));
  await using zip = await ZipArchive.open(path);
  const entry = zip.open("test.csv");
  assert.equal(await readAll(entry.readable), csvRows(100));
  await entry.done;
});

Deno.test("ZipArchive entry rejects with a CRC-32 ZipExtractError when a stored byte was flipped", async () => {
  await using dir = await scratchDir("zip-");
  const bytes = await buildZip({ "train.csv": csvRows(2000) }, { level: 0 });
  // Flip a byte in the middle of the stored data (after the ~40-byte local header), not in a header.
  bytes[Math.floor(bytes.length / 2)]! ^= 0x01;
  const path = join(dir.path, "bad.zip");
  await Deno.writeFile(path, bytes);
  await using zip = await ZipArchive.open(path);
  const entry = zip.open("train.csv");
  // Drain while awaiting `done`: which of the two reports the failure first is up to zip.js.
  const drained = readAll(entry.readable).catch((error) => error);
  await assert.rejects(entry.done, (error: unknown) => {
    assert.ok(error instanceof ZipExtractError);
    assert.equal(error.corrupt, true);
    assert.equal(error.detail, "CRC-32 mismatch");
    assert.equal(error.entry, "train.csv");
    assert.match(error.message, /bad\.zip is corrupt: CRC-32 mismatch in entry "train\.csv"/);
    return true;
  });
  assert.ok((await drained) instanceof Error, "the readable must error too, never end cleanly");
});

Deno.test("ZipArchive entry rejects with a ZipExtractError when deflated data was damaged", async () => {
  await using dir = await scratchDir("zip-");
  const bytes = await buildZip({ "train.csv": csvRows(3000) });
  for (let i = 200; i < 260; i++) bytes[i]! ^= 0xff;
  const path = join(dir.path, "bad-deflate.zip");
  await Deno.writeFile(path, bytes);
  await using zip = await ZipArchive.open(path);
  const entry = zip.open("train.csv");
  const drained = readAll(entry.readable).catch((error) => error);
  await assert.rejects(entry.done, (error: unknown) => error instanceof ZipExtractError && error.corrupt);
  assert.ok((await drained) instanceof Error);
});

Deno.test("ZipArchive.open() throws a ZipExtractError for a file that is not a zip", async () => {
  await using dir = await scratchDir("zip-");
  const path = join(dir.path, "not.zip");
  await Deno.writeTextFile(path, csvRows(50));
  await assert.rejects(
    ZipArchive.open(path),
    (error: unknown) => error instanceof ZipExtractError && error.message.startsWith(`${path} is corrupt: `),
  );
});

Deno.test("ZipArchive.open() throws a ZipExtractError for a truncated download", async () => {
  await using dir = await scratchDir("zip-");
  const bytes = await buildZip({ "train.csv": csvRows(2000) });
  const path = join(dir.path, "cut.zip");
  await Deno.writeFile(path, bytes.subarray(0, Math.floor(bytes.length / 2)));
  await assert.rejects(ZipArchive.open(path), ZipExtractError);
});

Deno.test("ZipArchive entry cancel() stops a long extraction and done resolves", async () => {
  await using dir = await scratchDir("zip-");
  const path = join(dir.path, "big.zip");
  await Deno.writeFile(path, await buildZip({ "train.csv": csvRows(200_000) }));
  await using zip = await ZipArchive.open(path);
  const entry = zip.open("train.csv");
  const reader = entry.readable.getReader();
  const first = await reader.read();
  assert.equal(first.done, false);
  entry.cancel();
  await entry.done;
  reader.releaseLock();
});

Deno.test("ZipArchive.open() names the entry in the error for an unknown entry", async () => {
  await using dir = await scratchDir("zip-");
  const path = join(dir.path, "a.zip");
  await Deno.writeFile(path, await buildZip({ "train.csv": "x" }));
  await using zip = await ZipArchive.open(path);
  assert.equal(zip.find("test.csv"), undefined);
  assert.throws(() => zip.open("test.csv"), /has no entry "test\.csv"/);
});

Deno.test("ZipArchive entry: a consumer cancelling the readable is an intended stop, not corruption", async () => {
  await using dir = await scratchDir("zip-");
  const path = join(dir.path, "big.zip");
  await Deno.writeFile(path, await buildZip({ "train.csv": csvRows(200_000) }));
  await using zip = await ZipArchive.open(path);
  const entry = zip.open("train.csv");
  for await (const chunk of entry.readable) {
    assert.ok(chunk.length > 0);
    break; // for-await's return() cancels the stream
  }
  await entry.done;
});
