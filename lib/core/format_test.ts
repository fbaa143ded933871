import { strict as assert } from "node:assert";
import { formatBytes } from "./format.ts";

Deno.test("formatBytes() prints decimal units as df -H does, and a dash when the count is unknown", () => {
  assert.deepEqual(
    [0, 999, 1000, 15_300, 698_361, 1_234_567, 2_500_000, 183_400_000, 1.5e9].map(formatBytes),
    [
      "0 B",
      "999 B",
      "1.0 kB",
      "15 kB",
      "698 kB",
      "1.2 MB",
      "2.5 MB",
      "183 MB",
      "1.5 GB",
    ],
  );
  assert.equal(formatBytes(null), "–");
  assert.equal(formatBytes(undefined), "–");
  assert.equal(formatBytes(NaN), "–");
});
