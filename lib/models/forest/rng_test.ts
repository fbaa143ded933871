import assert from "node:assert/strict";
import { Rng, treeRng } from "./rng.ts";

Deno.test("treeRng() gives the same sequence for the same seed and tree, another for another tree", () => {
  const draw = (rng: Rng) => Array.from({ length: 8 }, () => rng.nextUint32());
  assert.deepEqual(draw(treeRng(42, 3)), draw(treeRng(42, 3)));
  assert.notDeepEqual(draw(treeRng(42, 3)), draw(treeRng(42, 4)));
  assert.notDeepEqual(draw(treeRng(42, 3)), draw(treeRng(43, 3)));
});

Deno.test("Rng.nextInt() stays in range and is close to uniform for small and large bounds", () => {
  const rng = new Rng(7);
  for (const bound of [1, 3, 10, 20000, 3_600_000, 2 ** 31 + 11]) {
    for (let i = 0; i < 2000; i++) {
      const x = rng.nextInt(bound);
      assert.ok(Number.isInteger(x) && x >= 0 && x < bound, `${x} not in [0, ${bound})`);
    }
  }
  const counts = new Array(10).fill(0);
  for (let i = 0; i < 100_000; i++) counts[rng.nextInt(10)]++;
  for (const c of counts) assert.ok(Math.abs(c - 10_000) < 500, `bucket count ${c} is far from 10000`);
});

Deno.test("Rng.nextFloat() is in [0, 1) with mean about 1/2", () => {
  const rng = new Rng(1);
  let sum = 0;
  for (let i = 0; i < 50_000; i++) {
    const u = rng.nextFloat();
    assert.ok(u >= 0 && u < 1);
    sum += u;
  }
  assert.ok(Math.abs(sum / 50_000 - 0.5) < 0.01);
});
