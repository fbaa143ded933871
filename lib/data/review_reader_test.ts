import assert from "node:assert/strict";
import { join } from "node:path";
import fc from "fast-check";
import { scratchDir } from "../_testing.ts";
import { formatReviewLine } from "./csv.ts";
import {
  DEFAULT_MAX_LINE_BYTES,
  fileStream,
  readReviews,
  type ReadReviewsOptions,
  type ReadStats,
  REJECTED_PREFIX_BYTES,
  type RejectedRow,
  type ReviewLine,
} from "./review_reader.ts";

const encoder = new TextEncoder();

/** A stream that yields exactly these chunks, so tests control where chunk boundaries fall. */
function streamOf(...chunks: (string | Uint8Array)[]): ReadableStream<Uint8Array> {
  const queue = chunks.map((chunk) => typeof chunk === "string" ? encoder.encode(chunk) : chunk);
  return new ReadableStream({
    pull(controller) {
      const next = queue.shift();
      if (next === undefined) controller.close();
      else controller.enqueue(next);
    },
  });
}

/** Splits bytes at the given offsets. */
function cut(bytes: Uint8Array, offsets: number[]): Uint8Array[] {
  const points = [...new Set(offsets.map((o) => o % (bytes.length + 1)))].sort((a, b) => a - b);
  const parts: Uint8Array[] = [];
  let start = 0;
  for (const point of points) {
    parts.push(bytes.subarray(start, point));
    start = point;
  }
  parts.push(bytes.subarray(start));
  return parts;
}

interface Collected {
  lines: ReviewLine[];
  rejects: RejectedRow[];
  stats: ReadStats;
}

async function collect(
  source: ReadableStream<Uint8Array>,
  options: ReadReviewsOptions = {},
): Promise<Collected> {
  const rejects: RejectedRow[] = [];
  const lines: ReviewLine[] = [];
  const reader = readReviews(source, { ...options, onReject: (row) => void rejects.push(row) });
  while (true) {
    const next = await reader.next();
    if (next.done) return { lines, rejects, stats: next.value };
    lines.push(next.value);
  }
}

/** Physical lines as the reader defines them: LF-terminated, plus a final unterminated one. */
function countLines(bytes: Uint8Array): number {
  let lines = 0;
  for (const byte of bytes) if (byte === 0x0a) lines++;
  return bytes.length > 0 && bytes[bytes.length - 1] !== 0x0a ? lines + 1 : lines;
}

Deno.test("readReviews() yields quoted rows with doubled quotes and decoded \\n escapes", async () => {
  const input = '"2","A ""great"" pan","Heats evenly.\\nCleans, too."\n"1","","Broke."\n';
  const { lines, rejects, stats } = await collect(streamOf(input));
  assert.deepEqual(rejects, []);
  assert.deepEqual(lines, [
    {
      line: 1,
      review: { polarity: 2, title: 'A "great" pan', text: "Heats evenly.\nCleans, too." },
      raw: '"2","A ""great"" pan","Heats evenly.\\nCleans, too."',
    },
    { line: 2, review: { polarity: 1, title: "", text: "Broke." }, raw: '"1","","Broke."' },
  ]);
  assert.deepEqual(stats, { read: 2, accepted: 2, rejected: 0, bytes: encoder.encode(input).length });
});

Deno.test("readReviews() drops the CR of CRLF line ends, also when CR and LF fall in different chunks", async () => {
  const { lines } = await collect(streamOf('"2","a","b"\r', '\n"1","c","d"\r\n'));
  assert.deepEqual(lines.map((l) => l.raw), ['"2","a","b"', '"1","c","d"']);
  assert.equal(lines[1]!.review.text, "d");
});

Deno.test("readReviews() counts a final line without LF", async () => {
  const { lines, stats } = await collect(streamOf('"2","a","b"\n"1","c","no newline at end"'));
  assert.equal(lines.length, 2);
  assert.equal(lines[1]!.review.text, "no newline at end");
  assert.equal(stats.read, 2);
});

Deno.test("readReviews() skips a UTF-8 BOM at the very start only", async () => {
  const bom = new Uint8Array([0xef, 0xbb, 0xbf]);
  const { lines, rejects } = await collect(streamOf(bom, '"2","a","b"\n\uFEFF"1","c","d"\n'));
  assert.deepEqual(lines.map((l) => l.raw), ['"2","a","b"']);
  assert.deepEqual(rejects.map((r) => [r.line, r.reason]), [[2, "quote inside unquoted field"]]);
});

Deno.test("readReviews() decodes a multi-byte character split across chunks", async () => {
  const bytes = encoder.encode('"2","Café","Très bien 👍"\n');
  for (let at = 1; at < bytes.length; at++) {
    const { lines } = await collect(streamOf(bytes.subarray(0, at), bytes.subarray(at)));
    assert.equal(lines[0]?.review.text, "Très bien 👍", `split at byte ${at}`);
  }
});

Deno.test("readReviews() accepts a 1 MB field", async () => {
  const text = "x".repeat(1_000_000);
  const bytes = encoder.encode(formatReviewLine({ polarity: 2, title: "Long", text }));
  const chunks = cut(bytes, Array.from({ length: 20 }, (_, i) => i * 65_536));
  const { lines, rejects } = await collect(streamOf(...chunks));
  assert.deepEqual(rejects, []);
  assert.equal(lines[0]!.review.text.length, 1_000_000);
});

Deno.test("readReviews() rejects a line over the cap with a truncated raw and goes on", async () => {
  const long = `"2","t","${"y".repeat(5000)}"`;
  const input = `"1","a","b"\n${long}\n"2","c","d"\n`;
  const { lines, rejects, stats } = await collect(streamOf(input), { maxLineBytes: 1000 });
  assert.deepEqual(lines.map((l) => l.line), [1, 3]);
  assert.equal(rejects.length, 1);
  assert.equal(rejects[0]!.line, 2);
  assert.match(rejects[0]!.reason, /^line longer than 1000 bytes \(got 5010; raw keeps the first 1024\)$/);
  assert.equal(rejects[0]!.raw, long.slice(0, REJECTED_PREFIX_BYTES));
  assert.equal(rejects[0]!.truncated, true);
  assert.deepEqual(stats, { read: 3, accepted: 2, rejected: 1, bytes: input.length });
});

Deno.test("readReviews() rejects a 10 MB line streamed in chunks without buffering it", async () => {
  const total = 10 * 1024 * 1024;
  const piece = new Uint8Array(65_536).fill(0x61); // "a"
  let sent = 0;
  let largestChunk = 0;
  // Generated lazily: the test itself never holds the line, and the reader must not either.
  const source = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (sent === 0) controller.enqueue(encoder.encode('"1","ok","fine"\n"2","t","'));
      if (sent < total) {
        controller.enqueue(piece.slice());
        largestChunk = Math.max(largestChunk, piece.length);
        sent += piece.length;
      } else {
        controller.enqueue(encoder.encode('"\n"2","after","the long line"\n'));
        controller.close();
      }
    },
  });
  const { lines, rejects } = await collect(source);
  assert.deepEqual(lines.map((l) => l.review.title), ["ok", "after"]);
  assert.equal(rejects.length, 1);
  assert.match(
    rejects[0]!.reason,
    new RegExp(`^line longer than ${DEFAULT_MAX_LINE_BYTES} bytes \\(got 104857`),
  );
  assert.equal(rejects[0]!.raw.length, REJECTED_PREFIX_BYTES);
  assert.ok(rejects[0]!.raw.startsWith('"2","t","aaa'));
});

Deno.test("readReviews() rejects a line with a NUL byte", async () => {
  const { lines, rejects } = await collect(streamOf('"2","a","b"\n"2","a\0","b"\n"1","c","d"\n'));
  assert.equal(lines.length, 2);
  assert.deepEqual(rejects, [{ line: 2, reason: "NUL byte", raw: '"2","a\0","b"' }]);
});

Deno.test("readReviews() rejects only the lines with invalid UTF-8", async () => {
  const bad = new Uint8Array([0x22, 0x32, 0x22, 0x2c, 0x22, 0xff, 0xfe, 0x22, 0x2c, 0x22, 0x78, 0x22]); // "2","\xff\xfe","x"
  const { lines, rejects, stats } = await collect(
    streamOf(
      new Uint8Array([...encoder.encode('"1","a","b"\n'), ...bad, 0x0a, ...encoder.encode('"2","c","d"')]),
    ),
  );
  assert.deepEqual(lines.map((l) => l.line), [1, 3]);
  assert.deepEqual(rejects, [{ line: 2, reason: "invalid UTF-8", raw: '"2","\uFFFD\uFFFD","x"' }]);
  assert.equal(stats.read, 3);
});

Deno.test("readReviews() rejects wrong field counts, bad labels, blank rows and blank lines with reasons", async () => {
  const { lines, rejects } = await collect(
    streamOf('"2","two fields"\n"3","a","b"\n\n"1","",""\n"2","a","b","c"\n   \n"2","x","y"\n'),
  );
  assert.deepEqual(lines.map((l) => l.line), [7]);
  assert.deepEqual(rejects.map((r) => [r.line, r.reason]), [
    [1, "wrong field count (expected 3, got 2)"],
    [2, 'label not 1 or 2 (got "3")'],
    [3, "empty line"],
    [4, "empty title and text"],
    [5, "wrong field count (expected 3, got 4)"],
    [6, "wrong field count (expected 3, got 1)"],
  ]);
});

Deno.test("readReviews() reads an empty file as zero lines", async () => {
  const { lines, rejects, stats } = await collect(streamOf());
  assert.deepEqual([lines, rejects], [[], []]);
  assert.deepEqual(stats, { read: 0, accepted: 0, rejected: 0, bytes: 0 });
});

Deno.test("readReviews() rejects every line of a file that is not CSV at all", async () => {
  const html = "<!DOCTYPE html>\n<html><body>\n<p>Sign in to download</p>\n</body></html>\n";
  const { lines, rejects, stats } = await collect(streamOf(html));
  assert.equal(lines.length, 0);
  assert.equal(rejects.length, 4);
  assert.deepEqual(stats, { read: 4, accepted: 0, rejected: 4, bytes: html.length });
});

Deno.test("readReviews() accepts unquoted rows as Python's csv module writes them", async () => {
  const { lines } = await collect(streamOf('2,Nice,Works well\n1,"Bad, very",Broke\n'));
  assert.deepEqual(lines.map((l) => l.review), [
    { polarity: 2, title: "Nice", text: "Works well" },
    { polarity: 1, title: "Bad, very", text: "Broke" },
  ]);
});

Deno.test("readReviews() confines an unbalanced quote to its own line", async () => {
  const { lines, rejects } = await collect(
    streamOf('"2","a","b"\n"1","Title","never closed\n2,c,d\n1,e,f\n'),
  );
  assert.deepEqual(lines.map((l) => l.line), [1, 3, 4]);
  assert.deepEqual(rejects.map((r) => [r.line, r.reason]), [[2, "unbalanced quotes"]]);
});

Deno.test("readReviews() never throws on random bytes and keeps read = accepted + rejected", async () => {
  // Bytes biased towards the characters that matter to the framer and the parser.
  const byte = fc.oneof(
    fc.constantFrom(0x0a, 0x0d, 0x22, 0x2c, 0x31, 0x32, 0x00, 0xef, 0xbb, 0xbf, 0xc3, 0xa9, 0xff, 0x5c, 0x6e),
    fc.integer({ min: 0, max: 255 }),
  );
  await fc.assert(
    fc.asyncProperty(
      fc.array(byte, { maxLength: 600 }).map((values) => new Uint8Array(values)),
      fc.array(fc.nat(), { maxLength: 6 }),
      fc.integer({ min: 1, max: 64 }),
      async (bytes, offsets, maxLineBytes) => {
        const { lines, rejects, stats } = await collect(streamOf(...cut(bytes, offsets)), { maxLineBytes });
        assert.equal(stats.read, stats.accepted + stats.rejected);
        assert.equal(stats.accepted, lines.length);
        assert.equal(stats.rejected, rejects.length);
        assert.equal(stats.read, countLines(bytes));
        assert.equal(stats.bytes, bytes.length);
        // Every line number appears exactly once, in order.
        const numbers = [...lines.map((l) => l.line), ...rejects.map((r) => r.line)].sort((a, b) => a - b);
        assert.deepEqual(numbers, Array.from({ length: stats.read }, (_, i) => i + 1));
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("readReviews() gives the same result wherever the chunks are cut", async () => {
  const text = [
    '"2","Café ""au lait""","Très bien,\\nmerci 👍"',
    '"1","","Broke"\r',
    "",
    '"2","bad',
    "2,plain,row",
    '"9","a","b"',
  ].join("\n");
  const bytes = encoder.encode(text);
  const expected = await collect(streamOf(bytes));
  assert.equal(expected.stats.accepted, 3);
  await fc.assert(
    fc.asyncProperty(fc.array(fc.nat({ max: bytes.length }), { maxLength: 8 }), async (offsets) => {
      const got = await collect(streamOf(...cut(bytes, offsets)));
      assert.deepEqual(got, expected);
    }),
    { numRuns: 200 },
  );
});

Deno.test("readReviews() results never depend on chunk boundaries, whatever the bytes and the cap", async () => {
  // Pieces that exercise every path: BOM, CR/LF, quotes, multi-byte and invalid UTF-8, NUL, long runs.
  const piece = fc.constantFrom(
    "\uFEFF",
    "\n",
    "\r\n",
    "\r",
    '"',
    ",",
    '"2","t","',
    '"1","",',
    "é",
    "👍",
    "\0",
    "\\n",
    "abcdefghij",
    "x".repeat(40),
    "y".repeat(700), // past REJECTED_PREFIX_BYTES, so truncated prefixes are compared too
    new Uint8Array([0xff]),
    new Uint8Array([0xe2, 0x82]),
  );
  await fc.assert(
    fc.asyncProperty(
      fc.array(piece, { maxLength: 40 }),
      fc.array(fc.nat(), { maxLength: 8 }),
      fc.oneof(fc.integer({ min: 1, max: 80 }), fc.integer({ min: 1000, max: 1500 })),
      async (pieces, offsets, maxLineBytes) => {
        const bytes = new Uint8Array(
          pieces.flatMap((p) => [...(typeof p === "string" ? encoder.encode(p) : p)]),
        );
        const whole = await collect(streamOf(bytes), { maxLineBytes });
        const chunked = await collect(streamOf(...cut(bytes, offsets)), { maxLineBytes });
        assert.deepEqual(chunked, whole);
      },
    ),
    { numRuns: 500 },
  );
});

Deno.test("readReviews() reports a line over the cap by its content length, without the CR", async () => {
  const { rejects } = await collect(streamOf('"2","a","bcdef"\r\n'), { maxLineBytes: 10 });
  assert.deepEqual(rejects, [{
    line: 1,
    reason: "line longer than 10 bytes (got 15)",
    raw: '"2","a","bcdef"',
  }]);
  const exact = await collect(streamOf('"2","a","b"\r', "\n"), { maxLineBytes: 11 });
  assert.equal(exact.lines.length, 1, "a line exactly at the cap is accepted even with CRLF");
});

Deno.test("readReviews() stops at the limit and cancels the source", async () => {
  let cancelled = false;
  const queue = ['"2","a","b"\n"2","c","d"\n', '"1","e","f"\n'];
  const source = new ReadableStream<Uint8Array>({
    pull(controller) {
      const next = queue.shift();
      if (next === undefined) controller.close();
      else controller.enqueue(encoder.encode(next));
    },
    cancel() {
      cancelled = true;
    },
  });
  const { lines, stats } = await collect(source, { limit: 1 });
  assert.equal(lines.length, 1);
  assert.equal(stats.accepted, 1);
  assert.equal(stats.read, 1);
  assert.ok(cancelled);
});

Deno.test("readReviews() throws the abort reason of its signal", async () => {
  const controller = new AbortController();
  const reason = new Error("interrupted by SIGINT");
  const reader = readReviews(streamOf('"2","a","b"\n', '"2","c","d"\n'), { signal: controller.signal });
  assert.equal((await reader.next()).done, false);
  controller.abort(reason);
  await assert.rejects(() => reader.next(), (error) => error === reason);
});

Deno.test("readReviews() awaits an async onReject before going on, in line order", async () => {
  const events: string[] = [];
  const reader = readReviews(streamOf('x\n"2","a","b"\ny\n'), {
    onReject: async (row) => {
      await new Promise((resolve) => setTimeout(resolve, 5));
      events.push(`reject ${row.line}`);
    },
  });
  for await (const { line } of reader) events.push(`yield ${line}`);
  assert.deepEqual(events, ["reject 1", "yield 2", "reject 3"]);
});

Deno.test("readReviews() reports progress with the final counts", async () => {
  const seen: ReadStats[] = [];
  await collect(streamOf('"2","a","b"\n', '"1","c","d"\nbad\n'), {
    onProgress: (stats) => void seen.push(stats),
  });
  assert.deepEqual(seen.at(-1), { read: 3, accepted: 2, rejected: 1, bytes: 28 });
});

Deno.test("readReviews() throws RangeError for a bad limit or cap at the call", () => {
  assert.throws(() => readReviews(streamOf(), { limit: -1 }), RangeError);
  assert.throws(() => readReviews(streamOf(), { maxLineBytes: 0 }), RangeError);
});

Deno.test("fileStream() reads a file in chunks of the given size and shows each to onChunk", async () => {
  await using dir = await scratchDir("review-reader-");
  const path = join(dir.path, "reviews.csv");
  const text = Array.from({ length: 50 }, (_, i) => `"2","t${i}","text ${i}"\n`).join("");
  await Deno.writeTextFile(path, text);
  using file = await Deno.open(path);
  const sizes: number[] = [];
  const { lines } = await collect(
    fileStream(file, { chunkBytes: 100, onChunk: (c) => void sizes.push(c.length) }),
  );
  assert.equal(lines.length, 50);
  assert.equal(sizes.reduce((a, b) => a + b, 0), encoder.encode(text).length);
  assert.ok(sizes.every((size) => size <= 100));
});
