import { strict as assert } from "node:assert";
import { APP_VERSION } from "./version.ts";

Deno.test("APP_VERSION is the semantic version in deno.json", async () => {
  const config = JSON.parse(await Deno.readTextFile(new URL("../../deno.json", import.meta.url)));
  assert.equal(APP_VERSION, config.version);
  assert.match(APP_VERSION, /^\d+\.\d+\.\d+(-[\w.]+)?$/);
});
