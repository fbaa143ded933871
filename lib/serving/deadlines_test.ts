import assert from "node:assert/strict";
import { Deadlines } from "./deadlines.ts";

Deno.test("Deadlines.within() settles like the promise when it is in time", async () => {
  const deadlines = new Deadlines(10);
  assert.equal(await deadlines.within(Promise.resolve(42), 1000, () => new Error("late")), 42);
  await assert.rejects(
    deadlines.within(Promise.reject(new Error("boom")), 1000, () => new Error("late")),
    /boom/,
  );
  assert.equal(deadlines.size, 0);
});

Deno.test("Deadlines.within() rejects with the expiry's error once the time is up, within a tick", async () => {
  const deadlines = new Deadlines(10);
  const started = performance.now();
  await assert.rejects(deadlines.within(new Promise(() => {}), 50, () => new Error("too slow")), /too slow/);
  const waited = performance.now() - started;
  assert.ok(waited >= 45 && waited < 1000, `waited ${waited} ms`);
  assert.equal(deadlines.size, 0);
});

Deno.test("Deadlines tracks many operations with one timer and expires only the late ones", async () => {
  const deadlines = new Deadlines(10);
  let release: (value: string) => void = () => {};
  const fast = deadlines.within(
    new Promise<string>((resolve) => (release = resolve)),
    5000,
    () => new Error("x"),
  );
  const slow = deadlines.within(new Promise<string>(() => {}), 30, () => new Error("slow one"));
  assert.equal(deadlines.size, 2);
  await assert.rejects(slow, /slow one/);
  release("in time");
  assert.equal(await fast, "in time");
  assert.equal(deadlines.size, 0);
});
