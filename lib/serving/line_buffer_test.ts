import assert from "node:assert/strict";
import { LineBuffer } from "./line_buffer.ts";

Deno.test("LineBuffer writes lines in order, in one chunk once the size limit is reached", () => {
  const chunks: string[] = [];
  const buffer = new LineBuffer((text) => chunks.push(text), { maxChars: 20, maxDelayMs: 60_000 });
  buffer.write("first line");
  assert.deepEqual(chunks, [], "buffered");
  assert.equal(buffer.pending, 1);
  buffer.write("second line");
  assert.deepEqual(chunks, ["first line\nsecond line\n"]);
  assert.equal(buffer.pending, 0);
  buffer.flush();
  assert.equal(chunks.length, 1, "nothing left to write");
});

Deno.test("LineBuffer.writeNow() writes what is buffered first, so the order of lines is kept", () => {
  const chunks: string[] = [];
  const buffer = new LineBuffer((text) => chunks.push(text), { maxDelayMs: 60_000 });
  buffer.write("a request");
  buffer.writeNow("an error");
  assert.deepEqual(chunks.join(""), "a request\nan error\n");
});

Deno.test("LineBuffer writes a buffered line within maxDelayMs without being asked", async () => {
  const chunks: string[] = [];
  const buffer = new LineBuffer((text) => chunks.push(text), { maxDelayMs: 20 });
  buffer.write("late line");
  await new Promise((resolve) => setTimeout(resolve, 80));
  assert.deepEqual(chunks, ["late line\n"]);
});

Deno.test("LineBuffer's methods work detached, as log sinks and event listeners", () => {
  const chunks: string[] = [];
  const { write, writeNow, flush } = new LineBuffer((text) => chunks.push(text), { maxDelayMs: 60_000 });
  write("one");
  flush();
  writeNow("two");
  assert.deepEqual(chunks, ["one\n", "two\n"]);
});

/** An asynchronous writer whose writes complete when the test says so. */
function gatedWriter() {
  const written: string[] = [];
  const gates: (() => void)[] = [];
  return {
    written,
    get waiting() {
      return gates.length;
    },
    writeAsync: (text: string) =>
      new Promise<void>((resolve) => {
        gates.push(() => {
          written.push(text);
          resolve();
        });
      }),
    /** Completes the oldest write in flight and lets its continuation run. */
    async release() {
      gates.shift()!();
      await new Promise((resolve) => setTimeout(resolve, 0));
    },
  };
}

Deno.test("LineBuffer with an asynchronous writer keeps one chunk in flight and the order of every line", async () => {
  const sync: string[] = [];
  const writer = gatedWriter();
  const buffer = new LineBuffer((text) => sync.push(text), {
    maxChars: 10,
    maxDelayMs: 60_000,
    writeAsync: writer.writeAsync,
  });
  buffer.write("request 1 "); // reaches maxChars: written asynchronously
  assert.equal(writer.waiting, 1);
  buffer.write("request 2 "); // waits for the chunk in flight, even past maxChars
  buffer.writeNow("an error"); // must follow request 2, so it waits too
  assert.equal(writer.waiting, 1, "one chunk in flight at a time");
  assert.deepEqual(sync, [], "nothing written synchronously while a chunk is in flight");
  await writer.release();
  assert.deepEqual(writer.written, ["request 1 \n"]);
  assert.deepEqual(
    sync,
    ["request 2 \nan error\n"],
    "the waiting lines, written as soon as the chunk is done",
  );
  assert.equal(buffer.pending, 0);
});

Deno.test("LineBuffer.drain() waits for the chunk in flight and writes the rest", async () => {
  const sync: string[] = [];
  const writer = gatedWriter();
  const buffer = new LineBuffer((text) => sync.push(text), {
    maxChars: 5,
    maxDelayMs: 60_000,
    writeAsync: writer.writeAsync,
  });
  buffer.write("first");
  buffer.write("second");
  const drained = buffer.drain();
  await writer.release(); // "first" completes; "second" reached maxChars and starts its own chunk
  await writer.release();
  await drained;
  assert.deepEqual([...writer.written, ...sync].join(""), "first\nsecond\n");
  assert.equal(buffer.pending, 0);
});

Deno.test("LineBuffer drops and counts lines beyond maxPendingChars while the reader is stalled, never blocking", async () => {
  const sync: string[] = [];
  const writer = gatedWriter();
  const buffer = new LineBuffer((text) => sync.push(text), {
    maxChars: 4,
    maxDelayMs: 60_000,
    maxPendingChars: 8,
    writeAsync: writer.writeAsync,
  });
  buffer.write("aaa"); // in flight
  buffer.write("bbb"); // pending: 4 characters
  buffer.write("ccc"); // pending: 8 characters, the bound
  buffer.write("ddd"); // dropped
  buffer.write("eee"); // dropped
  assert.equal(buffer.dropped, 2);
  assert.equal(buffer.pending, 2);
  await writer.release(); // "aaa" written; the pending lines go out with the count
  await writer.release();
  const lines = writer.written.join("").trim().split("\n");
  assert.deepEqual(lines.slice(0, 3), ["aaa", "bbb", "ccc"]);
  const notice = JSON.parse(lines[3]!);
  assert.equal(notice.level, "warn");
  assert.equal(notice.dropped, 2);
  assert.equal(buffer.dropped, 0);
});

Deno.test("LineBuffer goes on after an asynchronous write fails (stderr closed)", async () => {
  const written: string[] = [];
  let fail = true;
  const buffer = new LineBuffer(() => {}, {
    maxChars: 1,
    maxDelayMs: 60_000,
    writeAsync: (text) => {
      if (fail) {
        fail = false;
        return Promise.reject(new Error("broken pipe"));
      }
      written.push(text);
      return Promise.resolve();
    },
  });
  buffer.write("lost");
  await buffer.drain();
  buffer.write("kept");
  await buffer.drain();
  assert.deepEqual(written, ["kept\n"]);
});
