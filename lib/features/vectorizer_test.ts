import assert from "node:assert/strict";
import fc from "fast-check";
import { PipelineError } from "../core/errors.ts";
import {
  DEFAULT_VECTORIZER_CONFIG,
  resolveVectorizerConfig,
  termsOf,
  Vectorizer,
  VocabularyBuilder,
} from "./vectorizer.ts";

/** Exact document frequencies by brute force (one Set per document). */
function exactDf(docs: string[][], ngramMax: 1 | 2): Map<string, number> {
  const df = new Map<string, number>();
  for (const doc of docs) {
    for (const term of new Set(termsOf(doc.filter((t) => t.length > 0), ngramMax))) {
      df.set(term, (df.get(term) ?? 0) + 1);
    }
  }
  return df;
}

/** The exact vocabulary: df >= minDf, by df descending then term, cut at maxFeatures. */
function exactVocabulary(docs: string[][], ngramMax: 1 | 2, minDf: number, maxFeatures: number): string[] {
  return [...exactDf(docs, ngramMax)]
    .filter(([, df]) => df >= minDf)
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
    .slice(0, maxFeatures)
    .map(([term]) => term);
}

const docs = [
  ["not", "good", "at", "all"],
  ["good", "value", "good", "price"],
  ["not", "good"],
  ["great", "value"],
];

Deno.test("Vectorizer.fit() keeps unigrams and bigrams with minDf, ordered by document frequency then term", () => {
  const v = Vectorizer.fit(docs, { minDf: 2 });
  // good: 3 docs; not, not good, value: 2 docs each (ties in term order).
  assert.deepEqual(v.terms, ["good", "not", "not good", "value"]);
  assert.deepEqual(v.stats.documentFrequencies, [3, 2, 2, 2]);
  assert.equal(v.stats.documents, 4);
  assert.equal(v.stats.dfErrorBound, 0);
  assert.equal(v.size, 4);
  assert.equal(v.idOf("not good"), 2);
  assert.equal(v.idOf("good not"), undefined);
  assert.equal(v.termOf(3), "value");
});

Deno.test("Vectorizer.fit() applies maxFeatures and ngramMax 1", () => {
  assert.deepEqual(Vectorizer.fit(docs, { minDf: 1, maxFeatures: 3 }).terms, ["good", "not", "not good"]);
  const unigrams = Vectorizer.fit(docs, { minDf: 1, ngramMax: 1 });
  assert.ok(unigrams.terms.every((t) => !t.includes(" ")));
  assert.deepEqual(
    unigrams.transform(["not", "good"]),
    new Uint32Array([unigrams.idOf("good")!, unigrams.idOf("not")!].sort()),
  );
});

Deno.test("Vectorizer.transform() returns sorted unique ids and ignores unknown terms", () => {
  const v = Vectorizer.fit(docs, { minDf: 2 });
  assert.deepEqual(v.transform(["not", "good", "not", "good", "value"]), new Uint32Array([0, 1, 2, 3]));
  assert.deepEqual(v.transform(["good", "not"]), new Uint32Array([0, 1]), "'good not' is not a term");
  assert.deepEqual(v.transform(["unheard", "of"]), new Uint32Array([]));
  assert.deepEqual(v.transform([]), new Uint32Array([]));
  const long = Array.from({ length: 5000 }, (_, i) => (i % 2 ? "good" : "not"));
  assert.deepEqual(v.transform(long), new Uint32Array([0, 1, 2]));
});

Deno.test("Vectorizer treats empty tokens as absent and spaces inside a token as underscores", () => {
  const v = Vectorizer.fit([["a b", "", "c"], ["a_b", "c"]], { minDf: 2 });
  assert.deepEqual(v.terms, ["a_b", "a_b c", "c"]);
  assert.deepEqual(v.transform(["a b", "", "c"]), new Uint32Array([0, 1, 2]));
});

Deno.test("Vectorizer.toJSON() and fromJSON() round-trip through JSON text", () => {
  const v = Vectorizer.fit(docs, { minDf: 1 });
  const restored = Vectorizer.fromJSON(JSON.parse(JSON.stringify(v)));
  assert.deepEqual(restored.terms, v.terms);
  assert.deepEqual(restored.config, v.config);
  assert.deepEqual(restored.stats, v.stats);
  for (const doc of [...docs, ["value", "not", "good", "at"]]) {
    assert.deepEqual(restored.transform(doc), v.transform(doc));
  }
});

Deno.test("Vectorizer.fromJSON() refuses unknown versions and malformed vocabularies", () => {
  const json = Vectorizer.fit(docs, { minDf: 1 }).toJSON();
  assert.throws(() => Vectorizer.fromJSON({ ...json, format_version: 2 }), (error) => {
    assert.ok(error instanceof PipelineError);
    assert.equal(
      error.message,
      "vocabulary format version 2 is not supported by this build (supports 1); retrain or upgrade",
    );
    return true;
  });
  const cases: unknown[] = [
    null,
    { ...json, format: "other" },
    { ...json, terms: [...json.terms.slice(1), json.terms[1]] },
    { ...json, terms: ["a b c", ...json.terms.slice(1)] },
    { ...json, document_frequencies: [1] },
    { ...json, config: { ...json.config, ngramMax: 3 } },
  ];
  for (const bad of cases) {
    assert.throws(() => Vectorizer.fromJSON(bad), {
      name: "PipelineError",
      message: /vocabulary in the model artifact/,
    });
  }
});

Deno.test("resolveVectorizerConfig() fills defaults and rejects invalid values", () => {
  assert.deepEqual(resolveVectorizerConfig(), { ngramMax: 2, minDf: 2, maxFeatures: 20000 });
  assert.deepEqual(DEFAULT_VECTORIZER_CONFIG, resolveVectorizerConfig());
  assert.throws(() => resolveVectorizerConfig({ ngramMax: 3 as 2 }), /ngramMax must be 1 or 2/);
  assert.throws(() => resolveVectorizerConfig({ minDf: 0 }), /minDf/);
  assert.throws(() => resolveVectorizerConfig({ maxFeatures: 0 }), /maxFeatures/);
  assert.throws(() => new VocabularyBuilder({ maxFeatures: 10 }, { maxCandidates: 5 }), /maxCandidates/);
});

/** Skewed random documents over a small alphabet, so that some terms are frequent and many are rare. */
const documents = fc.array(
  fc.array(fc.integer({ min: 0, max: 60 }).map((i) => `w${Math.floor(i * i / 60)}`), { maxLength: 12 }),
  { minLength: 1, maxLength: 120 },
);

Deno.test("VocabularyBuilder counts exactly while the terms fit under maxCandidates", () => {
  fc.assert(
    fc.property(
      documents,
      fc.integer({ min: 1, max: 3 }),
      fc.constantFrom(1 as const, 2 as const),
      (d, minDf, n) => {
        const v = Vectorizer.fit(d, { minDf, ngramMax: n, maxFeatures: 15 }, { maxCandidates: 1 << 20 });
        assert.deepEqual(v.terms, exactVocabulary(d, n, minDf, 15));
        const df = exactDf(d, n);
        v.terms.forEach((term, id) => assert.equal(v.stats.documentFrequencies[id], df.get(term)));
      },
    ),
    { numRuns: 200 },
  );
});

Deno.test("VocabularyBuilder keeps the lossy-counting bounds when it must drop counters", () => {
  let pruned = 0;
  fc.assert(
    fc.property(documents, (d) => {
      const maxFeatures = 5;
      const builder = new VocabularyBuilder({ minDf: 1, maxFeatures }, { maxCandidates: 2 * maxFeatures });
      for (const doc of d) builder.add(doc);
      const bound = builder.dfErrorBound;
      if (builder.prunes > 0) pruned += 1;
      const v = builder.finish();
      const df = exactDf(d, 2);
      // Estimates never fall below the truth and exceed it by at most the bound.
      v.terms.forEach((term, id) => {
        const estimate = v.stats.documentFrequencies[id]!;
        assert.ok(
          estimate >= df.get(term)! && estimate <= df.get(term)! + bound,
          `${term}: ${estimate} vs ${df.get(term)}`,
        );
      });
      // No term left out is more frequent than both the cut and the bound.
      const cut = v.size === maxFeatures ? Math.min(...v.stats.documentFrequencies) : 0;
      const selected = new Set(v.terms);
      for (const [term, count] of df) {
        if (!selected.has(term)) assert.ok(count <= Math.max(cut, bound), `${term} (df ${count}) was lost`);
      }
    }),
    { numRuns: 300 },
  );
  assert.ok(pruned > 50, `only ${pruned} runs pruned: the property was barely exercised`);
});
