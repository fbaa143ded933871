import { strict as assert } from "node:assert";
import { PipelineError } from "../core/errors.ts";
import {
  type MlflowClient,
  MlflowConnectionError,
  type ModelVersion,
  type RegisteredModel,
} from "./mlflow_client.ts";
import {
  applyPromotion,
  type ChampionState,
  decidePromotion,
  findChampion,
  promotionLine,
  promotionTags,
} from "./promotion.ts";

const policy = { metric: "accuracy" as const, margin: 0.002 };

Deno.test("decidePromotion() promotes the first version when there is no champion", () => {
  const d = decidePromotion("1", 0.8, { kind: "none" }, policy);
  assert.equal(d.promoted, true);
  assert.equal(d.alias, "champion");
  assert.equal(d.decision, "promoted");
  assert.equal(d.champion, null);
  assert.match(d.reason, /no champion yet/);
  assert.match(
    promotionLine(d),
    /^promotion: PROMOTED version 1 to @champion \(accuracy 0\.8000; there was no champion\)$/,
  );
});

Deno.test("decidePromotion() promotes only when better by at least the margin", async (t) => {
  const champion = (score: number): ChampionState => ({ kind: "scored", version: "3", score });
  const cases: [string, number, number, boolean][] = [
    ["clearly better", 0.93, 0.91, true],
    ["better by exactly the margin", 0.912, 0.91, true],
    ["better by less than the margin", 0.9115, 0.91, false],
    ["equal", 0.91, 0.91, false],
    ["worse", 0.85, 0.91, false],
    ["not a number", NaN, 0.91, false],
  ];
  for (const [name, score, best, promoted] of cases) {
    await t.step(name, () => {
      const d = decidePromotion("4", score, champion(best), policy);
      assert.equal(d.promoted, promoted);
      assert.equal(d.alias, promoted ? "champion" : "challenger");
      assert.equal(d.champion, best);
      assert.equal(d.championVersion, "3");
      assert.match(
        d.reason,
        promoted ? /^promoted: accuracy/ : /^not promoted: accuracy .* not better by the margin$/,
      );
    });
  }
  const worse = decidePromotion("4", 0.85, champion(0.91), policy);
  assert.equal(
    promotionLine(worse),
    "promotion: NOT promoted; version 4 is @challenger (accuracy 0.8500 vs 0.9100 of version 3, needs +0.0020)",
  );
  assert.equal(
    promotionLine(decidePromotion("4", 0.93, champion(0.91), policy)),
    "promotion: PROMOTED version 4 to @champion (accuracy 0.9300 vs 0.9100 of version 3)",
  );
});

Deno.test("decidePromotion() keeps a version that is already champion and replaces an unusable champion", () => {
  const kept = decidePromotion("3", 0.9, { kind: "same", version: "3" }, policy);
  assert.equal(kept.decision, "kept");
  assert.equal(kept.promoted, false);
  assert.equal(kept.alias, "champion");
  const replaced = decidePromotion(
    "4",
    0.7,
    { kind: "unusable", version: "3", reason: "tokenizer 0-old" },
    policy,
  );
  assert.equal(replaced.promoted, true);
  assert.match(replaced.reason, /champion version 3 cannot be scored by this build \(tokenizer 0-old\)/);
  assert.deepEqual(promotionTags(replaced)["promotion.champion_version"], "3");
  assert.equal(promotionTags(replaced)["promotion.champion_score"], undefined);
});

/** A stand-in for the few registry calls promotion makes, recording the writes. */
function fakeRegistry(aliases: Record<string, number>, versions: Record<string, Record<string, string>>) {
  const writes: string[] = [];
  const client = {
    getRegisteredModel: (name: string): Promise<RegisteredModel> =>
      Promise.resolve({ name, description: "", tags: {}, aliases }),
    getModelVersion: (name: string, version: string | number): Promise<ModelVersion> =>
      Promise.resolve(
        { name, version: Number(version), tags: versions[String(version)] ?? {} } as ModelVersion,
      ),
    setModelVersionTag: (_n: string, version: string | number, key: string, value: string) => {
      writes.push(`tag ${version} ${key}=${key === "promotion.time" ? "*" : value}`);
      return Promise.resolve();
    },
    setAlias: (_n: string, alias: string, version: string | number) => {
      writes.push(`alias ${alias}=${version}`);
      return Promise.resolve();
    },
    deleteAlias: (_n: string, alias: string) => {
      writes.push(`delete ${alias}`);
      return Promise.resolve();
    },
  };
  return { client: client as unknown as MlflowClient, writes };
}

const options = (score: (version: string) => Promise<number>, signal?: AbortSignal) => ({
  version: "5",
  metric: "accuracy" as const,
  testSha256: "abc",
  score,
  ...(signal ? { signal } : {}),
});

Deno.test("findChampion() reuses the champion's recorded score for the same test set, else scores it", async () => {
  const never = () => Promise.reject(new Error("must not score"));
  assert.deepEqual(
    await findChampion(fakeRegistry({}, {}).client, "m", options(never)),
    { kind: "none" },
  );
  assert.deepEqual(
    await findChampion(fakeRegistry({ champion: 5 }, {}).client, "m", options(never)),
    { kind: "same", version: "5" },
  );
  const recorded = fakeRegistry({ champion: 2 }, {
    "2": { "eval.accuracy": "0.9", "eval.test_sha256": "abc" },
  });
  assert.deepEqual(await findChampion(recorded.client, "m", options(never)), {
    kind: "scored",
    version: "2",
    score: 0.9,
  });
  const otherTestSet = fakeRegistry({ champion: 2 }, {
    "2": { "eval.accuracy": "0.9", "eval.test_sha256": "old" },
  });
  const scored: string[] = [];
  const state = await findChampion(
    otherTestSet.client,
    "m",
    options((v) => {
      scored.push(v);
      return Promise.resolve(0.8);
    }),
  );
  assert.deepEqual(state, { kind: "scored", version: "2", score: 0.8 });
  assert.deepEqual(scored, ["2"]);
});

Deno.test("findChampion() calls a champion it cannot load unusable, but never an MLflow failure or Ctrl-C", async () => {
  const registry = fakeRegistry({ champion: 2 }, {});
  const unusable = await findChampion(
    registry.client,
    "m",
    options(() => Promise.reject(new PipelineError('model engine "x" is not known to this build'))),
  );
  assert.deepEqual(unusable, {
    kind: "unusable",
    version: "2",
    reason: 'model engine "x" is not known to this build',
  });
  await assert.rejects(
    findChampion(
      registry.client,
      "m",
      options(() => Promise.reject(new MlflowConnectionError("cannot reach MLflow"))),
    ),
    /cannot reach MLflow/,
  );
  const controller = new AbortController();
  controller.abort();
  await assert.rejects(
    findChampion(
      registry.client,
      "m",
      options(() => Promise.reject(new PipelineError("interrupted by SIGINT")), controller.signal),
    ),
    /interrupted/,
  );
});

Deno.test("applyPromotion() tags the version, then moves the alias; a worse model does not take the champion", async () => {
  const worse = fakeRegistry({ champion: 2 }, {});
  await applyPromotion(
    worse.client,
    "m",
    decidePromotion("5", 0.8, { kind: "scored", version: "2", score: 0.9 }, policy),
  );
  assert.ok(worse.writes.includes("tag 5 promotion.decision=challenger"));
  assert.ok(worse.writes.includes("tag 5 promotion.champion_score=0.9"));
  assert.equal(worse.writes.at(-1), "alias challenger=5");
  assert.ok(!worse.writes.some((w) => w.startsWith("alias champion")));

  const better = fakeRegistry({ champion: 2, challenger: 5 }, {});
  await applyPromotion(
    better.client,
    "m",
    decidePromotion("5", 0.95, { kind: "scored", version: "2", score: 0.9 }, policy),
    "5",
  );
  const aliasAt = better.writes.indexOf("alias champion=5");
  assert.ok(aliasAt > better.writes.indexOf("tag 5 promotion.decision=promoted"), "tags before the alias");
  assert.deepEqual(better.writes.slice(aliasAt), [
    "alias champion=5",
    "delete challenger",
    "tag 2 promotion.superseded_by=5",
  ]);

  const kept = fakeRegistry({ champion: 5 }, {});
  await applyPromotion(kept.client, "m", decidePromotion("5", 0.9, { kind: "same", version: "5" }, policy));
  assert.ok(!kept.writes.some((w) => w.startsWith("alias")));
  assert.ok(kept.writes.includes("tag 5 promotion.decision=kept"));
});
