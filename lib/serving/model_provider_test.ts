import assert from "node:assert/strict";
import { wordListModel } from "./_wordlist_model.ts";
import { type LoadedModel, ReloadingModelProvider, staticModelProvider } from "./model_provider.ts";

Deno.test("ReloadingModelProvider.reload() shares one load between concurrent calls", async () => {
  let loads = 0;
  let release: () => void = () => {};
  const provider = new ReloadingModelProvider(async () => {
    loads++;
    await new Promise<void>((resolve) => (release = resolve));
    return wordListModel(String(loads));
  });
  const first = provider.reload();
  const second = provider.reload();
  assert.equal(provider.reloading, true);
  release();
  const [a, b] = await Promise.all([first, second]);
  assert.equal(loads, 1);
  assert.equal(a, b);
  assert.equal(provider.reloading, false);
  const third = provider.reload();
  release();
  assert.notEqual(await third, a, "a later reload loads again");
  assert.equal(loads, 2);
});

Deno.test("ReloadingModelProvider.reload() keeps the current model when a load fails", async () => {
  let fail = false;
  const provider = new ReloadingModelProvider(() =>
    fail ? Promise.reject(new Error("download failed")) : Promise.resolve(wordListModel("1"))
  );
  assert.equal(provider.current(), undefined);
  await provider.reload();
  const serving = provider.current();
  fail = true;
  await assert.rejects(provider.reload(), { message: "download failed" });
  assert.equal(provider.current(), serving);
  assert.equal(provider.reloading, false, "a failed reload does not block the next one");
});

Deno.test("ReloadingModelProvider.reload() reports unchanged when the loader returns the current model", async () => {
  const provider = new ReloadingModelProvider((current: LoadedModel | undefined) =>
    Promise.resolve(current ?? wordListModel("5"))
  );
  const first = await provider.reload();
  assert.equal(first.status, "loaded");
  assert.equal(first.previous, undefined);
  const second = await provider.reload();
  assert.equal(second.status, "unchanged");
  assert.equal(second.model, first.model);
});

Deno.test("staticModelProvider() serves one model and cannot reload without one", async () => {
  const model = wordListModel("2");
  assert.equal(staticModelProvider(model).current(), model);
  assert.equal((await staticModelProvider(model).reload()).status, "unchanged");
  await assert.rejects(staticModelProvider(undefined).reload(), /without a model source/);
});
