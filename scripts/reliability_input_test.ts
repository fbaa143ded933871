/**
 * Reliability, bad input: every kind of damaged CSV line through the real `ingest` and `split_batches`
 * processes (each line ends up either in the output or in `rejects.csv` with its line number and reason),
 * files that are not CSV at all, property-based fuzzing of the reading stages, bad command-line values, and
 * damaged model artifacts.
 *
 * The MLflow part (a tampered model registered on the real test server) needs `make mlflow-test`; the rest
 * runs without any server. See docs/reliability.md for the whole table.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import fc from "fast-check";
import { type BatchManifest, splitBatches } from "../lib/data/batches.ts";
import { formatReviewLine, parseCsvLine } from "../lib/data/csv.ts";
import { ingest } from "../lib/data/ingest.ts";
import { createLogger } from "../lib/core/log.ts";
import { MlflowClient } from "../lib/tracking/mlflow_client.ts";
import { buildModelFiles, type EngineCodec, loadModel } from "../lib/models/artifact.ts";
import { MODEL_JSON_SHA256_TAG } from "../lib/tracking/model_store.ts";
import type { Polarity, Review } from "../lib/data/review.ts";
import { tokenizeReview } from "../lib/features/tokenizer.ts";
import { VocabularyBuilder } from "../lib/features/vectorizer.ts";
import { createProjectRoot, errorLines, runTask, type StageRun } from "./_testing.ts";

/** Every Kaggle variable set explicitly, so a developer's own credentials never reach a test. */
const NO_KAGGLE = { KAGGLE_API_TOKEN: "", KAGGLE_USERNAME: "", KAGGLE_KEY: "", KAGGLE_API_BASE_URL: "" };
/** A hung stage fails its test after this long instead of stalling the suite. */
const STAGE_TIMEOUT_MS = 60_000;
const encoder = new TextEncoder();
const decoder = new TextDecoder();
const quiet = createLogger({ sink: () => {} });

/** Exit 1 or 2 with exactly one `error:` line and no stack trace: the contract of an expected failure. */
function assertOneLineError(run: StageRun, code: 1 | 2, message: RegExp): void {
  assert.equal(run.code, code, `exit ${run.code}, expected ${code}:\n${run.stderr}`);
  const errors = errorLines(run);
  assert.equal(errors.length, 1, run.stderr);
  assert.match(errors[0]!, message);
  assert.doesNotMatch(run.stderr, /\n\s+at /, "no stack trace");
}

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

function concat(...parts: (string | Uint8Array)[]): Uint8Array {
  const chunks = parts.map((part) => typeof part === "string" ? encoder.encode(part) : part);
  const out = new Uint8Array(chunks.reduce((sum, chunk) => sum + chunk.length, 0));
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}

/** Lines of a report file, parsed as the one-record-per-line CSV the stages write (header dropped). */
async function reportRows(path: string): Promise<string[][]> {
  const text = await Deno.readTextFile(path);
  return text.split("\n").slice(1, -1).map((line) => {
    const fields = parseCsvLine(line);
    assert.ok(Array.isArray(fields), `unparseable report line ${JSON.stringify(line.slice(0, 80))}`);
    return fields;
  });
}

async function listDir(path: string): Promise<string[]> {
  try {
    return (await Array.fromAsync(Deno.readDir(path))).map((entry) => entry.name).sort();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return [];
    throw error;
  }
}

// ---------------------------------------------------------------------------------------------------
// One file holding every kind of damaged line

const TEN_MB = 10 * 1024 * 1024;

/**
 * The lines of a damaged train.csv, with what must happen to each: `accept` (with the canonical row
 * ingest writes) or the reason it is rejected with.
 */
const DIRTY_LINES: { bytes: Uint8Array; accept?: string; reason?: RegExp; what: string }[] = [
  {
    what: "a UTF-8 BOM before the first row",
    bytes: concat(new Uint8Array([0xef, 0xbb, 0xbf]), '"2","Great","Works well"\n'),
    accept: '"2","Great","Works well"',
  },
  {
    what: "a CRLF line end",
    bytes: concat('"1","Bad","Broke, sadly"\r\n'),
    accept: '"1","Bad","Broke, sadly"',
  },
  {
    what: "two fields",
    bytes: concat('"2","only two"\n'),
    reason: /^wrong field count \(expected 3, got 2\)$/,
  },
  {
    what: "four fields",
    bytes: concat('"2","a","b","c"\n'),
    reason: /^wrong field count \(expected 3, got 4\)$/,
  },
  { what: "unbalanced quotes", bytes: concat('"1","never closed,text\n'), reason: /^unbalanced quotes$/ },
  {
    what: "text after a closing quote",
    bytes: concat('"1","closed"early,"text"\n'),
    reason: /^unexpected character after closing quote$/,
  },
  { what: "label 3", bytes: concat('"3","Meh","ok"\n'), reason: /^label not 1 or 2 \(got "3"\)$/ },
  { what: "label 0, unquoted", bytes: concat("0,zero,label\n"), reason: /^label not 1 or 2 \(got "0"\)$/ },
  { what: "an empty title and text", bytes: concat('"2","",""\n'), reason: /^empty title and text$/ },
  {
    what: "a title and text of blanks and \\n escapes",
    bytes: concat('"1"," ","\\n \\n"\n'),
    reason: /^empty title and text$/,
  },
  {
    what: "a 10 MB field",
    bytes: concat('"2","Huge","', "a".repeat(TEN_MB), '"\n'),
    reason: /^line longer than 1048576 bytes \(got 10485\d\d\d; raw keeps the first 1024\)$/,
  },
  {
    what: "invalid UTF-8",
    bytes: concat('"2","Caf', new Uint8Array([0xc3, 0x28]), '","x"\n'),
    reason: /^invalid UTF-8$/,
  },
  { what: "a NUL byte", bytes: concat('"1","nul\0byte","x"\n'), reason: /^NUL byte$/ },
  { what: "a blank line", bytes: concat("\n"), reason: /^empty line$/ },
  {
    what: "an unquoted row as Python's csv writes it",
    bytes: concat("2,Fine,Does the job\n"),
    accept: '"2","Fine","Does the job"',
  },
  {
    what: 'doubled quotes and a "\\n" escape',
    bytes: concat('"1","He said ""no""","Line one\\nLine two"\n'),
    accept: '"1","He said ""no""","Line one\\nLine two"',
  },
  {
    what: "a BOM in the middle of the file",
    bytes: concat(new Uint8Array([0xef, 0xbb, 0xbf]), '"2","mid","bom"\n'),
    reason: /^quote inside unquoted field$/,
  },
  {
    what: "a last row without a final newline",
    bytes: concat('"2","Last","No final newline"'),
    accept: '"2","Last","No final newline"',
  },
];

const DIRTY_CSV = concat(...DIRTY_LINES.map((line) => line.bytes));
const ACCEPTED = DIRTY_LINES.filter((line) => line.accept !== undefined);
const REJECTED = DIRTY_LINES.map((line, index) => ({ ...line, line: index + 1 })).filter((line) =>
  line.reason !== undefined
);

/** Checks one rejects report: exactly the damaged lines, each with its line number and reason. */
function assertRejects(rows: string[][], lineColumn: number, context: string): void {
  assert.deepEqual(rows.map((row) => Number(row[lineColumn])), REJECTED.map((line) => line.line), context);
  rows.forEach((row, i) => {
    const expected = REJECTED[i]!;
    assert.match(
      row[lineColumn + 1]!,
      expected.reason!,
      `${context}: line ${expected.line} (${expected.what})`,
    );
    // The raw text is kept, but never a 10 MB copy of it.
    assert.ok(row[lineColumn + 2]!.length <= 1100, `${context}: line ${expected.line} raw is capped`);
    // One rule in every stage's rejects file: a NUL byte is written as the two characters \0.
    assert.ok(
      !row[lineColumn + 2]!.includes("\0"),
      `${context}: line ${expected.line} raw holds no NUL byte`,
    );
    if (expected.what === "a NUL byte") assert.equal(row[lineColumn + 2], '"1","nul\\0byte","x"', context);
  });
}

Deno.test("ingest and split_batches account for every damaged line: read = accepted + rejected, rejects kept with line and reason", async (t) => {
  await using root = await createProjectRoot();
  const folder = root.resolve("data/external/dirty");
  await Deno.mkdir(folder, { recursive: true });
  await Deno.writeFile(`${folder}/train.csv`, DIRTY_CSV);
  await Deno.writeTextFile(`${folder}/test.csv`, '"1","Fine test","A test row"\n');

  await t.step("ingest", async () => {
    const run = await runTask(root, "ingest", ["--source", "data/external/dirty", "--json"], {
      env: NO_KAGGLE,
      timeoutMs: STAGE_TIMEOUT_MS,
    });
    assert.equal(run.code, 0, run.stderr);
    const { files, rejects } = JSON.parse(run.stdout);
    assert.deepEqual(
      [files.train.read, files.train.accepted, files.train.rejected],
      [DIRTY_LINES.length, ACCEPTED.length, REJECTED.length],
    );
    assert.equal(rejects, REJECTED.length);
    assert.match(
      run.stderr,
      new RegExp(`read ${DIRTY_LINES.length} = accepted ${ACCEPTED.length} \\+ rejected`),
    );
    const train = await Deno.readTextFile(root.resolve("data/raw/train.csv"));
    assert.deepEqual(train.split("\n").slice(0, -1), ACCEPTED.map((line) => line.accept));
    const rows = await reportRows(root.resolve("data/raw/rejects.csv"));
    assert.ok(rows.every((row) => row[0] === "train.csv"));
    assertRejects(rows, 1, "data/raw/rejects.csv");
  });

  await t.step("split_batches on the same damaged bytes as data/raw/train.csv", async () => {
    await Deno.writeFile(root.resolve("data/raw/train.csv"), DIRTY_CSV);
    const run = await runTask(root, "split_batches", ["--batch-size", "2", "--json"], {
      timeoutMs: STAGE_TIMEOUT_MS,
    });
    assert.equal(run.code, 0, run.stderr);
    const result = JSON.parse(run.stdout);
    assert.deepEqual([result.rows, result.rejected, result.batches], [ACCEPTED.length, REJECTED.length, 3]);
    const manifest: BatchManifest = JSON.parse(
      await Deno.readTextFile(root.resolve("data/batches/manifest.json")),
    );
    assert.equal(manifest.source.rows, manifest.rows + manifest.rejected);
    assert.equal(manifest.source.sha256, sha256(DIRTY_CSV));
    let batches = "";
    for (const batch of manifest.batches) {
      const bytes = await Deno.readFile(root.resolve("data/batches", batch.file));
      assert.equal(sha256(bytes), batch.sha256, `${batch.file} matches its manifest checksum`);
      batches += decoder.decode(bytes);
    }
    // Accepted lines are copied as they were (quoting kept), only the BOM and the CR are dropped.
    assert.deepEqual(batches.split("\n").slice(0, -1), [
      '"2","Great","Works well"',
      '"1","Bad","Broke, sadly"',
      "2,Fine,Does the job",
      '"1","He said ""no""","Line one\\nLine two"',
      '"2","Last","No final newline"',
    ]);
    assertRejects(await reportRows(root.resolve("data/batches/rejects.csv")), 0, "data/batches/rejects.csv");
  });
});

Deno.test("ingest and split_batches refuse a file that is not CSV at all, or an empty one, and change nothing", async (t) => {
  const cases: { name: string; bytes: Uint8Array; message: RegExp; splitMessage: RegExp }[] = [
    {
      name: "an HTML error page",
      bytes: encoder.encode("<!DOCTYPE html>\n<html><body>\n<h1>502 Bad Gateway</h1>\n</body></html>\n"),
      message:
        /none of the 4 lines of .*train\.csv is a valid review \(line 1: .*\); it must be the Kaggle format/,
      splitMessage:
        /^error: data\/raw\/train\.csv has no valid review rows: all \d+ lines were rejected \(e\.g\. .+\); check the file or run ingest again$/,
    },
    {
      name: "binary bytes (a PNG header and noise)",
      bytes: concat(
        new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13]),
        new Uint8Array(Array.from({ length: 3000 }, (_, i) => (i * 7919) % 256)),
      ),
      message: /none of the \d+ lines of .*train\.csv is a valid review/,
      splitMessage:
        /^error: data\/raw\/train\.csv has no valid review rows: all \d+ lines were rejected \(e\.g\. .+\); check the file or run ingest again$/,
    },
    {
      name: "CR-only line ends (classic Mac)",
      bytes: encoder.encode('"1","Bad","Broke"\r"2","Good","Works"\r"2","Fine","Does the job"\r'),
      message: new RegExp(
        "none of the 1 lines of .*train\\.csv is a valid review \\(line 1: bare CR inside the line: the file " +
          "has CR-only line ends; convert them to LF \\(e\\.g\\. tr '\\\\r' '\\\\n'\\)\\)",
      ),
      splitMessage: new RegExp(
        "^error: data/raw/train\\.csv has no valid review rows: all 1 lines were rejected \\(e\\.g\\. bare CR " +
          "inside the line: the file has CR-only line ends; convert them to LF\\); check the file",
      ),
    },
    {
      name: "an empty file",
      bytes: new Uint8Array(),
      message: /train\.csv is empty; it must hold reviews as polarity,title,text/,
      splitMessage: /^error: data\/raw\/train\.csv has no valid review rows: it is empty; check the file/,
    },
  ];
  for (const c of cases) {
    await t.step(c.name, async () => {
      await using root = await createProjectRoot();
      const folder = root.resolve("data/external/bad");
      await Deno.mkdir(folder, { recursive: true });
      await Deno.writeFile(`${folder}/train.csv`, c.bytes);
      await Deno.writeTextFile(`${folder}/test.csv`, '"1","Fine","A test row"\n');
      const run = await runTask(root, "ingest", ["--source", "data/external/bad"], {
        env: NO_KAGGLE,
        timeoutMs: STAGE_TIMEOUT_MS,
      });
      assertOneLineError(run, 1, c.message);
      assert.deepEqual(await listDir(root.resolve("data/raw")), [], "data/raw untouched, no .partial left");

      await Deno.mkdir(root.resolve("data/raw"), { recursive: true });
      await Deno.writeFile(root.resolve("data/raw/train.csv"), c.bytes);
      const split = await runTask(root, "split_batches", [], { timeoutMs: STAGE_TIMEOUT_MS });
      assertOneLineError(split, 1, c.splitMessage);
      assert.deepEqual(await listDir(root.resolve("data/batches")), [], "no batch, no manifest");
    });
  }
});

// ---------------------------------------------------------------------------------------------------
// Fuzzing

/** Pieces that make a well-formed review odd: quotes, separators, escapes, invisible and wide characters. */
const ODD_PIECES = [
  '"',
  '""',
  ",",
  ", ",
  "\n",
  "\r\n",
  "\r",
  "\\n",
  "\\",
  "\t",
  " ",
  "\u00a0",
  "\u200b",
  "\ufeff",
  "\u202e",
  "e\u0301",
  "😀",
  "👩‍👩‍👧",
  "中文",
  "ﬁ",
  "'",
  "`",
  "<b>",
  "&amp;",
];

const oddText = fc.array(
  fc.oneof(fc.constantFrom(...ODD_PIECES), fc.string({ unit: "grapheme", maxLength: 12 })),
  { maxLength: 12 },
).map((pieces) => pieces.join(""));

/** What a field reads back as: line breaks become the `\n` escape on write, every `\n` escape a newline on read. */
function roundTripped(value: string): string {
  return value.replace(/\r\n|\r|\n/g, "\\n").replaceAll("\\n", "\n");
}

const wellFormedReview = fc.record({
  polarity: fc.constantFrom<Polarity>(1, 2),
  title: oddText,
  // A letter keeps the row from being blank, which would be a (correct) reject, not a round trip.
  text: oddText.map((text) => text + "x"),
  crlf: fc.boolean(),
  unquotedLabel: fc.boolean(),
});

/** A line of random bytes (no LF, so it stays one line); it may or may not be a valid review. */
const garbageLine = fc.uint8Array({ maxLength: 120 }).map((bytes) => bytes.map((b) => b === 0x0a ? 0x20 : b));

type FuzzLine =
  | { kind: "review"; bytes: Uint8Array; expected: string }
  | { kind: "garbage"; bytes: Uint8Array };

const fuzzFile = fc.record({
  lines: fc.array(
    fc.oneof(
      {
        weight: 3,
        arbitrary: wellFormedReview.map((r): FuzzLine => {
          let line = formatReviewLine({ polarity: r.polarity, title: r.title, text: r.text }).slice(0, -1);
          if (r.unquotedLabel) line = line.replace(/^"([12])"/, "$1");
          const expected: Review = {
            polarity: r.polarity,
            title: roundTripped(r.title),
            text: roundTripped(r.text),
          };
          return {
            kind: "review",
            bytes: encoder.encode(line + (r.crlf ? "\r\n" : "\n")),
            expected: formatReviewLine(expected).slice(0, -1),
          };
        }),
      },
      {
        weight: 1,
        arbitrary: garbageLine.map((bytes): FuzzLine => ({ kind: "garbage", bytes: concat(bytes, "\n") })),
      },
    ),
    { minLength: 1, maxLength: 25 },
  ).filter((lines) => lines.some((line) => line.kind === "review")),
  bom: fc.boolean(),
  finalNewline: fc.boolean(),
});

function fuzzBytes(file: { lines: FuzzLine[]; bom: boolean; finalNewline: boolean }): Uint8Array {
  let bytes = concat(
    ...(file.bom ? [new Uint8Array([0xef, 0xbb, 0xbf])] : []),
    ...file.lines.map((l) => l.bytes),
  );
  const last = file.lines.at(-1)!.bytes;
  // Drop the last line end (LF, and a CR before it) so the last row ends the file; an empty last line
  // keeps it, since without its LF it would not be a line at all.
  const ending = last.at(-2) === 0x0d ? 2 : 1;
  if (!file.finalNewline && last.length > ending) bytes = bytes.subarray(0, bytes.length - ending);
  return bytes;
}

/** Physical lines as the reader counts them: LF-terminated, plus a last line without LF. */
function physicalLines(bytes: Uint8Array): number {
  let lines = 0;
  for (const byte of bytes) if (byte === 0x0a) lines++;
  return bytes.length > 0 && bytes[bytes.length - 1] !== 0x0a ? lines + 1 : lines;
}

/**
 * Checks ingest's output for one fuzzed input: every line is counted once, rejects name exactly the lines
 * that are not in train.csv, and every well-formed review comes out as the same review.
 */
async function checkIngested(rawDir: string, file: { lines: FuzzLine[] }, bytes: Uint8Array, counts: {
  read: number;
  accepted: number;
  rejected: number;
}) {
  assert.equal(counts.read, physicalLines(bytes));
  assert.equal(counts.read, counts.accepted + counts.rejected);
  const train = (await Deno.readTextFile(`${rawDir}/train.csv`)).split("\n").slice(0, -1);
  assert.equal(train.length, counts.accepted);
  const rejects = await reportRows(`${rawDir}/rejects.csv`);
  const rejectedLines = new Set(rejects.filter((r) => r[0] === "train.csv").map((r) => Number(r[1])));
  assert.equal(rejectedLines.size, counts.rejected);
  // Walk the input: each line is either the next output row or a listed reject.
  let next = 0;
  file.lines.forEach((line, index) => {
    const number = index + 1;
    if (line.kind === "review") {
      assert.ok(!rejectedLines.has(number), `well-formed line ${number} was rejected`);
      assert.equal(train[next++], line.expected, `line ${number} round-trips`);
    } else if (!rejectedLines.has(number)) {
      next++; // random bytes that happen to form a valid review
    }
  });
  assert.equal(next, train.length, "no output row without an input line");
}

Deno.test("ingest() and splitBatches() never throw, lose or invent a row on random and odd-but-valid CSV (property)", async () => {
  await using root = await createProjectRoot();
  let runIndex = 0;
  await fc.assert(
    fc.asyncProperty(fuzzFile, fc.integer({ min: 1, max: 4 }), async (file, batchSize) => {
      const dir = root.resolve(`fuzz-${runIndex++}`);
      await Deno.mkdir(`${dir}/external/src`, { recursive: true });
      const bytes = fuzzBytes(file);
      await Deno.writeFile(`${dir}/external/src/train.csv`, bytes);
      await Deno.writeTextFile(`${dir}/external/src/test.csv`, '"1","t","a test row"\n');
      const { manifest } = await ingest({
        source: { kind: "path", path: `${dir}/external/src` },
        rawDir: `${dir}/raw`,
        downloadsDir: `${dir}/downloads`,
        readableDirs: [`${dir}/external`],
        log: quiet,
        progressMode: "off",
      });
      await checkIngested(`${dir}/raw`, file, bytes, manifest.files.train);

      const split = await splitBatches({
        input: `${dir}/external/src/train.csv`,
        outputDir: `${dir}/batches`,
        batchSize,
      });
      assert.equal(split.rows, manifest.files.train.accepted);
      assert.equal(split.rows + split.rejected, physicalLines(bytes));
      const batchManifest: BatchManifest = JSON.parse(
        await Deno.readTextFile(`${dir}/batches/manifest.json`),
      );
      assert.equal(batchManifest.source.rows, split.rows + split.rejected);
      let rows = 0;
      for (const batch of batchManifest.batches) {
        const text = await Deno.readTextFile(`${dir}/batches/${batch.file}`);
        const lines = text.split("\n").slice(0, -1);
        assert.equal(lines.length, batch.rows);
        assert.ok(batch.rows <= batchSize);
        rows += lines.length;
      }
      assert.equal(rows, split.rows);
      assert.equal((await reportRows(`${dir}/batches/rejects.csv`)).length, split.rejected);
      await Deno.remove(dir, { recursive: true });
    }),
    { numRuns: 60 },
  );
});

Deno.test("ingest and split_batches processes never crash, hang or lose a row on fuzzed files (property)", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(
        fuzzFile.map((file) => ({ file, bytes: fuzzBytes(file) })),
        garbageLine.map((bytes) => ({ bytes })),
      ),
      async (input) => {
        await using root = await createProjectRoot();
        await Deno.mkdir(root.resolve("data/external/fuzz"), { recursive: true });
        await Deno.writeFile(root.resolve("data/external/fuzz/train.csv"), input.bytes);
        await Deno.writeTextFile(root.resolve("data/external/fuzz/test.csv"), '"2","t","a test row"\n');
        const run = await runTask(root, "ingest", ["--source", "data/external/fuzz", "--json"], {
          env: NO_KAGGLE,
          timeoutMs: STAGE_TIMEOUT_MS,
        });
        if (run.code === 0) {
          const { files } = JSON.parse(run.stdout);
          if ("file" in input) {
            await checkIngested(root.resolve("data/raw"), input.file, input.bytes, files.train);
          } else assert.equal(files.train.read, files.train.accepted + files.train.rejected);
        } else {
          // Only a file without a single valid review may fail, and then with one line and nothing written.
          assert.ok(!("file" in input), `ingest failed on a file with well-formed reviews:\n${run.stderr}`);
          assertOneLineError(run, 1, /is empty|none of the \d+ lines/);
          assert.deepEqual(await listDir(root.resolve("data/raw")), []);
        }

        await Deno.mkdir(root.resolve("data/raw"), { recursive: true });
        await Deno.writeFile(root.resolve("data/raw/train.csv"), input.bytes);
        const split = await runTask(root, "split_batches", ["--batch-size", "3", "--json"], {
          timeoutMs: STAGE_TIMEOUT_MS,
        });
        if (split.code === 0) {
          const result = JSON.parse(split.stdout);
          assert.equal(result.rows + result.rejected, physicalLines(input.bytes));
        } else {
          assert.ok(!("file" in input), `split_batches failed on well-formed reviews:\n${split.stderr}`);
          assertOneLineError(split, 1, /./);
        }
      },
    ),
    { numRuns: 6 },
  );
});

// ---------------------------------------------------------------------------------------------------
// Flags

Deno.test("stages refuse bad flag values with one line and the usage (exit 2) before any work", async (t) => {
  await using root = await createProjectRoot();
  // Data for train and evaluate, so that they get as far as their flag checks.
  for (
    const [task, args] of [
      ["ingest", ["--source", "sample", "--rows", "300", "--test-rows", "60"]],
      ["split_batches", []],
      ["preprocess_batch", ["0"]],
      ["preprocess_test", []],
    ] as const
  ) {
    const run = await runTask(root, task, [...args], { env: NO_KAGGLE, timeoutMs: STAGE_TIMEOUT_MS });
    assert.equal(run.code, 0, `${task}: ${run.stderr}`);
  }
  // Nothing listens on port 9: a stage that reached MLflow would fail with exit 1, not 2.
  const env = { MLFLOW_TRACKING_URI: "http://127.0.0.1:9", MLFLOW_ALLOW_NET: "--allow-net=127.0.0.1:9" };
  const cases: [string, string[], RegExp][] = [
    ["train", ["--batches", ""], /^error: --batches needs at least one batch number or all$/],
    ["train", ["--batches", ","], /^error: --batches needs at least one batch number or all$/],
    ["train", ["--batches"], /^error: Option '--batches <value>' argument missing/],
    ["train", ["--batches", "x"], /^error: --batches expects an integer, got "x"$/],
    ["train", ["--batches=-1"], /^error: --batches must be >= 0, got -1$/],
    [
      "train",
      ["--batches", "0", "--model-name", "../../etc"],
      /^error: --model-name "..\/..\/etc" must not contain "\/"/,
    ],
    ["train", ["--batches", "0", "--model-name", "a/b"], /must not contain "\/"/],
    ["evaluate", ["--model_version=-1"], /^error: --model_version expects a version number .*got "-1"$/],
    ["evaluate", ["--model_version", "-1"], /^error: --model_version expects a version number .*got "-1"$/],
    [
      "evaluate",
      ["--model_version", "abc"],
      /^error: --model_version expects a version number .*got "abc" \(for an alias, write @abc\)$/,
    ],
    [
      "evaluate",
      ["--model_version", "1.5"],
      /^error: --model_version expects a version number .*got "1\.5"$/,
    ],
    ["evaluate", ["--model_version", "0"], /versions start at 1, got "0"$/],
    [
      "evaluate",
      ["--model_version", "1", "--model-name", "..\\x"],
      /^error: --model-name .* must not contain/,
    ],
    ["predict", ["--title", "t", "--message", "m", "--model_version", "abc!"], /got "abc!"$/],
    [
      "predict",
      ["--title", "t", "--message", "m", "--model-name", "x:y"],
      /^error: --model-name "x:y" must not/,
    ],
    ["predict", ["--title", "", "--message", " "], /^error: --title and --message are both empty/],
    ["ingest", ["--source", ""], /^error: --source expects kaggle, sample, a path or a URL$/],
    [
      "ingest",
      ["--source", "ftp://example.com/x.zip"],
      /^error: --source supports http\(s\) URLs only, got ftp:\/\//,
    ],
  ];
  for (const [task, args, message] of cases) {
    await t.step(`${task} ${args.join(" ")}`, async () => {
      const run = await runTask(root, task, args, {
        env: { ...NO_KAGGLE, ...env },
        timeoutMs: STAGE_TIMEOUT_MS,
      });
      assertOneLineError(run, 2, message);
      assert.match(run.stderr, new RegExp(`Usage: deno task ${task}`));
    });
  }

  await t.step("train --batches 7 names the batches that exist (exit 1)", async () => {
    const run = await runTask(root, "train", ["--batches", "0", "7"], { env, timeoutMs: STAGE_TIMEOUT_MS });
    assertOneLineError(
      run,
      1,
      /^error: batch 7 is not preprocessed .*available: 0\); run "deno task preprocess_batch 7"/,
    );
  });
  await t.step("ingest --source pointing nowhere names it (exit 1)", async () => {
    const run = await runTask(root, "ingest", ["--source", "data/external/nothing.zip"], {
      env: NO_KAGGLE,
      timeoutMs: STAGE_TIMEOUT_MS,
    });
    assertOneLineError(run, 1, /^error: --source data\/external\/nothing\.zip does not exist/);
  });
});

// ---------------------------------------------------------------------------------------------------
// Model artifacts

/** A stand-in engine: the artifact checks are about files, not about forests. */
const TEST_CODEC: EngineCodec = {
  name: "test-engine",
  decode: (bytes) => ({ predictProba: () => bytes[0]! / 255 }),
};

function testModelFiles(): Map<string, Uint8Array> {
  const builder = new VocabularyBuilder({ minDf: 1 });
  builder.add(tokenizeReview({ title: "Great", text: "works great" }));
  builder.add(tokenizeReview({ title: "Awful", text: "broke at once" }));
  return buildModelFiles({
    engineName: "test-engine",
    engineBytes: new Uint8Array([200, 1, 2, 3, 4, 5, 6, 7]),
    vectorizer: builder.finish(),
    appVersion: "0.0.0-test",
  });
}

function editManifest(files: Map<string, Uint8Array>, edit: (manifest: Record<string, unknown>) => void) {
  const manifest = JSON.parse(decoder.decode(files.get("model.json")));
  edit(manifest);
  files.set("model.json", encoder.encode(JSON.stringify(manifest)));
}

Deno.test("loadModel() refuses a truncated, tampered, incomplete or unknown-version model with one line", async (t) => {
  const good = testModelFiles();
  assert.equal(loadModel(good, [TEST_CODEC]).predict({ title: "Great", text: "x" }).label, "positive");
  const cases: [string, (files: Map<string, Uint8Array>) => void, RegExp][] = [
    [
      "engine.bin cut short",
      (f) => f.set("engine.bin", f.get("engine.bin")!.slice(0, -1)),
      /engine\.bin fails its checksum \(truncated or tampered\)/,
    ],
    ["one bit of engine.bin flipped", (f) => {
      const bytes = f.get("engine.bin")!.slice();
      bytes[3]! ^= 1;
      f.set("engine.bin", bytes);
    }, /engine\.bin fails its checksum/],
    [
      "vocabulary.json edited",
      (f) => f.set("vocabulary.json", encoder.encode('{"tampered":true}')),
      /vocabulary\.json fails its checksum/,
    ],
    ["engine.bin missing", (f) => f.delete("engine.bin"), /model artifact is missing engine\.bin/],
    [
      "model.json cut short",
      (f) => f.set("model.json", f.get("model.json")!.slice(0, 40)),
      /model\.json is not valid JSON \(truncated or tampered\)/,
    ],
    ["model.json missing", (f) => f.delete("model.json"), /has no model\.json/],
    [
      "format version 99",
      (f) => editManifest(f, (m) => m.format_version = 99),
      /model format version 99 is not supported by this build \(supports 1\)/,
    ],
    ["another format", (f) => editManifest(f, (m) => m.format = "pickle"), /has format "pickle"/],
    [
      "an unknown engine",
      (f) => editManifest(f, (m) => m.engine = "gpt"),
      /engine "gpt" is not known to this build/,
    ],
    [
      "another tokenizer",
      (f) => editManifest(f, (m) => (m.tokenizer as { version: string }).version = "0-old"),
      /trained with tokenizer 0-old/,
    ],
  ];
  for (const [name, damage, message] of cases) {
    await t.step(name, () => {
      const files = new Map(good);
      damage(files);
      assert.throws(() => loadModel(files, [TEST_CODEC]), (error: unknown) => {
        assert.ok(error instanceof Error && error.name === "PipelineError", String(error));
        assert.match(error.message, message);
        assert.ok(!error.message.includes("\n"), "one line");
        return true;
      });
    });
  }
});

const trackingUri = Deno.env.get("MLFLOW_TRACKING_URI") ?? "http://127.0.0.1:5501";

Deno.test("predict and evaluate refuse a registered version whose artifact was damaged after registration", async (t) => {
  const client = new MlflowClient({ trackingUri, retry: { retries: 1, baseDelayMs: 50 } });
  try {
    await client.health();
  } catch (error) {
    throw new Error(`no MLflow server at ${trackingUri}; start one with "make mlflow-test" (${error})`);
  }
  const suffix = crypto.randomUUID().slice(0, 8);
  const env = {
    MLFLOW_TRACKING_URI: trackingUri,
    MLFLOW_ALLOW_NET: `--allow-net=${new URL(trackingUri).host}`,
    MLFLOW_EXPERIMENT_NAME: `test-reliability-artifacts-${suffix}`,
    MLFLOW_MODEL_NAME: `test-reliability-artifacts-${suffix}`,
  };
  await using root = await createProjectRoot();
  for (
    const [task, args] of [
      ["ingest", ["--source", "sample", "--rows", "400", "--test-rows", "100"]],
      ["split_batches", []],
      ["preprocess_batch", ["0"]],
      ["preprocess_test", []],
      ["train", ["--batches", "0", "--trees", "5"]],
    ] as const
  ) {
    const run = await runTask(root, task, [...args], {
      env: { ...NO_KAGGLE, ...env },
      timeoutMs: STAGE_TIMEOUT_MS,
    });
    assert.equal(run.code, 0, `${task}: ${run.stderr}`);
  }
  const name = env.MLFLOW_MODEL_NAME;
  const original = await client.getModelVersion(name, 1);
  assert.ok(original.tags[MODEL_JSON_SHA256_TAG], "train records the manifest checksum on the version");
  const files = await client.downloadArtifactDir(original.source);
  const experiment = await client.getOrCreateExperiment(env.MLFLOW_EXPERIMENT_NAME);

  /** Registers a copy of version 1 whose files were changed, as if its artifact store had been tampered with. */
  async function registerDamaged(
    damage: (files: Map<string, Uint8Array>) => void,
    tag: "original" | "of the damaged copy",
  ): Promise<number> {
    const copy = new Map(files);
    damage(copy);
    const manifestSha256 = tag === "original"
      ? original.tags[MODEL_JSON_SHA256_TAG]!
      : sha256(copy.get("model.json")!);
    const run = await client.createRun({ experimentId: experiment.experimentId, runName: "damaged-copy" });
    for (const [path, bytes] of copy) {
      await client.uploadArtifact(run.info.artifactUri, `model/${path}`, bytes);
    }
    await client.updateRun(run.info.runId, "FINISHED");
    const version = await client.createModelVersion({
      name,
      source: `${run.info.artifactUri}/model`,
      runId: run.info.runId,
      tags: { [MODEL_JSON_SHA256_TAG]: manifestSha256 },
    });
    return version.version;
  }

  const cases: [
    string,
    (files: Map<string, Uint8Array>) => void,
    "original" | "of the damaged copy",
    RegExp,
  ][] = [
    [
      "a truncated engine.bin",
      (f) => f.set("engine.bin", f.get("engine.bin")!.slice(0, -10)),
      "original",
      /engine\.bin fails its checksum/,
    ],
    [
      "a valid model.json whose labels were swapped",
      (f) => editManifest(f, (m) => m.label_map = { "1": "positive", "2": "negative" }),
      "original",
      /model\.json does not match the checksum recorded when version \d+ was registered/,
    ],
    [
      // As a newer build would register it: its own checksum tag matches.
      "a model of format version 2",
      (f) => editManifest(f, (m) => m.format_version = 2),
      "of the damaged copy",
      /model format version 2 is not supported by this build \(supports 1\); retrain the model or upgrade/,
    ],
  ];
  for (const [what, damage, tag, message] of cases) {
    await t.step(what, async () => {
      const version = String(await registerDamaged(damage, tag));
      const predict = await runTask(root, "predict", [
        "--title",
        "t",
        "--message",
        "great",
        "--model_version",
        version,
      ], {
        env,
        timeoutMs: STAGE_TIMEOUT_MS,
      });
      assertOneLineError(predict, 1, message);
      const evaluate = await runTask(root, "evaluate", ["--model_version", version], {
        env,
        timeoutMs: STAGE_TIMEOUT_MS,
      });
      assertOneLineError(evaluate, 1, message);
    });
  }
  await t.step("the undamaged version 1 still loads", async () => {
    const run = await runTask(
      root,
      "predict",
      ["--title", "t", "--message", "great", "--model_version", "1"],
      {
        env,
        timeoutMs: STAGE_TIMEOUT_MS,
      },
    );
    assert.equal(run.code, 0, run.stderr);
  });
});
