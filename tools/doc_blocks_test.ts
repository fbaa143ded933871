import { strict as assert } from "node:assert";
import {
  blockCommands,
  DirectiveError,
  directiveFor,
  parsePromisedJson,
  readBlocks,
  sameShape,
} from "./doc_blocks.ts";

const MARKDOWN = `# Title

\`\`\`sh
make demo    # everything
make test    # every test
\`\`\`

<!-- docs-test: not runnable here for "make bench-deps": installs Debian packages as root -->
\`\`\`sh
$ make bench-deps
./deno task bench --sizes 2000 \\
  --no-docs   # a smoke run
echo 'a # not a comment' "and # neither"
\`\`\`

<!-- docs-test
given data/external/reviews.zip
with server "./deno task serve --host 127.0.0.1"
expect /registered \\S+ version \\d+/
-->

\`\`\`bash
curl -s localhost:8000/predict
\`\`\`

\`\`\`json
{ "label": "positive", "probability": 0.9 }
\`\`\`

\`\`\`text
not a command
\`\`\`
`;

Deno.test("readBlocks() finds every fenced block with its language, directives and promised JSON output", () => {
  const blocks = readBlocks("x.md", MARKDOWN);
  assert.deepEqual(blocks.map((b) => [b.line, b.language]), [
    [3, "sh"],
    [9, "sh"],
    [22, "bash"],
    [26, "json"],
    [
      30,
      "text",
    ],
  ]);
  assert.deepEqual(blocks[0]!.directives, []);
  assert.deepEqual(blocks[1]!.directives, [{
    kind: "not-runnable",
    reason: "installs Debian packages as root",
    prefix: "make bench-deps",
  }]);
  assert.deepEqual(blocks[2]!.directives.map((d) => d.kind), ["given", "with-server", "expect"]);
  assert.equal(blocks[2]!.output, '{ "label": "positive", "probability": 0.9 }');
  assert.equal(blocks[0]!.output, undefined);
});

Deno.test("blockCommands() joins continuations and drops prompts and comments, not quoted #", () => {
  const [, second] = readBlocks("x.md", MARKDOWN);
  assert.deepEqual(blockCommands(second!), [
    { line: 10, text: "make bench-deps" },
    { line: 11, text: "./deno task bench --sizes 2000 --no-docs" },
    { line: 13, text: `echo 'a # not a comment' "and # neither"` },
  ]);
});

Deno.test("directiveFor() applies a prefixed directive only to the commands it names", () => {
  const [, second] = readBlocks("x.md", MARKDOWN);
  assert.ok(directiveFor(second!.directives, "not-runnable", "make bench-deps"));
  assert.equal(directiveFor(second!.directives, "not-runnable", "./deno task bench"), undefined);
});

Deno.test("readBlocks() refuses a mark without a reason, an unknown one, or one not above a shell block", () => {
  for (
    const [markdown, message] of [
      ["<!-- docs-test: not runnable here: -->\n```sh\nx\n```\n", /needs a reason/],
      ["<!-- docs-test: maybe -->\n```sh\nx\n```\n", /unknown docs-test directive "maybe"/],
      ["<!-- docs-test: server -->\ntext\n```sh\nx\n```\n", /right above a shell block/],
      ["<!-- docs-test: server -->\n```json\n{}\n```\n", /right above a shell block/],
    ] as const
  ) {
    assert.throws(
      () => readBlocks("x.md", markdown),
      (e: unknown) => e instanceof DirectiveError && message.test(e.message),
    );
  }
});

Deno.test("sameShape() compares keys, kinds and the number of objects in a list, not values", () => {
  assert.ok(sameShape({ a: 1, b: [{ c: true }] }, { b: [{ c: false }], a: 2 }));
  assert.ok(!sameShape({ a: 1 }, { a: 1, b: 2 }));
  assert.ok(!sameShape({ a: "1" }, { a: 1 }));
  assert.ok(!sameShape([{ a: 1 }, { a: 2 }], [{ a: 1 }]));
  assert.ok(sameShape(["x", "y", "z"], ["w"]), "a list of plain values may have any length");
  assert.ok(!sameShape(["x", 1], ["w"]));
  assert.ok(!sameShape(null, {}));
  assert.ok(sameShape(null, null));
});

Deno.test("parsePromisedJson() reads ... in a list as more elements like those shown", () => {
  const promised = parsePromisedJson('{ "words": [{ "t": "a" }, ...], "n": [1, ...] }');
  assert.ok(sameShape({ words: [{ t: "x" }, { t: "y" }, { t: "z" }], n: [1, 2] }, promised));
  assert.ok(!sameShape({ words: [], n: [] }, promised), "at least the elements shown");
  assert.ok(!sameShape({ words: [{ t: "x" }, { u: 1 }], n: [] }, promised), "each like one shown");
  assert.throws(() => parsePromisedJson("{ ... }"), SyntaxError);
});
