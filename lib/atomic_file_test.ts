import assert from "node:assert/strict";
import { join } from "node:path";
import { exists } from "./atomic_file.ts";
import { scratchDir } from "./_testing.ts";

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
