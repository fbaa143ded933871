/**
 * Reliability, files: two runs of a stage at once, symbolic links planted in the data folders, and a full,
 * read-only or foreign-owned disk under each writing stage's output folder. Every stage runs as a process
 * under its own permission set, as `deno task <stage>` runs it.
 *
 * The disk tests mount a small tmpfs (and remount it read-only) on the output folder; they need root, as CI
 * has. Where mounting is not allowed they are ignored and print a line saying so.
 *
 * @module
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { canMount, MOUNT_SKIP_NOTE, mountTmpfs } from "../lib/_testing.ts";
import {
  createProjectRoot,
  errorLines,
  mlflowEnv,
  ok,
  type ProjectRoot,
  REPO_ROOT,
  requireServer,
  runTask,
  type StageRun,
  startTask,
  testMlflowServer,
} from "./_testing.ts";

const NO_KAGGLE = { KAGGLE_API_TOKEN: "", KAGGLE_USERNAME: "", KAGGLE_KEY: "", KAGGLE_API_BASE_URL: "" };
const STAGE_TIMEOUT_MS = 180_000;
const mountable = await canMount();
if (!mountable) console.warn(`reliability_files_test.ts: ${MOUNT_SKIP_NOTE}`);

/** File name to SHA-256 of every file under `dir` (recursively), except `skip`. */
async function snapshot(
  dir: string,
  skip: readonly string[] = [],
  prefix = "",
): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  let entries: Deno.DirEntry[];
  try {
    entries = await Array.fromAsync(Deno.readDir(dir));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return out;
    throw error;
  }
  for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    if (skip.includes(entry.name)) continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory) Object.assign(out, await snapshot(path, skip, `${prefix}${entry.name}/`));
    else out[`${prefix}${entry.name}`] = createHash("sha256").update(await Deno.readFile(path)).digest("hex");
  }
  return out;
}

/** Exactly one `error:` line, no stack trace, exit 1; returns the line. */
function oneErrorLine(run: StageRun, what: string): string {
  assert.equal(run.code, 1, `${what}: exit code\n${run.stderr}`);
  const lines = errorLines(run);
  assert.equal(lines.length, 1, `${what}: one error line\n${run.stderr}`);
  assert.ok(!/^\s+at /m.test(run.stderr), `${what}: no stack trace\n${run.stderr}`);
  return lines[0]!;
}

async function ln(target: string, link: string): Promise<void> {
  // Deno.symlink needs unscoped read and write permissions; the tests are granted `ln` instead.
  const { code } = await new Deno.Command("ln", { args: ["-sfn", target, link] }).output();
  assert.equal(code, 0, `ln -s ${target} ${link}`);
}

async function waitForFile(path: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await Deno.lstat(path).then(() => true, () => false)) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`${path} did not appear within ${timeoutMs} ms`);
}

async function countLines(path: string): Promise<number> {
  const bytes = await Deno.readFile(path);
  let lines = 0;
  for (const byte of bytes) if (byte === 10) lines++;
  return lines;
}

// ---------------------------------------------------------------------------------------------------
// Two runs at once (issue: a second ingest mixed its rows into the first one's output)

Deno.test("a second ingest, split_batches or preprocess_batch started during the first refuses, naming it; the first's output is whole", async (t) => {
  await using root = await createProjectRoot();

  await t.step("ingest", async () => {
    await using first = startTask(root, "ingest", ["--source", "sample", "--rows", "300000", "--force"], {
      env: NO_KAGGLE,
    });
    await waitForFile(root.resolve("data/raw/.lock"));
    const second = await runTask(root, "ingest", [
      "--source",
      "sample",
      "--rows",
      "1000",
      "--seed",
      "9",
      "--force",
    ], {
      env: NO_KAGGLE,
      timeoutMs: STAGE_TIMEOUT_MS,
    });
    assert.match(
      oneErrorLine(second, "second ingest"),
      new RegExp(
        `^error: data/raw is in use by ingest \\(pid ${first.pid}, started \\S+, \\d+ s ago\\); ` +
          "wait for it to finish \\(or stop it\\), then run again$",
      ),
    );
    ok(await first.result, "first ingest");
    assert.equal(await countLines(root.resolve("data/raw/train.csv")), 300_000, "only the first run's rows");
    const manifest = JSON.parse(await Deno.readTextFile(root.resolve("data/raw/ingest_manifest.json")));
    assert.equal(manifest.files.train.accepted, 300_000);
    assert.deepEqual(
      (await Array.fromAsync(Deno.readDir(root.resolve("data/raw")))).map((e) => e.name).sort(),
      ["ingest_manifest.json", "rejects.csv", "test.csv", "train.csv"],
      "no temporary file and no lock left",
    );
  });

  await t.step("split_batches", async () => {
    await using first = startTask(root, "split_batches", ["--batch-size", "20000", "--force"]);
    await waitForFile(root.resolve("data/batches/.lock"));
    const second = await runTask(root, "split_batches", ["--batch-size", "7", "--force"], {
      timeoutMs: STAGE_TIMEOUT_MS,
    });
    assert.match(
      oneErrorLine(second, "second split"),
      new RegExp(`^error: data/batches is in use by split_batches \\(pid ${first.pid}, started `),
    );
    ok(await first.result, "first split");
    const manifest = JSON.parse(await Deno.readTextFile(root.resolve("data/batches/manifest.json")));
    assert.equal(manifest.batches.length, 15);
  });

  await t.step("preprocess_batch of one batch", async () => {
    await using first = startTask(root, "preprocess_batch", ["0", "--force", "--workers", "0"]);
    await waitForFile(root.resolve("data/processed/train_batch_0.tsv.lock"));
    const second = await runTask(root, "preprocess_batch", ["0", "--force"], { timeoutMs: STAGE_TIMEOUT_MS });
    assert.match(
      oneErrorLine(second, "second preprocess"),
      new RegExp(
        `^error: data/processed/train_batch_0\\.tsv is in use by preprocess \\(pid ${first.pid}, started `,
      ),
    );
    // Another batch is another output: it runs beside the first.
    ok(await runTask(root, "preprocess_batch", ["1"], { timeoutMs: STAGE_TIMEOUT_MS }), "batch 1 meanwhile");
    ok(await first.result, "first preprocess");
    const meta = JSON.parse(await Deno.readTextFile(root.resolve("data/processed/train_batch_0.meta.json")));
    assert.equal(meta.read, 20_000);
  });
});

// ---------------------------------------------------------------------------------------------------
// Symbolic links (issue: a link let ingest read and write outside its permission set)

Deno.test("a symbolic link leaving the stage's folders is refused by name: read through, or written through", async (t) => {
  await using root = await createProjectRoot();
  const outside = root.resolve("outside");
  await Deno.mkdir(outside);
  const secret = join(outside, "secret.csv");
  await Deno.writeTextFile(secret, "SECRET-LINE,not,a review\n");

  await t.step("ingest --source: a train.csv linking outside data/", async () => {
    await Deno.mkdir(root.resolve("data/external/x"), { recursive: true });
    await Deno.writeTextFile(root.resolve("data/external/x/test.csv"), '"1","a","b"\n');
    await ln(secret, root.resolve("data/external/x/train.csv"));
    const run = await runTask(root, "ingest", ["--source", "data/external/x"], {
      env: NO_KAGGLE,
      timeoutMs: STAGE_TIMEOUT_MS,
    });
    assert.equal(
      oneErrorLine(run, "ingest"),
      `error: data/external/x/train.csv is a symbolic link to ${secret}, outside the folders this stage may ` +
        "read (data/raw, data/downloads, data/external); copy the file there instead of linking it",
    );
    const raw = await snapshot(root.resolve("data/raw"));
    assert.deepEqual(raw, {}, "nothing written, the secret copied nowhere");
  });

  await t.step(
    "a link inside the granted folders is fine (data/ on another disk works the same way)",
    async () => {
      await Deno.writeTextFile(root.resolve("data/external/real_train.csv"), '"2","fine","a review"\n');
      await ln(root.resolve("data/external/real_train.csv"), root.resolve("data/external/x/train.csv"));
      ok(
        await runTask(root, "ingest", ["--source", "data/external/x"], {
          env: NO_KAGGLE,
          timeoutMs: STAGE_TIMEOUT_MS,
        }),
        "ingest through an inside link",
      );
    },
  );

  await t.step("ingest never writes through a link at its output or at the old temporary name", async () => {
    await Deno.remove(root.resolve("data/raw/train.csv"));
    await ln(secret, root.resolve("data/raw/train.csv"));
    const before = await Deno.readTextFile(secret);
    const run = await runTask(root, "ingest", ["--source", "sample", "--rows", "100", "--force"], {
      env: NO_KAGGLE,
      timeoutMs: STAGE_TIMEOUT_MS,
    });
    assert.equal(
      oneErrorLine(run, "ingest over a link"),
      `error: data/raw/train.csv is a symbolic link (to ${secret}); a stage never writes through a link: ` +
        "remove it (rm data/raw/train.csv) and run again",
    );
    assert.equal(await Deno.readTextFile(secret), before, "the link's target is untouched");

    await Deno.remove(root.resolve("data/raw/train.csv"));
    await ln(secret, root.resolve("data/raw/train.csv.partial"));
    ok(
      await runTask(root, "ingest", ["--source", "sample", "--rows", "100", "--force"], {
        env: NO_KAGGLE,
        timeoutMs: STAGE_TIMEOUT_MS,
      }),
      "ingest beside a planted .partial link",
    );
    assert.equal(await Deno.readTextFile(secret), before, "the planted link's target is untouched");
    assert.ok(
      (await Deno.lstat(root.resolve("data/raw/train.csv"))).isFile,
      "train.csv is a file, not a link",
    );
    assert.equal(await countLines(root.resolve("data/raw/train.csv")), 100);
  });

  await t.step("split_batches refuses a data/raw/train.csv that links outside data/raw", async () => {
    await Deno.remove(root.resolve("data/raw/train.csv"));
    await ln(secret, root.resolve("data/raw/train.csv"));
    const run = await runTask(root, "split_batches", [], { timeoutMs: STAGE_TIMEOUT_MS });
    assert.equal(
      oneErrorLine(run, "split_batches"),
      `error: data/raw/train.csv is a symbolic link to ${secret}, outside the folders this stage may read ` +
        "(data/raw); copy the file there instead of linking it",
    );
    assert.deepEqual(await snapshot(root.resolve("data/batches"), [".lock"]), {});
  });
});

// ---------------------------------------------------------------------------------------------------
// A full, read-only or foreign-owned disk (issue: an uncaught "No space left on device" stack trace)

interface DiskCase {
  /** The stage. */
  task: string;
  /** Its output folder, mounted as a small tmpfs. */
  folder: string;
  /** Inputs the stage reads, made before the mount. */
  prepare: (root: ProjectRoot) => Promise<void>;
  /** Args of the run that makes the previous outputs. */
  previous: string[];
  /** Args of the run that meets the fault (writes about as much as `previous`, or more). */
  again: string[];
}

const CASES: DiskCase[] = [
  {
    task: "ingest",
    folder: "data/raw",
    prepare: () => Promise.resolve(),
    previous: ["--source", "sample", "--rows", "3000", "--test-rows", "300"],
    again: ["--source", "sample", "--rows", "20000", "--test-rows", "2000", "--force"],
  },
  {
    task: "split_batches",
    folder: "data/batches",
    prepare: async (root) => {
      ok(
        await runTask(root, "ingest", ["--source", "sample", "--rows", "20000", "--test-rows", "2000"], {
          env: NO_KAGGLE,
          timeoutMs: STAGE_TIMEOUT_MS,
        }),
        "ingest",
      );
    },
    previous: ["--num-batches", "2"],
    again: ["--num-batches", "3", "--force", "--skip-space-check"],
  },
  {
    task: "preprocess_batch",
    folder: "data/processed",
    prepare: async (root) => {
      for (
        const [task, args] of [
          ["ingest", ["--source", "sample", "--rows", "20000", "--test-rows", "2000"]],
          ["split_batches", ["--num-batches", "1"]],
        ] as const
      ) ok(await runTask(root, task, [...args], { env: NO_KAGGLE, timeoutMs: STAGE_TIMEOUT_MS }), task);
    },
    previous: ["0", "--workers", "0"],
    again: ["0", "--workers", "0", "--force", "--skip-space-check"],
  },
  {
    task: "preprocess_test",
    folder: "data/processed",
    prepare: async (root) => {
      ok(
        await runTask(root, "ingest", ["--source", "sample", "--rows", "2000", "--test-rows", "20000"], {
          env: NO_KAGGLE,
          timeoutMs: STAGE_TIMEOUT_MS,
        }),
        "ingest",
      );
    },
    previous: ["--workers", "0"],
    again: ["--workers", "0", "--force", "--skip-space-check"],
  },
];

const TMPFS_BYTES = 16 << 20;
const FILLER = "filler.bin";

/** Fills the tmpfs until it is full, then frees `leave` bytes of it. */
async function fillLeaving(folder: string, leave: number): Promise<void> {
  const path = join(folder, FILLER);
  await Deno.remove(path).catch(() => {});
  using file = await Deno.open(path, { write: true, createNew: true });
  const chunk = new Uint8Array(64 << 10);
  let size = 0;
  try {
    while (true) size += await file.write(chunk);
  } catch (error) {
    if ((error as { code?: string }).code !== "ENOSPC") throw error;
  }
  await file.truncate(Math.max(size - leave, 0));
}

for (const c of CASES) {
  Deno.test({
    name: `${c.task}: a full disk at the start, in the middle and at the final commit, a read-only mount, ` +
      "a folder it may not write: one line, exit 1, no temporary file, the previous outputs byte-identical",
    ignore: !mountable,
    async fn(t) {
      await using root = await createProjectRoot();
      await c.prepare(root);
      const folder = root.resolve(c.folder);
      await using _disk = await mountTmpfs(folder, TMPFS_BYTES);
      const run = (args: string[], wrap?: string[]) =>
        runTask(root, c.task, args, {
          env: NO_KAGGLE,
          timeoutMs: STAGE_TIMEOUT_MS,
          ...(wrap ? { wrap } : {}),
        });

      // How much the faulting run writes, measured by letting it succeed once.
      ok(await run(c.again), "measure");
      const needed = await du(folder);
      ok(await run([...c.previous, "--force"]), "previous outputs");
      const before = await snapshot(folder);
      const folderName = c.folder.replaceAll("/", "\\/");

      const points: [string, number][] = [
        ["start", 0],
        ["middle", Math.floor(needed / 2)],
        ["final commit", Math.max(needed - (48 << 10), 0)],
      ];
      for (const [point, leave] of points) {
        await t.step(`full disk at the ${point}`, async () => {
          await fillLeaving(folder, leave);
          const line = oneErrorLine(await run(c.again), point);
          assert.match(line, new RegExp(`^error: no space left on the device holding ${folderName}/\\S+`));
          assert.match(
            line,
            /; free (at least \S+ \S+ of )?space there, or move data\/ to a larger disk, then run again$/,
          );
          await Deno.remove(join(folder, FILLER));
          assert.deepEqual(
            await snapshot(folder),
            before,
            `${point}: previous outputs byte-identical, nothing left`,
          );
        });
      }

      if (c.task !== "ingest") {
        await t.step(
          "the free-space check refuses early with the estimate; --force does not skip it",
          async () => {
            await fillLeaving(folder, Math.floor(needed / 3));
            const args = c.again.filter((arg) => arg !== "--skip-space-check");
            const line = oneErrorLine(await run(args), "space check");
            assert.match(
              line,
              new RegExp(
                `^error: ${folderName} needs about \\S+ \\S+ \\((about the size of|1\\.25 times the size of) ` +
                  `data/\\S+\\) but \\S+ \\S+ is free on its device; free at least \\S+ \\S+ there or move ` +
                  "data/ to a larger disk, or pass --skip-space-check to try anyway$",
              ),
            );
            await Deno.remove(join(folder, FILLER));
            assert.deepEqual(await snapshot(folder), before);
          },
        );
      }

      await t.step("read-only mount", async () => {
        assert.equal(
          (await new Deno.Command("mount", { args: ["-o", "remount,ro", folder] }).output()).code,
          0,
        );
        try {
          const line = oneErrorLine(await run(c.again), "read-only");
          assert.match(
            line,
            new RegExp(
              `^error: ${folderName} is on a read-only file system \\(writing ${folderName}/\\S+\\); remount it read-write`,
            ),
          );
        } finally {
          await new Deno.Command("mount", { args: ["-o", "remount,rw", folder] }).output();
        }
        assert.deepEqual(await snapshot(folder), before);
      });

      await t.step("a folder the user may not write (root without its permission override)", async () => {
        await Deno.chmod(folder, 0o555);
        try {
          const wrap = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"];
          const line = oneErrorLine(await run(c.again, wrap), "not writable");
          assert.match(
            line,
            new RegExp(
              `^error: permission denied by the file system on ${folderName}/\\S+ \\(${folderName} is owned by uid 0 mode 555\\); ` +
                `make ${folderName} writable for the user running the stage`,
            ),
          );
        } finally {
          await Deno.chmod(folder, 0o755);
        }
        assert.deepEqual(await snapshot(folder), before);
      });
    },
  });
}

/** Bytes of the files under `dir`. */
async function du(dir: string): Promise<number> {
  let total = 0;
  for await (const entry of Deno.readDir(dir)) {
    const path = join(dir, entry.name);
    total += entry.isDirectory ? await du(path) : (await Deno.stat(path)).size;
  }
  return total;
}

// ---------------------------------------------------------------------------------------------------
// The MLflow server's own disk

Deno.test({
  name:
    "a real MLflow server whose artifact store is full: train exits 1 with one line naming the server's answer, run FAILED, no version",
  ignore: !mountable,
  async fn() {
    await using root = await createProjectRoot();
    for (
      const [task, args] of [
        ["ingest", ["--source", "sample", "--rows", "3000", "--test-rows", "300"]],
        ["split_batches", []],
        ["preprocess_batch", ["0"]],
      ] as const
    ) ok(await runTask(root, task, [...args], { env: NO_KAGGLE, timeoutMs: STAGE_TIMEOUT_MS }), task);
    await using server = testMlflowServer("mlflow-full-disk");
    await server.start();
    const client = await requireServer(server.uri);
    // The server keeps artifacts in <data>/artifacts (tools/mlflow_server.sh): 8 kB holds no model.
    await using _disk = await mountTmpfs(
      join(REPO_ROOT, ".tmp-test", "mlflow-full-disk", "artifacts"),
      8 << 10,
    );
    const name = "full-artifact-store";
    // The client retries a 500 eight times (about a minute) before it gives up: the server may recover.
    const run = await runTask(root, "train", ["--batches", "0", "--trees", "3"], {
      env: mlflowEnv(server.uri, name),
      timeoutMs: 240_000,
    });
    assert.match(
      oneErrorLine(run, "train"),
      /^error: MLflow at \S+ could not store an artifact: PUT \S+ failed \(500 HTTP_500\): Internal Server Error; the server's log says why, most often its artifact store \(--artifacts-destination\) is full or read-only$/,
    );
    const experiment = await client.getExperimentByName(name);
    const runs = await client.searchRuns({ experimentIds: [experiment!.experimentId] });
    assert.deepEqual(runs.runs.map((r) => r.info.status), ["FAILED"]);
    const versions = await client.searchModelVersions({ filter: `name='${name}'` });
    assert.deepEqual(versions.modelVersions, [], "no version registered");
  },
});
