import assert from "node:assert/strict";
import fc from "fast-check";
import { accuracy, synthetic } from "./_synthetic.ts";
import { Forest, resolveForestParams, resolveMaxFeatures, trainForest } from "./forest.ts";
import { deserializeForest, serializeForest } from "./model_format.ts";
import { treeRng } from "./rng.ts";
import { SparseDataset } from "./sparse_dataset.ts";
import { leafValues, NODE_VALUE_SCALE } from "./tree_builder.ts";

/** Gini proxy of a split (larger is better), as scikit-learn computes it. */
function proxy(r0: number, r1: number, l0: number, l1: number): number {
  return (r0 * r0 + r1 * r1) / (r0 + r1) + (l0 * l0 + l1 * l1) / (l0 + l1);
}

/**
 * Re-derives every node of every tree by brute force from the rows that reach it: leaf values, the Gini
 * optimality of each split (when all words are tried), minimum leaf size, and why each leaf stopped.
 */
function verifyForest(
  forest: Forest,
  rows: number[][],
  labels: number[],
  options: { exhaustive: boolean; minSamplesLeaf: number },
): void {
  const { trees } = forest.toData();
  const n = rows.length;
  const sets = rows.map((row) => new Set(row));
  for (let t = 0; t < forest.stats.trees; t++) {
    // Same bootstrap as the builder: the tree's first n draws.
    const weight = new Array(n).fill(forest.params.bootstrap ? 0 : 1);
    if (forest.params.bootstrap) {
      const rng = treeRng(forest.params.seed, t);
      for (let i = 0; i < n; i++) weight[rng.nextInt(n)]++;
    }
    const nodes = trees[t]!;
    const values = leafValues(nodes);
    const visit = (node: number, members: number[]) => {
      let w0 = 0;
      let w1 = 0;
      for (const r of members) labels[r] ? (w1 += weight[r]) : (w0 += weight[r]);
      // Every node's value is its bootstrap-weighted positive share, which explanations start from.
      assert.equal(
        forest.toData().nodeValues![t]![node],
        Math.round(Math.fround(w1 / (w0 + w1)) * NODE_VALUE_SCALE),
        `tree ${t} node ${node} value`,
      );
      const f = nodes[2 * node]!;
      if (f < 0) {
        assert.equal(values[2 * node + 1], Math.fround(w1 / (w0 + w1)), `tree ${t} leaf ${node} value`);
        if (w0 > 0 && w1 > 0 && members.length >= 2 * options.minSamplesLeaf && options.exhaustive) {
          // An impure leaf is only allowed when no word splits it with enough rows on each side.
          for (let g = 0; g < forest.numFeatures; g++) {
            const d = members.filter((r) => sets[r]!.has(g)).length;
            assert.ok(
              d < options.minSamplesLeaf || members.length - d < options.minSamplesLeaf,
              `tree ${t} leaf ${node}: word ${g} would split it`,
            );
          }
        }
        return;
      }
      const withWord = members.filter((r) => sets[r]!.has(f));
      const without = members.filter((r) => !sets[r]!.has(f));
      assert.ok(withWord.length >= options.minSamplesLeaf && without.length >= options.minSamplesLeaf);
      if (options.exhaustive) {
        const score = (g: number) => {
          let r0 = 0, r1 = 0;
          for (const r of members) if (sets[r]!.has(g)) labels[r] ? (r1 += weight[r]) : (r0 += weight[r]);
          const d = members.filter((r) => sets[r]!.has(g)).length;
          if (d < options.minSamplesLeaf || members.length - d < options.minSamplesLeaf) return -Infinity;
          return proxy(r0, r1, w0 - r0, w1 - r1);
        };
        let best = -Infinity;
        for (let g = 0; g < forest.numFeatures; g++) best = Math.max(best, score(g));
        assert.ok(
          Math.abs(score(f) - best) <= 1e-9 * Math.abs(best),
          `tree ${t} node ${node}: word ${f} is not the best`,
        );
      }
      visit(node + 1, without);
      visit(nodes[2 * node + 1]!, withWord);
    };
    const inBag = [...rows.keys()].filter((r) => weight[r] > 0);
    visit(0, inBag);
  }
}

Deno.test("trainForest() grows Gini-optimal splits and exact leaf values when all words are tried", async () => {
  const { rows, labels, dataset } = synthetic({ rows: 300, numFeatures: 25, seed: 1, flip: 0.1 });
  for (const bootstrap of [false, true]) {
    const forest = await trainForest(dataset, { trees: 3, maxFeatures: "all", bootstrap, seed: 5 }, {
      workers: 0,
    });
    assert.ok(forest.stats.nodes > 3 * 20, "trees are not trivial");
    verifyForest(forest, rows, labels, { exhaustive: true, minSamplesLeaf: 1 });
  }
});

Deno.test("trainForest() respects minSamplesLeaf and maxDepth", async () => {
  const { rows, labels, dataset } = synthetic({ rows: 400, numFeatures: 30, seed: 2, flip: 0.1 });
  const forest = await trainForest(dataset, { trees: 4, maxFeatures: "all", minSamplesLeaf: 7, seed: 9 }, {
    workers: 0,
  });
  verifyForest(forest, rows, labels, { exhaustive: true, minSamplesLeaf: 7 });
  const shallow = await trainForest(dataset, { trees: 4, maxDepth: 2 }, { workers: 0 });
  assert.ok(shallow.stats.maxDepth <= 2 && shallow.stats.nodes <= 4 * 7);
  verifyForest(shallow, rows, labels, { exhaustive: false, minSamplesLeaf: 1 });
});

Deno.test("trainForest() is bit-for-bit reproducible with a seed, for 0, 1 and 2 workers", async () => {
  const { dataset } = synthetic({ rows: 2000, numFeatures: 60, seed: 3, flip: 0.15 });
  const params = { trees: 12, seed: 123 };
  const inline = serializeForest(await trainForest(dataset, params, { workers: 0 }));
  const again = serializeForest(await trainForest(dataset, params, { workers: 0 }));
  const one = serializeForest(await trainForest(dataset, params, { workers: 1 }));
  const two = serializeForest(await trainForest(dataset, params, { workers: 2 }));
  assert.deepEqual(again, inline);
  assert.deepEqual(one, inline);
  assert.deepEqual(two, inline);
  const other = serializeForest(await trainForest(dataset, { ...params, seed: 124 }, { workers: 2 }));
  assert.notDeepEqual(other, inline, "another seed gives another forest");
});

Deno.test("Forest.predictProba() gives probabilities in [0, 1] and class probabilities summing to 1", async () => {
  const train = synthetic({ rows: 1500, numFeatures: 40, seed: 4, flip: 0.1 });
  const test = synthetic({ rows: 500, numFeatures: 40, seed: 5, flip: 0.1 });
  const forest = await trainForest(train.dataset, { trees: 20 }, { workers: 2 });
  const batch = forest.predictProbaBatch(test.dataset);
  assert.equal(batch.length, 500);
  test.rows.forEach((row, i) => {
    const p = forest.predictProba(new Uint32Array(row));
    assert.ok(p >= 0 && p <= 1);
    assert.equal(batch[i], p);
    const [negative, positive] = forest.predictClassProba(row);
    assert.equal(positive, p);
    assert.ok(Math.abs(negative + positive - 1) < 1e-12);
  });
  assert.deepEqual(forest.predictProbaBatch(test.rows), batch, "an iterable of rows gives the same");
  assert.throws(() => forest.predictProba([40]), /outside this forest's vocabulary of 40/);
});

Deno.test("trainForest() learns a separable dataset perfectly", async () => {
  // Positive exactly when word 0 is present; words 1..29 are noise.
  const make = (seed: number) => {
    const { rows } = synthetic({ rows: 400, numFeatures: 30, seed });
    return { rows, labels: rows.map((row) => (row[0] === 0 ? 1 : 0)) };
  };
  const train = make(6);
  const test = make(7);
  const forest = await trainForest(SparseDataset.fromRows(30, train.rows, train.labels), { trees: 25 }, {
    workers: 0,
  });
  assert.equal(accuracy(forest.predictProbaBatch(train.rows), train.labels), 1);
  assert.equal(accuracy(forest.predictProbaBatch(test.rows), test.labels), 1);
  assert.ok(forest.oobAccuracy! > 0.95, `oob ${forest.oobAccuracy}`);
  assert.equal(forest.topFeatures(1)[0]!.feature, 0);
});

Deno.test("Forest.oobAccuracy is close to the accuracy on held-out data", async () => {
  const train = synthetic({ rows: 3000, numFeatures: 40, seed: 8, flip: 0.1 });
  const test = synthetic({ rows: 3000, numFeatures: 40, seed: 9, flip: 0.1 });
  const forest = await trainForest(train.dataset, { trees: 40 }, { workers: 2 });
  const heldOut = accuracy(forest.predictProbaBatch(test.dataset), test.labels);
  assert.ok(forest.oobAccuracy !== null && forest.oobAccuracy > 0.6, `oob ${forest.oobAccuracy}`);
  assert.ok(
    Math.abs(forest.oobAccuracy - heldOut) < 0.04,
    `oob ${forest.oobAccuracy} vs held-out ${heldOut}`,
  );
  assert.equal(forest.stats.oobRows, 3000);
  const noBootstrap = await trainForest(train.dataset, { trees: 3, bootstrap: false }, { workers: 0 });
  assert.equal(noBootstrap.oobAccuracy, null);
});

Deno.test("Forest.featureImportances() are non-negative, sum to 1 and rank the informative words first", async () => {
  const { dataset } = synthetic({ rows: 2000, numFeatures: 50, seed: 10, flip: 0.05 });
  const forest = await trainForest(dataset, { trees: 30 }, { workers: 2 });
  const importances = forest.featureImportances();
  assert.equal(importances.length, 50);
  assert.ok(importances.every((v) => v >= 0));
  assert.ok(Math.abs(importances.reduce((a, b) => a + b, 0) - 1) < 1e-9);
  const names = Array.from({ length: 50 }, (_, f) => `word${f}`);
  const top = forest.topFeatures(2, names);
  assert.deepEqual(top.map((t) => t.name).sort(), ["word0", "word1"]);
  assert.ok(top[0]!.importance >= top[1]!.importance);
  importances[0] = 99; // a copy: the forest is unchanged
  assert.notEqual(forest.featureImportances()[0], 99);
});

Deno.test("trainForest() reports progress per tree and stops its workers when aborted", async () => {
  const { dataset } = synthetic({ rows: 3000, numFeatures: 60, seed: 11, flip: 0.2 });
  const seen: number[] = [];
  await trainForest(dataset, { trees: 6 }, { workers: 2, onProgress: (p) => seen.push(p.treesDone) });
  assert.deepEqual(seen, [1, 2, 3, 4, 5, 6]);

  const controller = new AbortController();
  const reason = new Error("stop now");
  const started = performance.now();
  await assert.rejects(
    trainForest(dataset, { trees: 5000 }, {
      workers: 2,
      signal: controller.signal,
      onProgress: (p) => {
        if (p.treesDone === 2) controller.abort(reason);
      },
    }),
    (error) => error === reason,
  );
  assert.ok(performance.now() - started < 20_000, "aborting does not wait for the remaining trees");
  await assert.rejects(trainForest(dataset, {}, { signal: AbortSignal.abort(reason) }), (e) => e === reason);
});

Deno.test("resolveForestParams() fills defaults and rejects invalid values", () => {
  assert.deepEqual(resolveForestParams(), {
    trees: 100,
    maxFeatures: "sqrt",
    maxDepth: 0,
    minSamplesLeaf: 1,
    bootstrap: true,
    seed: 42,
  });
  assert.throws(() => resolveForestParams({ trees: 0 }), /trees must be an integer between 1/);
  assert.throws(() => resolveForestParams({ minSamplesLeaf: 1.5 }), /minSamplesLeaf/);
  assert.throws(() => resolveForestParams({ maxFeatures: "half" as "sqrt" }), /maxFeatures/);
  assert.equal(resolveMaxFeatures("sqrt", 20000), 141);
  assert.equal(resolveMaxFeatures("log2", 20000), 14);
  assert.equal(resolveMaxFeatures(500, 100), 100);
  assert.equal(resolveMaxFeatures("sqrt", 1), 1);
});

Deno.test("trainForest() handles degenerate data: one class, empty rows, duplicate rows with both labels", async () => {
  const oneClass = SparseDataset.fromRows(3, [[0], [1], [2]], [1, 1, 1]);
  const a = await trainForest(oneClass, { trees: 3 }, { workers: 0 });
  assert.equal(a.stats.nodes, 3, "each tree is a single leaf");
  assert.equal(a.predictProba([0]), 1);
  // Identical rows with different labels cannot be split: the leaf holds the weighted mix.
  const mixed = SparseDataset.fromRows(500, [[], [], [7, 9], [7, 9]], [0, 1, 0, 1]);
  const b = await trainForest(mixed, { trees: 5, bootstrap: false }, { workers: 0 });
  assert.equal(b.predictProba([]), 0.5);
  assert.equal(b.predictProba([7, 9]), 0.5);
  assert.ok(b.stats.nodes <= 5 * 3);
  await assert.rejects(trainForest(SparseDataset.fromRows(2, [], []), {}, { workers: 0 }), /empty dataset/);
});

Deno.test("Forest.explainProba() decomposes every prediction exactly: bias + contributions = predictProba", async () => {
  const { dataset } = synthetic({ rows: 600, numFeatures: 30, seed: 11, flip: 0.1, informative: 5 });
  const forest = await trainForest(dataset, { trees: 9, seed: 4 }, { workers: 0 });
  const loaded = deserializeForest(serializeForest(forest));
  assert.ok(forest.explainable && loaded.explainable);
  fc.assert(
    fc.property(fc.uniqueArray(fc.integer({ min: 0, max: 29 }), { maxLength: 12 }), (words) => {
      for (const model of [forest, loaded]) {
        const { bias, words: tested, contributions } = model.explainProba(words);
        const total = contributions.reduce((sum, value) => sum + value, bias);
        const p = model.predictProba(words);
        assert.ok(Math.abs(total - p) < 1e-12, `bias + contributions ${total} vs prediction ${p}`);
        // Only words tested on the paths are credited, and the bias is the same for every review.
        assert.equal(new Set(tested).size, tested.length);
        for (const word of tested) assert.ok(word >= 0 && word < 30);
        assert.equal(bias, model.explainProba([]).bias);
      }
    }),
    { numRuns: 200 },
  );
});

Deno.test("Forest.explainProba() credits the informative words in the direction they lean", async () => {
  // Word 0 leans positive, word 1 negative (see _synthetic.ts).
  const { dataset } = synthetic({ rows: 1000, numFeatures: 20, seed: 12, flip: 0.05 });
  const forest = await trainForest(dataset, { trees: 15, seed: 2 }, { workers: 0 });
  const of = (review: number[], word: number) => {
    const { words, contributions } = forest.explainProba(review);
    return contributions[words.indexOf(word)]!;
  };
  assert.ok(of([0], 0) > 0.05);
  assert.ok(of([1], 1) < -0.05);
});

Deno.test("a forest saved without node values still loads and predicts, but says it cannot explain", async () => {
  const { dataset } = synthetic({ rows: 200, numFeatures: 10, seed: 13 });
  const forest = await trainForest(dataset, { trees: 3 }, { workers: 0 });
  const { nodeValues: _, ...older } = forest.toData();
  const old = deserializeForest(serializeForest(new Forest(older)));
  assert.equal(old.explainable, false);
  assert.equal(old.predictProba([0, 2]), forest.predictProba([0, 2]));
  assert.throws(() => old.explainProba([0]), /saved without node values.*retrain/);
});
