import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { renderPage } from "./page.ts";

const page = renderPage({ maxTitleChars: 123, maxMessageChars: 4567, appVersion: '1.0"<x>' });

function hash(text: string): string {
  return "sha256-" + createHash("sha256").update(text).digest("base64");
}

Deno.test("renderPage() allows exactly its inline script and style by hash in the CSP", () => {
  const csp = page.headers["content-security-policy"]!;
  const script = /<script>([\s\S]*?)<\/script>/.exec(page.html)![1]!;
  const style = /<style>([\s\S]*?)<\/style>/.exec(page.html)![1]!;
  assert.ok(csp.includes(`script-src '${hash(script)}'`), "script hash");
  assert.ok(csp.includes(`style-src '${hash(style)}'`), "style hash");
  assert.match(csp, /default-src 'none'/);
  assert.match(csp, /connect-src 'self'/);
  assert.equal((page.html.match(/<script/g) ?? []).length, 1, "no other script");
});

Deno.test("renderPage() limits the inputs to the API's field limits and escapes the app version", () => {
  assert.match(page.html, /<input id="title"[^>]* maxlength="123"/);
  assert.match(page.html, /<textarea id="message"[^>]* maxlength="4567"/);
  assert.ok(page.html.includes("app 1.0&quot;&lt;x>"));
  assert.ok(!page.html.includes('1.0"<x>'));
});

Deno.test("renderPage() writes results with textContent only, never as HTML", () => {
  assert.doesNotMatch(page.html, /innerHTML|outerHTML|insertAdjacentHTML|document\.write/);
  assert.match(page.html, /\.textContent = prediction\.label/);
});

Deno.test("renderPage() asks for explanations only from a model that gives them, and highlights with DOM nodes", () => {
  assert.match(page.html, /explainable = Boolean\(v && v\.model_explainable\)/);
  assert.match(page.html, /JSON\.stringify\(explainable \? \{ \.\.\.review, explain: true \} : review\)/);
  for (const id of ["explanation", "explained-title", "explained-message", "top-words", "model-card"]) {
    assert.match(page.html, new RegExp(`id="${id}"`), id);
  }
  // Words are wrapped in marks built with createElement and filled with textContent.
  assert.match(page.html, /document\.createElement\("mark"\)/);
  assert.match(page.html, /mark\.textContent = text\.slice\(word\.start, word\.end\)/);
});
