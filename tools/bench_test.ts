import assert from "node:assert/strict";
import { join } from "node:path";
import { createRandom } from "../lib/data/sample_data.ts";
import { failureReason, type MeasuredRun, taskArgs } from "./_bench_process.ts";
import {
  accuracyMargin,
  type DatasetReport,
  DOCS_BEGIN,
  DOCS_END,
  FASTTEXT_PEER,
  formatRatio,
  formatSeconds,
  judgeTargets,
  LINEAR_MODEL,
  marginTable,
  markdownTable,
  modelTable,
  parseSizes,
  parseTimeOutput,
  quantile,
  REAL_TEXT_STAGE,
  renderRun,
  type RunInfo,
  shuffleSplit,
  SKLEARN_FOREST,
  spliceDocs,
  stageTable,
  testRowsFor,
  TRAIN_PHASE_PREFIX,
} from "./_bench_report.ts";
import { createProjectRoot, REPO_ROOT, runTask } from "../scripts/_testing.ts";
import { formatBytes } from "../lib/core/format.ts";

Deno.test("parseTimeOutput() reads wall, CPU and peak RSS from GNU time's last line", () => {
  assert.deepEqual(parseTimeOutput("12.34 20.10 0.50 204800\n"), {
    seconds: 12.34,
    cpuSeconds: 20.6,
    maxRssBytes: 204800 * 1024,
  });
  assert.deepEqual(parseTimeOutput("Command exited with non-zero status 1\n0.50 0.41 0.07 51200\n"), {
    seconds: 0.5,
    cpuSeconds: 0.48,
    maxRssBytes: 51200 * 1024,
  });
  assert.equal(parseTimeOutput("Command terminated by signal 9\n"), null);
  assert.equal(parseTimeOutput("12.34 204800\n"), null); // another format
  assert.equal(parseTimeOutput(""), null);
});

Deno.test("parseSizes() accepts k/m suffixes, sorts and de-duplicates", () => {
  assert.deepEqual(parseSizes("1m, 10000,100k,10_000"), [10_000, 100_000, 1_000_000]);
  assert.throws(() => parseSizes("10x"), { name: "UsageError", message: /--sizes expects integers/ });
  assert.throws(() => parseSizes("50"), { name: "UsageError", message: /at least 100/ });
  assert.throws(() => parseSizes(" , "), { name: "UsageError" });
});

Deno.test("testRowsFor() keeps the dataset's 9:1 ratio within [1,000, 400,000]", () => {
  assert.equal(testRowsFor(3_600_000), 400_000);
  assert.equal(testRowsFor(1_000_000), 111_111);
  assert.equal(testRowsFor(2_000), 1_000);
  assert.equal(testRowsFor(10_000_000), 400_000);
});

Deno.test("quantile() uses the nearest rank", () => {
  const sorted = Float64Array.from({ length: 100 }, (_, i) => i + 1);
  assert.equal(quantile(sorted, 0.5), 50);
  assert.equal(quantile(sorted, 0.99), 99);
  assert.equal(quantile(sorted, 1), 100);
  assert.ok(Number.isNaN(quantile([], 0.5)));
});

Deno.test("format helpers pick units and precision by size", () => {
  assert.equal(formatSeconds(0.4236), "0.42 s");
  assert.equal(formatSeconds(42.37), "42.4 s");
  assert.equal(formatSeconds(1234), "1,234 s (20.6 min)");
  assert.equal(formatBytes(183_400_000), "183 MB");
  assert.equal(formatBytes(2_414_000_000), "2.4 GB");
  assert.equal(formatBytes(null), "–");
  assert.equal(formatRatio(30, 3), "10.0×");
  assert.equal(formatRatio(0.91, 0.92), "0.99×");
  assert.equal(formatRatio(undefined, 1), "–");
});

Deno.test("markdownTable() aligns columns and escapes pipes", () => {
  assert.equal(
    markdownTable(["stage", "s"], [["a|b", "1.2"], ["c"]], ["l", "r"]),
    "| stage | s |\n|---|---:|\n| a\\|b | 1.2 |\n| c |  |\n",
  );
});

Deno.test("stageTable() shows rates for finished stages and the reason for failed ones", () => {
  const table = stageTable([
    {
      stage: "split_batches",
      reviews: 1_000_000,
      bytes: 450e6,
      seconds: 2,
      cpuSeconds: 3.9,
      peakRssBytes: 80e6,
      status: "ok",
    },
    {
      stage: "train",
      reviews: 1_000,
      seconds: 9,
      peakRssBytes: null,
      status: "timeout",
      note: "over its 9 s budget",
    },
  ]);
  assert.match(
    table,
    /\| split_batches \| 1,000,000 \| 500,000 \| 225 \| 2\.00 s \| 1\.95 \| 80 MB \| {2}\|/,
  );
  assert.match(
    table,
    /\| train \| 1,000 \| – \| – \| 9\.00 s \| – \| – \| timed out: over its 9 s budget \|/,
  );
});

Deno.test("accuracyMargin() is the 95% normal interval of a proportion", () => {
  assert.equal(accuracyMargin(0.5, 10_000).toFixed(4), "0.0098");
  assert.ok(Number.isNaN(accuracyMargin(0.9, 0)));
});

Deno.test("modelTable() gives each peer's ratios to ours and marks skipped peers", () => {
  const table = modelTable([
    {
      model: "ours",
      ours: true,
      status: "ok",
      accuracy: 0.9,
      f1: 0.9,
      rocAuc: 0.95,
      trainSeconds: 2,
      testRows: 10_000,
    },
    { model: "peer", ours: false, status: "ok", accuracy: 0.9, f1: 0.8, rocAuc: 0.95, trainSeconds: 20 },
    { model: "slow", ours: false, status: "skipped", note: "over budget" },
  ]);
  assert.match(table, /\| peer \|.*\| 1\.00× \/ 0\.89× \/ 1\.00× \/ 10\.0× \|/);
  assert.match(table, /\| ours \| – \| 0\.9000 ± 0\.0059 \|/);
  assert.match(table, /\| slow \| – \| – \| – \| – \| – \| – \| – \| skipped: over budget \|/);
});

function report(rows: number, overrides: Partial<DatasetReport> = {}): DatasetReport {
  return {
    label: `generated ${rows}`,
    kind: "generated",
    trainRows: rows,
    testRows: testRowsFor(rows),
    stages: [
      {
        stage: "split_batches",
        reviews: rows,
        bytes: rows * 450,
        seconds: rows / 400_000,
        peakRssBytes: 90e6,
        status: "ok",
      },
      { stage: "preprocess_batch", reviews: rows, seconds: rows / 45_000, peakRssBytes: 150e6, status: "ok" },
      { stage: "train", reviews: rows, seconds: rows / 5_000, peakRssBytes: 2e9, status: "ok" },
    ],
    models: [
      { model: "ours", ours: true, status: "ok", accuracy: 0.91, trainSeconds: rows / 10_000 },
      { model: SKLEARN_FOREST, ours: false, status: "ok", accuracy: 0.90, trainSeconds: rows / 500 },
    ],
    evaluateRate: 20_000,
    predict: { calls: 10_000, medianMs: 0.05, p99Ms: 0.4, meanMs: 0.07, loadSeconds: 0.2 },
    ...overrides,
  };
}

Deno.test("judgeTargets() passes targets met and says which were not measured", () => {
  const verdicts = judgeTargets([
    report(100_000, {
      workers: { rows: 100_000, workers: 2, oneWorkerFitSeconds: 19, fitSeconds: 10, identical: true },
    }),
    report(1_000_000),
  ]);
  const byTarget = (text: RegExp) => verdicts.find((v) => text.test(v.target))!;
  assert.equal(byTarget(/^forest accuracy/).verdict, "met");
  assert.equal(byTarget(/^training time/).verdict, "met"); // 0.05× at both sizes
  assert.equal(byTarget(/^two workers/).verdict, "met");
  assert.equal(byTarget(/^100-tree forest/).verdict, "met"); // 200 s
  assert.equal(byTarget(/^full 3\.6M/).verdict, "not measured");
  assert.equal(byTarget(/^split_batches/).verdict, "met"); // 180 MB/s
  assert.equal(byTarget(/^preprocessing/).verdict, "met");
  assert.equal(byTarget(/^predict/).verdict, "met");
  assert.equal(byTarget(/^evaluate/).verdict, "met"); // 20 s for 400k
  assert.match(byTarget(/^evaluate/).measured, /20\.0 s for 400k \(extrapolated\)/);
});

/** A real-reviews report with the linear model, fastText and NB-SVM, and margins over both. */
function realWithMargins(
  nbsvm: { value: number; low: number; high: number },
  linearSeconds = 2,
): DatasetReport {
  const real = report(15_000, { kind: "real", label: "real reviews" });
  real.models.push(
    { model: LINEAR_MODEL, ours: true, status: "ok", accuracy: 0.9, trainSeconds: linearSeconds },
    { model: FASTTEXT_PEER, ours: false, status: "ok", accuracy: 0.86, trainSeconds: 5 },
    { model: "NB-SVM", ours: false, status: "ok", accuracy: 0.88, trainSeconds: 3 },
  );
  real.margins = [
    { peer: FASTTEXT_PEER, margin: { value: 0.04, low: 0.03, high: 0.05 } },
    { peer: "NB-SVM", margin: nbsvm },
  ];
  return real;
}

Deno.test("judgeTargets() judges the default model's margin over the best peer and its time against fastText", () => {
  const target = (reports: DatasetReport[]) =>
    judgeTargets(reports).find((v) => v.target.startsWith("default model ≥ 1 accuracy point"))!;
  const met = target([realWithMargins({ value: 0.015, low: 0.008, high: 0.022 })]);
  assert.equal(met.verdict, "met");
  assert.match(
    met.measured,
    /\+1\.50 \(\+0\.80 to \+2\.20\) points over NB-SVM; train time 0\.40× fastText's/,
  );
  // Ahead, but by less than a point, or by a point that could be noise, or slower than fastText: missed.
  assert.equal(target([realWithMargins({ value: 0.008, low: 0.002, high: 0.014 })]).verdict, "missed");
  assert.equal(target([realWithMargins({ value: 0.012, low: -0.001, high: 0.025 })]).verdict, "missed");
  assert.equal(target([realWithMargins({ value: 0.015, low: 0.008, high: 0.022 }, 6)]).verdict, "missed");
  assert.equal(target([report(100_000)]).verdict, "not measured");
});

Deno.test("marginTable() lists the margins from the best peer down, with time ratios", () => {
  const table = marginTable(realWithMargins({ value: 0.015, low: 0.008, high: 0.022 }));
  const lines = table.trim().split("\n");
  assert.match(lines[2]!, /^\| NB-SVM \| \+1\.50 \(\+0\.80 to \+2\.20\) \| 1\.50× \|$/);
  assert.match(
    lines[3]!,
    /^\| fastText supervised \(-wordNgrams 2\) \| \+4\.00 \(\+3\.00 to \+5\.00\) \| 2\.50× \|$/,
  );
});

Deno.test("judgeTargets() also gives the time ratio without our vocabulary pass", () => {
  const real = report(15_000, { kind: "real", label: "real reviews" });
  real.models[0]!.trainSeconds = 2.0;
  real.models[1]!.trainSeconds = 8.9;
  real.stages.push({
    stage: TRAIN_PHASE_PREFIX + "vocabulary",
    reviews: 15_000,
    seconds: 0.48,
    peakRssBytes: null,
    status: "ok",
  });
  const time = judgeTargets([real]).find((v) => v.target.startsWith("training time"))!;
  assert.equal(time.verdict, "missed"); // 0.225× > 0.2×: the strict ratio decides
  assert.match(time.measured, /real reviews: 0\.225× \(limit 0\.2×; 0\.171× without our vocabulary pass/);
});

Deno.test("judgeTargets() judges preprocessing on real text at scale too", () => {
  const real = report(15_000, { kind: "real", label: "real reviews" });
  real.stages.push({
    stage: REAL_TEXT_STAGE,
    reviews: 375_000,
    seconds: 10,
    peakRssBytes: 190e6,
    status: "ok",
  });
  const verdicts = judgeTargets([real, report(1_000_000)]);
  const preprocess = verdicts.find((v) => v.target.startsWith("preprocessing"))!;
  assert.equal(preprocess.verdict, "missed"); // 37,500 reviews/s on real text
  assert.match(preprocess.measured, /real text: 37,500 reviews\/s, peak RSS 190 MB at 375,000 reviews/);
});

Deno.test("judgeTargets() misses on different forests, slow workers, and memory growth", () => {
  const big = report(1_000_000);
  big.stages[0]!.peakRssBytes = 400e6; // split_batches grows with the input
  const verdicts = judgeTargets([
    report(100_000, {
      workers: { rows: 100_000, workers: 2, oneWorkerFitSeconds: 19, fitSeconds: 10, identical: false },
    }),
    big,
  ]);
  assert.equal(verdicts.find((v) => v.target.startsWith("two workers"))!.verdict, "missed");
  assert.equal(verdicts.find((v) => v.target.startsWith("split_batches"))!.verdict, "missed");
});

Deno.test("spliceDocs() replaces only the generated block and keeps other sections", () => {
  const skeleton = `# Benchmarks\n\n${DOCS_BEGIN}\n${DOCS_END}\n`;
  const existing =
    `# Benchmarks\n\nMethod.\n\n${DOCS_BEGIN}\nold table\n${DOCS_END}\n\n## HTTP API load test\n\nkept\n`;
  const updated = spliceDocs(existing, "new table\n", skeleton);
  assert.equal(
    updated,
    `# Benchmarks\n\nMethod.\n\n${DOCS_BEGIN}\nnew table\n${DOCS_END}\n\n## HTTP API load test\n\nkept\n`,
  );
  assert.equal(spliceDocs(undefined, "t", skeleton), `# Benchmarks\n\n${DOCS_BEGIN}\nt\n${DOCS_END}\n`);
  assert.equal(
    spliceDocs("## HTTP API load test\n", "t", skeleton),
    `## HTTP API load test\n\n${DOCS_BEGIN}\nt\n${DOCS_END}\n`,
  );
  assert.throws(() => spliceDocs(`${DOCS_END}\n${DOCS_BEGIN}\n`, "t", skeleton), /out of order/);
});

Deno.test("shuffleSplit() is deterministic, keeps every line once and holds out the share", () => {
  const lines = Array.from({ length: 1000 }, (_, i) => `line ${i}`);
  const a = shuffleSplit(lines, 42, 0.2, createRandom);
  const b = shuffleSplit(lines, 42, 0.2, createRandom);
  assert.deepEqual(a, b);
  assert.equal(a.test.length, 200);
  assert.deepEqual([...a.train, ...a.test].sort(), [...lines].sort());
  assert.notDeepEqual(a.train.slice(0, 10), lines.slice(0, 10));
  assert.notDeepEqual(shuffleSplit(lines, 7, 0.2, createRandom).test, a.test);
  assert.throws(() => shuffleSplit(lines, 42, 1, createRandom), RangeError);
});

Deno.test("renderRun() marks a run under load and lists every data set", () => {
  const info: RunInfo = {
    command: "deno task bench --sizes 100000",
    date: "2025-01-01 12:00 UTC",
    cpuModel: "Test CPU",
    cores: 2,
    memoryBytes: 24e9,
    denoVersion: "2.9.6",
    loadStart: 7.9,
    loadEnd: 6.1,
    rssMethod: "GNU time",
    trees: 100,
    workers: 2,
    peersMax: 200_000,
    fastPeersMax: 1_000_000,
  };
  const text = renderRun(info, [report(100_000)]);
  assert.match(text, /Measured under load/);
  assert.match(text, /\| command \| `deno task bench --sizes 100000` \|/);
  assert.match(text, /#### generated 100000: 100,000 training, 11,111 test reviews/);
  const workers = renderRun(info, [
    report(100_000, {
      workers: {
        rows: 100_000,
        workers: 2,
        oneWorkerFitSeconds: 13.6,
        fitSeconds: 7.3,
        identical: true,
        oneWorkerCores: 1.01,
        cores: 1.79,
      },
    }),
  ]);
  assert.match(
    workers,
    /fit with 1 worker 13\.6 s, with 2 7\.30 s \(1\.86× faster\); the two forests are identical/,
  );
  assert.match(workers, /kept 1\.01 and 1\.79 cores busy/);
  assert.doesNotMatch(renderRun({ ...info, loadStart: 0.3, loadEnd: 1.2 }, []), /under load/);
  assert.match(
    renderRun(
      { ...info, parallelism: { alu: 1.96, memory: 1.12 }, parallelismEnd: { alu: 1.2, memory: 1 } },
      [],
    ),
    /\| two threads vs one \| 1\.96× for arithmetic, 1\.12× for random memory reads at the start, 1\.20× for arithmetic, 1\.00× for random memory reads at the end/,
  );
});

Deno.test("taskArgs() drops the optional $VARIABLE grants and the leading deno", () => {
  assert.deepEqual(
    taskArgs({ train: { command: "deno run -q -P=train $MLFLOW_ALLOW_NET scripts/train.ts" } }, "train"),
    ["run", "-q", "-P=train", "scripts/train.ts"],
  );
  assert.throws(() => taskArgs({}, "nope"), /no task "nope"/);
  assert.throws(() => taskArgs({ x: "make x" }, "x"), /does not start with deno/);
});

Deno.test("failureReason() prefers the child's error line and names a timeout", () => {
  const run: MeasuredRun = {
    code: 1,
    timedOut: false,
    stdout: "",
    stderrTail: "[train] fit\nerror: data/processed/train_batch_0.tsv not found; run preprocess_batch\n",
    seconds: 1,
    peakRssBytes: null,
    cpuSeconds: null,
  };
  assert.equal(
    failureReason(run, 60),
    "error: data/processed/train_batch_0.tsv not found; run preprocess_batch (exit code 1)",
  );
  assert.equal(failureReason({ ...run, timedOut: true }, 60), "over its 60 s budget");
});

Deno.test("deno.json runs the bench and its helper with their own permission sets, never -A", async () => {
  const config = JSON.parse(await Deno.readTextFile(join(REPO_ROOT, "deno.json")));
  assert.equal(config.tasks.bench.command, "deno run -q -P=bench tools/bench.ts");
  assert.deepEqual(config.permissions.bench.run, ["/usr/bin/timeout"]);
  assert.deepEqual(config.permissions.bench_model.write, ["data/bench"]);
});

Deno.test("bench --help prints the usage, and a bad flag exits 2 before any work", async () => {
  await using root = await createProjectRoot();
  const help = await runTask(root, "bench", ["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: deno task bench/);
  assert.match(help.stdout, /--full/);
  const bad = await runTask(root, "bench", ["--sizes", "10x"]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^error: --sizes expects integers like 10000 or 100k, got "10x"\n/);
  assert.equal(bad.stdout, "");
});

Deno.test("a second bench on the same output folder refuses, naming the one running", async () => {
  await using root = await createProjectRoot();
  const out = root.resolve(".tmp-bench");
  await Deno.mkdir(out, { recursive: true });
  // The first bench, as far as the lock goes: a process holding the folder's lock and naming itself in it.
  const holder = new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `const f = await Deno.open(${
        JSON.stringify(join(out, ".lock"))
      }, { read: true, write: true, create: true });
       await f.lock(true);
       await f.write(new TextEncoder().encode(JSON.stringify({ stage: "bench", pid: Deno.pid, startedAt: new Date().toISOString() })));
       console.log("locked");
       await new Promise((r) => setTimeout(r, 60_000));`,
    ],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = holder.stdout.pipeThrough(new TextDecoderStream()).getReader();
  try {
    assert.match((await reader.read()).value ?? "", /locked/);
    const second = await runTask(root, "bench", ["--from-report", "--no-docs"]);
    assert.equal(second.code, 1, second.stderr);
    assert.match(
      second.stderr,
      new RegExp(
        `^error: \\S+\\.tmp-bench is in use by bench \\(pid ${holder.pid}, started \\S+, \\d+ s ago\\); wait`,
        "m",
      ),
    );
  } finally {
    holder.kill("SIGKILL");
    await holder.status;
    await reader.cancel();
  }
});
