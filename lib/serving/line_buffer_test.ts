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
