import assert from "node:assert/strict";
import { synthetic } from "./_synthetic.ts";
import type { WorkerResponse } from "./forest.ts";
import { createHandler } from "./forest_worker.ts";
import { TreeBuilder } from "./tree_builder.ts";

const settings = { mtry: 3, maxDepth: 0, minSamplesLeaf: 1, bootstrap: true, seed: 42 };

Deno.test("forest worker handler builds the requested tree, then hands over its out-of-bag votes", () => {
  const { dataset } = synthetic({ rows: 200, numFeatures: 10, seed: 1, flip: 0.1 });
  dataset.columns();
  const posted: { message: WorkerResponse; transfer?: Transferable[] }[] = [];
  const handle = createHandler((message, transfer) => posted.push({ message, transfer }));
  handle({ type: "init", data: dataset.buffers() });
  handle({ type: "build", index: 4, settings });
  assert.equal(posted.length, 1);
  const { message, transfer } = posted[0]!;
  assert.equal(message.type, "tree");
  if (message.type !== "tree") return;
  const expected = new TreeBuilder(dataset).build(4, settings);
  assert.equal(message.tree.index, 4);
  assert.deepEqual(message.tree.nodes, expected.nodes);
  assert.deepEqual(message.tree.nodeValues, expected.nodeValues);
  assert.deepEqual(message.tree.importanceValues, expected.importanceValues);
  assert.equal(transfer?.length, 4);
  handle({ type: "finish" });
  const oob = posted[1]!.message;
  assert.equal(oob.type, "oob");
  if (oob.type !== "oob") return;
  assert.equal(oob.trees?.length, 200);
  assert.ok(oob.trees!.some((v) => v === 1) && oob.trees!.some((v) => v === 0), "one tree's out-of-bag rows");
  assert.equal(posted[1]!.transfer?.length, 2);
});

Deno.test("forest worker handler reports a build before init as an error message", () => {
  const posted: WorkerResponse[] = [];
  const handle = createHandler((message) => posted.push(message));
  handle({ type: "build", index: 0, settings });
  assert.equal(posted[0]?.type, "error");
  assert.match(posted[0]?.type === "error" ? posted[0].message : "", /before init/);
});
