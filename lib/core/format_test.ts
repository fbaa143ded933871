import { strict as assert } from "node:assert";
import { formatBytes } from "./format.ts";

Deno.test("formatBytes() picks the unit and the precision by size", () => {
  assert.equal(formatBytes(0), "0 B");
  assert.equal(formatBytes(999), "999 B");
  assert.equal(formatBytes(698_361), "698.4 kB");
  assert.equal(formatBytes(1_234_567), "1.2 MB");
  assert.equal(formatBytes(183_400_000), "183 MB");
  assert.equal(formatBytes(2_414_000_000), "2.41 GB");
  assert.equal(formatBytes(null), "–");
  assert.equal(formatBytes(undefined), "–");
  assert.equal(formatBytes(NaN), "–");
});
