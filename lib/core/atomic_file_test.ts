import assert from "node:assert/strict";
import { join } from "node:path";
import { exists, fileSize } from "./atomic_file.ts";
import { scratchDir } from "../_testing.ts";

Deno.test("exists() is true for a file and a folder, false for a missing path", async () => {
  await using dir = await scratchDir("atomic-file-");
  const file = join(dir.path, "a.csv");
  await Deno.writeTextFile(file, "x\n");
  assert.equal(await exists(file), true);
  assert.equal(await exists(dir.path), true);
  assert.equal(await exists(join(dir.path, "missing.csv")), false);
  assert.equal(await exists(join(dir.path, "missing", "a.csv")), false);
});

Deno.test("exists() throws a failure other than not found instead of answering false", async () => {
  await using dir = await scratchDir("atomic-file-");
  const file = join(dir.path, "a.csv");
  await Deno.writeTextFile(file, "x\n");
  // A file where a folder is expected: ENOTDIR, which says nothing about whether the path is there.
  await assert.rejects(exists(join(file, "child")), Deno.errors.NotADirectory);
});

Deno.test("fileSize() gives a file's bytes, undefined for a missing path, and throws other failures", async () => {
  await using dir = await scratchDir("atomic-file-");
  const file = join(dir.path, "a.csv");
  await Deno.writeTextFile(file, "héllo\n");
  assert.equal(await fileSize(file), 7);
  assert.equal(await fileSize(join(dir.path, "missing.csv")), undefined);
  await assert.rejects(fileSize(join(file, "child")), Deno.errors.NotADirectory);
});
