import assert from "node:assert/strict";
import fc from "fast-check";
import { hashCodeUnits } from "./token_scanner.ts";
import { WordMemo } from "./word_memo.ts";

const lookup = <V>(memo: WordMemo<V>, text: string, start: number, end: number) =>
  memo.get(text, start, end, hashCodeUnits(text, start, end));

Deno.test("WordMemo finds a word inside any text by its position", () => {
  const memo = new WordMemo<string>(100);
  memo.set("cat", hashCodeUnits("cat"), "CAT");
  assert.equal(lookup(memo, "the cat sat", 4, 7), "CAT");
  assert.equal(lookup(memo, "cats", 0, 3), "CAT");
  assert.equal(lookup(memo, "cats", 0, 4), undefined);
  assert.equal(lookup(memo, "ca", 0, 2), undefined);
});

Deno.test("WordMemo tells apart words whose hashes collide", () => {
  // The caller's hash is trusted only to choose where to look: the words themselves are compared.
  const memo = new WordMemo<number>(100);
  memo.set("abc", 42, 1);
  memo.set("abd", 42, 2);
  memo.set("ab", 42, 3);
  assert.equal(memo.get("abd", 0, 3, 42), 2);
  assert.equal(memo.get("abc", 0, 3, 42), 1);
  assert.equal(memo.get("ab", 0, 2, 42), 3);
  assert.equal(memo.get("abe", 0, 3, 42), undefined);
});

Deno.test("WordMemo behaves as a map while under its bound, and stays within it", () => {
  fc.assert(
    fc.property(
      fc.array(fc.string({ minLength: 1, maxLength: 8 }), { maxLength: 300 }),
      fc.integer({ min: 2, max: 64 }),
      (words, bound) => {
        const memo = new WordMemo<string>(bound);
        const reference = new Map<string, string>();
        for (const word of words) {
          const found = lookup(memo, `<${word}>`, 1, word.length + 1);
          // Whatever is found is the value stored for that word; what is missing was never stored or aged out.
          if (found !== undefined) assert.equal(found, reference.get(word));
          else memo.set(word, hashCodeUnits(word), `v:${word}`);
          reference.set(word, `v:${word}`);
          assert.ok(memo.size <= bound, `size ${memo.size} over bound ${bound}`);
        }
        const unbounded = new WordMemo<string>(2 * words.length + 2);
        for (const word of new Set(words)) unbounded.set(word, hashCodeUnits(word), `v:${word}`);
        for (const word of words) assert.equal(lookup(unbounded, word, 0, word.length), `v:${word}`);
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("WordMemo keeps a word that keeps being used while others stream past", () => {
  const memo = new WordMemo<number>(10);
  memo.set("the", hashCodeUnits("the"), 0);
  for (let i = 0; i < 100; i++) {
    const word = `w${i}`;
    memo.set(word, hashCodeUnits(word), i);
    assert.equal(lookup(memo, "the", 0, 3), 0, `lost after ${i} other words`);
  }
});
