import assert from "node:assert/strict";
import { join } from "node:path";
import {
  AtomicTextWriter,
  exists,
  fileSize,
  PARTIAL_SUFFIX,
  partialPath,
  publishAll,
  writeFileAtomic,
} from "./atomic_file.ts";
import { FileSystemError } from "./os_error.ts";
import { canMount, MOUNT_SKIP_NOTE, mountReadOnly, mountTmpfs, scratchDir } from "../_testing.ts";

const mountable = await canMount();

async function names(dir: string): Promise<string[]> {
  return (await Array.fromAsync(Deno.readDir(dir))).map((entry) => entry.name).sort();
}

async function symlink(target: string, link: string): Promise<void> {
  // Deno.symlink needs unscoped read and write; the tests only have `ln`.
  const { code } = await new Deno.Command("ln", { args: ["-s", target, link] }).output();
  assert.equal(code, 0);
}

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

Deno.test("AtomicTextWriter writes a temporary name unique to the process, created exclusively", async () => {
  await using dir = await scratchDir("atomic-file-");
  const path = join(dir.path, "train.csv");
  await using writer = await AtomicTextWriter.create(path);
  assert.equal(writer.partialPath, partialPath(path));
  assert.match(writer.partialPath, new RegExp(`train\\.csv\\.${Deno.pid}-[0-9a-f]{8}\\.partial$`));
  writer.write("a\n");
  // A second writer of the same file in this process would share the name: refused, not interleaved.
  await assert.rejects(AtomicTextWriter.create(path), /already exists/);
  await writer.commit();
  assert.equal(await Deno.readTextFile(path), "a\n");
  assert.deepEqual(await names(dir.path), ["train.csv"]);
});

Deno.test("writeFileAtomic() with a staging folder writes nothing beside the output but the output", async () => {
  await using dir = await scratchDir("atomic-file-");
  const pages = join(dir.path, "docs");
  const staging = join(dir.path, "scratch");
  await Deno.mkdir(pages);
  await Deno.mkdir(staging);
  const page = join(pages, "benchmarks.md");
  await Deno.writeTextFile(page, "old\n");
  await using writer = await AtomicTextWriter.create(page, { stagingDir: staging });
  assert.equal(writer.partialPath, partialPath(join(staging, "benchmarks.md")));
  writer.write("new\n");
  assert.deepEqual(await names(pages), ["benchmarks.md"]);
  await writer.commit();
  assert.equal(await Deno.readTextFile(page), "new\n");
  assert.deepEqual(await names(staging), []);
  const committed = await writeFileAtomic(page, "newer\n", { stagingDir: staging });
  assert.deepEqual([committed.path, committed.bytes], [page, 6]);
  assert.equal(await Deno.readTextFile(page), "newer\n");
  assert.deepEqual([await names(pages), await names(staging)], [["benchmarks.md"], []]);
});

Deno.test("AtomicTextWriter never writes through a symbolic link: at the output or at its temporary name", async () => {
  await using dir = await scratchDir("atomic-file-");
  const outside = join(dir.path, "outside.txt");
  await Deno.writeTextFile(outside, "precious\n");
  const linked = join(dir.path, "linked.csv");
  await symlink(outside, linked);
  await assert.rejects(
    AtomicTextWriter.create(linked),
    (error: Error) =>
      error.message ===
        `${linked} is a symbolic link (to ${outside}); a stage never writes through a link: ` +
          `remove it (rm ${linked}) and run again`,
  );
  const path = join(dir.path, "train.csv");
  await symlink(outside, partialPath(path));
  await assert.rejects(
    AtomicTextWriter.create(path),
    /already exists \(a file or link nobody should have made\)/,
  );
  assert.equal(await Deno.readTextFile(outside), "precious\n");
  assert.equal(await exists(path), false);
});

Deno.test("publishAll() finishes every file before renaming any", async () => {
  await using dir = await scratchDir("atomic-file-");
  const a = await AtomicTextWriter.create(join(dir.path, "a.txt"));
  const b = await AtomicTextWriter.create(join(dir.path, "b.txt"));
  a.write("A");
  b.write("B");
  const committed = await publishAll([a, b]);
  assert.deepEqual(committed.map((file) => file.bytes), [1, 1]);
  assert.deepEqual(await names(dir.path), ["a.txt", "b.txt"]);
});

/** Fills a small tmpfs at a given point of a write and checks the message, the cleanup and the old file. */
Deno.test({
  name:
    "a full disk at the start, in the middle or at the final commit: one line, no temporary file, old file kept",
  ignore: !mountable,
  async fn() {
    await using dir = await scratchDir("atomic-file-");
    const mountPoint = join(dir.path, "disk");
    await using _mount = await mountTmpfs(mountPoint, 3 << 20);
    const path = join(mountPoint, "out.csv");
    await Deno.writeTextFile(path, "old\n");
    const filler = join(mountPoint, "filler");
    const fill = async (leave: number) => {
      // Leaves about `leave` bytes free (tmpfs counts whole 4 kB pages).
      await Deno.remove(filler).catch(() => {});
      const free = (3 << 20) - 2 * 4096;
      await Deno.writeFile(filler, new Uint8Array(Math.max(free - leave, 0)));
    };
    const line = "x".repeat(1023) + "\n";
    for (const point of ["start", "middle", "commit"] as const) {
      await fill(point === "start" ? 0 : point === "middle" ? 600_000 : 2_048);
      const run = async () => {
        await using writer = await AtomicTextWriter.create(path, { expectedBytes: 2_000_000 });
        const chunks = point === "commit" ? 200 : 2000;
        for (let i = 0; i < chunks; i++) {
          const pending = writer.write(line);
          if (pending) await pending;
        }
        await writer.commit();
      };
      const error = await run().then(() => undefined, (e: unknown) => e);
      assert.ok(error instanceof FileSystemError, `${point}: ${error}`);
      assert.equal(error.code, "ENOSPC");
      assert.match(
        error.message,
        new RegExp(
          `^no space left on the device holding ${path} \\(needs about 2\\.0 MB\\); free space there`,
        ),
        point,
      );
      assert.ok(!error.message.includes("\n"));
      assert.deepEqual((await names(mountPoint)).filter((name) => name.endsWith(PARTIAL_SUFFIX)), [], point);
      assert.equal(await Deno.readTextFile(path), "old\n", `${point}: the previous file is byte-identical`);
    }
  },
});

Deno.test({
  name: "a read-only file system: one line saying to remount, nothing written",
  ignore: !mountable,
  async fn() {
    await using dir = await scratchDir("atomic-file-");
    const folder = join(dir.path, "ro");
    await Deno.mkdir(folder);
    await Deno.writeTextFile(join(folder, "manifest.json"), "{}\n");
    await using _mount = await mountReadOnly(folder);
    const path = join(folder, "manifest.json");
    const error = await writeFileAtomic(path, '{"new":1}\n').then(() => undefined, (e: unknown) => e);
    assert.ok(error instanceof FileSystemError, String(error));
    assert.equal(error.code, "EROFS");
    assert.match(
      error.message,
      new RegExp(`^${folder} is on a read-only file system \\(writing ${path}\\); remount it`),
    );
    assert.equal(await Deno.readTextFile(path), "{}\n");
  },
});

if (!mountable) console.warn(`atomic_file_test.ts: ${MOUNT_SKIP_NOTE}`);
