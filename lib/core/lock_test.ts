import assert from "node:assert/strict";
import { join } from "node:path";
import { acquireLock, describeHolder, LockBusyError, lockOutputs } from "./lock.ts";
import { exists } from "./atomic_file.ts";
import { scratchDir } from "../_testing.ts";

const options = { stage: "ingest", what: "data/raw" };

Deno.test("acquireLock() refuses a second holder with one line naming the first, and frees on release", async () => {
  await using dir = await scratchDir("lock-");
  const path = join(dir.path, ".lock");
  const first = await acquireLock(path, options);
  const error = await acquireLock(path, options).then(() => undefined, (e: unknown) => e);
  assert.ok(error instanceof LockBusyError);
  assert.equal(error.holder?.pid, Deno.pid);
  assert.match(
    error.message,
    new RegExp(`^data/raw is in use by ingest \\(pid ${Deno.pid}, started \\S+, \\d+ s ago\\); wait for it`),
  );
  assert.ok(!error.message.includes("\n"));
  await first.release();
  assert.equal(await exists(path), false, "the lock file is removed on release");
  await using second = await acquireLock(path, options);
  assert.equal(second.tookOver, undefined);
});

Deno.test("acquireLock() takes over a lock file that a dead run left, and says whose it was", async () => {
  await using dir = await scratchDir("lock-");
  const path = join(dir.path, ".lock");
  const dead = { stage: "split_batches", pid: 999_999, startedAt: "2026-01-01T00:00:00.000Z" };
  await Deno.writeTextFile(path, JSON.stringify(dead));
  await using lock = await acquireLock(path, options);
  assert.deepEqual(lock.tookOver, dead);
  const now = JSON.parse(await Deno.readTextFile(path));
  assert.equal(now.pid, Deno.pid);
  assert.equal(now.stage, "ingest");
});

Deno.test("acquireLock() in another process: refused while it holds the lock, taken when it exits", async () => {
  await using dir = await scratchDir("lock-");
  const path = join(dir.path, ".lock");
  const holder = new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `const f = await Deno.open(${JSON.stringify(path)}, { read: true, write: true, create: true });
       await f.lock(true);
       await f.write(new TextEncoder().encode(JSON.stringify({ stage: "ingest", pid: Deno.pid, startedAt: new Date().toISOString() })));
       console.log("locked");
       await new Promise((r) => setTimeout(r, 60_000));`,
    ],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = holder.stdout.pipeThrough(new TextDecoderStream()).getReader();
  assert.match((await reader.read()).value ?? "", /locked/);
  const refused = await acquireLock(path, options).then(() => undefined, (e: unknown) => e);
  assert.ok(refused instanceof LockBusyError, String(refused));
  assert.equal(refused.holder?.pid, holder.pid);
  // A SIGKILL leaves the file and its content, but the kernel lock goes with the process.
  holder.kill("SIGKILL");
  await holder.status;
  await reader.cancel();
  await using lock = await acquireLock(path, options);
  assert.equal(lock.tookOver?.pid, holder.pid);
});

Deno.test("acquireLock() waits for a busy lock when asked, and refuses a symbolic link", async () => {
  await using dir = await scratchDir("lock-");
  const path = join(dir.path, ".lock");
  const first = await acquireLock(path, options);
  setTimeout(() => void first.release(), 300);
  await using second = await acquireLock(path, { ...options, waitMs: 10_000 });
  assert.equal(second.tookOver, undefined);

  const link = join(dir.path, "link.lock");
  const ln = await new Deno.Command("ln", { args: ["-s", "/etc/hostname", link] }).output();
  assert.equal(ln.code, 0);
  await assert.rejects(
    acquireLock(link, options),
    (error: Error) =>
      error.message.startsWith(`${link} is a symbolic link; a stage never writes through a link`),
  );
});

Deno.test("lockOutputs() removes the temporary files a killed run left, and only those of its outputs", async () => {
  await using dir = await scratchDir("lock-");
  const out = join(dir.path, "processed");
  await Deno.mkdir(out);
  for (const name of ["a.tsv.123-0badcafe.partial", "a.tsv.partial", "b.tsv.77-00000001.partial", "a.tsv"]) {
    await Deno.writeTextFile(join(out, name), "x");
  }
  const messages: string[] = [];
  const log = { info: (m: string) => messages.push(m), warn: (m: string) => messages.push(m) };
  await using _lock = await lockOutputs(out, {
    stage: "preprocess",
    lockName: "a.tsv.lock",
    outputs: ["a.tsv"],
    log,
  });
  const left = (await Array.fromAsync(Deno.readDir(out))).map((e) => e.name).sort();
  assert.deepEqual(left, ["a.tsv", "a.tsv.lock", "b.tsv.77-00000001.partial"]);
  assert.match(messages.join("\n"), /removed 2 temporary file\(s\) left by an interrupted run/);
});

Deno.test("describeHolder() names stage, pid, host and start", () => {
  assert.equal(describeHolder(undefined), "another run");
  assert.match(
    describeHolder({ stage: "bench", pid: 7, host: "box", startedAt: "2026-01-01T00:00:00.000Z" }),
    /^bench \(pid 7 on box, started 2026-01-01T00:00:00.000Z, \d+ s ago\)$/,
  );
});

Deno.test("acquireLock() holds across pid namespaces: a holder that is pid 1 in its own (a container) still blocks", async (t) => {
  await using dir = await scratchDir("lock-");
  const path = join(dir.path, ".lock");
  let holder: Deno.ChildProcess;
  try {
    holder = new Deno.Command("unshare", {
      args: [
        "--pid",
        "--fork",
        "--kill-child",
        Deno.execPath(),
        "eval",
        `const f = await Deno.open(${JSON.stringify(path)}, { read: true, write: true, create: true });
         await f.lock(true);
         await f.write(new TextEncoder().encode(JSON.stringify({ stage: "ingest", pid: Deno.pid, startedAt: new Date().toISOString() })));
         console.log("locked as pid " + Deno.pid);
         await new Promise((r) => setTimeout(r, 60_000));`,
      ],
      stdout: "piped",
      stderr: "null",
    }).spawn();
  } catch (error) {
    console.warn(`lock_test.ts: skipped: unshare is not available here (${(error as Error).message})`);
    return;
  }
  const reader = holder.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const first = (await reader.read()).value ?? "";
  if (!first.includes("locked")) {
    // Not root (no new pid namespace): nothing was locked, nothing to test here.
    console.warn("lock_test.ts: skipped: creating a pid namespace needs root (CI runs as root)");
    await holder.status;
    await reader.cancel();
    return;
  }
  await t.step("the holder sees itself as pid 1, and its lock still refuses this process", async () => {
    assert.match(first, /locked as pid 1\b/);
    const refused = await acquireLock(path, options).then(() => undefined, (e: unknown) => e);
    assert.ok(refused instanceof LockBusyError, String(refused));
    assert.equal(
      refused.holder?.pid,
      1,
      "the pid in the file is the namespace's, only used to name the holder",
    );
  });
  holder.kill("SIGKILL");
  await holder.status;
  await reader.cancel();
  // --kill-child: the namespace's pid 1 is killed once unshare is; the kernel then drops its lock.
  await using lock = await acquireLock(path, { ...options, waitMs: 10_000 });
  assert.equal(lock.tookOver?.pid, 1);
});
