/**
 * The web page at `GET /`: a person types a review's title and text and sees the predicted sentiment, its
 * probability and, when the model can explain itself (`GET version` says so), the review with its words
 * highlighted green and red by how much each pushed the label, and the words that pushed it most. One
 * self-contained HTML document (no external assets, so it works offline and behind
 * any proxy) that calls `POST predict` with `fetch`. Its inline script and style are allowed by hash in a
 * strict Content-Security-Policy, and results are written with `textContent`, never as HTML.
 *
 * @module
 */
import { createHash } from "node:crypto";
import type { ApiLimits } from "./validation.ts";

const STYLE = `
:root { color-scheme: light dark; --pos: #1a7f37; --neg: #cf222e; --muted: #6e7781; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
main { max-width: 40rem; margin: 2rem auto; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin: 0 0 .25rem; }
.lead { color: var(--muted); margin-top: 0; }
label { display: block; font-weight: 600; margin: 1rem 0 .25rem; }
input, textarea { width: 100%; padding: .5rem .6rem; font: inherit; border: 1px solid #8c959f; border-radius: 6px; }
textarea { resize: vertical; min-height: 8rem; }
button { margin-top: 1rem; padding: .55rem 1.2rem; font: inherit; font-weight: 600; border: 0; border-radius: 6px;
  background: #0969da; color: #fff; cursor: pointer; }
button:disabled { opacity: .6; cursor: progress; }
.hint { color: var(--muted); font-size: .85rem; margin-left: .75rem; }
#result { margin-top: 1.5rem; padding: 1rem; border: 1px solid #d0d7de; border-radius: 8px; }
#result p { margin: 0 0 .6rem; font-size: 1.15rem; }
#label { font-weight: 700; text-transform: capitalize; }
#label.positive { color: var(--pos); }
#label.negative { color: var(--neg); }
/* Red from the left is the negative share, green from the right the positive one, as the scale reads. */
.bar { display: flex; justify-content: flex-end; height: .6rem; border-radius: .3rem; background: var(--neg);
  overflow: hidden; }
#bar-fill { height: 100%; width: 50%; background: var(--pos); transition: width .3s; }
@media (prefers-reduced-motion: reduce) { #bar-fill { transition: none; } }
.scale { display: flex; justify-content: space-between; color: var(--muted); font-size: .8rem; }
#explanation { margin-top: 1rem; }
#result .explain-lead { color: var(--muted); font-size: .85rem; margin: 0 0 .4rem; }
#result .explained { margin: 0 0 .5rem; font-size: 1rem; line-height: 1.7; white-space: pre-wrap;
  overflow-wrap: anywhere; }
.explained .field { color: var(--muted); font-size: .8rem; margin-right: .4rem; }
mark { color: inherit; border-radius: 3px; padding: 0 1px; background: transparent; }
mark.pos.s1 { background: rgba(26, 127, 55, .15); } mark.pos.s2 { background: rgba(26, 127, 55, .32); }
mark.pos.s3 { background: rgba(26, 127, 55, .55); } mark.neg.s1 { background: rgba(207, 34, 46, .15); }
mark.neg.s2 { background: rgba(207, 34, 46, .32); } mark.neg.s3 { background: rgba(207, 34, 46, .55); }
#top-words { margin: .25rem 0 0; padding-left: 1.2rem; font-size: .9rem; }
#top-words .pos { color: var(--pos); } #top-words .neg { color: var(--neg); }
#top-words .size { font-variant-numeric: tabular-nums; margin-right: .4rem; }
#error { margin-top: 1.5rem; padding: .75rem 1rem; border-radius: 8px; background: #ffebe9; color: #82071e; }
footer { margin-top: 2rem; color: var(--muted); font-size: .85rem; }
footer a { color: inherit; }
`;

const SCRIPT = `
"use strict";
const $ = (id) => document.getElementById(id);
const form = $("review-form"), button = $("submit"), result = $("result"), errorBox = $("error");

function showError(message) {
  result.hidden = true;
  errorBox.textContent = message;
  errorBox.hidden = false;
}

let explainable = false;

function signed(value) {
  return (value >= 0 ? "+" : "\u2212") + Math.abs(value).toFixed(3);
}

// The typed text, with each explained word wrapped in a mark coloured by its sign, darker the more it weighed.
function highlight(element, label, text, words, largest) {
  element.replaceChildren();
  const name = document.createElement("span");
  name.className = "field";
  name.textContent = label;
  element.append(name);
  let at = 0;
  for (const word of words) {
    if (word.start < at) continue;
    element.append(text.slice(at, word.start));
    const mark = document.createElement("mark");
    const share = largest > 0 ? Math.abs(word.contribution) / largest : 0;
    // s0 (no colour) for a word that barely mattered, then three shades.
    mark.className = (word.contribution >= 0 ? "pos" : "neg") +
      (share > 2 / 3 ? " s3" : share > 1 / 3 ? " s2" : share >= 0.05 ? " s1" : " s0");
    mark.textContent = text.slice(word.start, word.end);
    mark.title = signed(word.contribution) + (word.tokens.join(" ") === mark.textContent.toLowerCase() ? "" : " as " + word.tokens.join(" "));
    element.append(mark);
    at = word.end;
  }
  element.append(text.slice(at));
}

function showExplanation(explanation, review) {
  const box = $("explanation");
  if (!explanation) {
    box.hidden = true;
    return;
  }
  const traced = explanation.words.filter((w) => w.start >= 0).sort((a, b) => a.start - b.start);
  const largest = Math.max(0, ...explanation.words.map((w) => Math.abs(w.contribution)));
  const title = $("explained-title");
  title.hidden = review.title === "";
  highlight(title, "Title", review.title, traced.filter((w) => w.field === "title"), largest);
  highlight($("explained-message"), "Review", review.message, traced.filter((w) => w.field === "text"), largest);
  const top = [...explanation.words].sort((a, b) => Math.abs(b.contribution) - Math.abs(a.contribution)).slice(0, 5);
  const list = $("top-words");
  list.replaceChildren();
  for (const word of top) {
    const item = document.createElement("li");
    const size = document.createElement("span");
    size.className = "size " + (word.contribution >= 0 ? "pos" : "neg");
    size.textContent = signed(word.contribution);
    item.append(size, word.text);
    if (word.tokens.join(" ") !== word.text.toLowerCase()) item.append(" (as " + word.tokens.join(" ") + ")");
    list.append(item);
  }
  box.hidden = false;
}

function showPrediction(prediction, review) {
  errorBox.hidden = true;
  $("label").textContent = prediction.label;
  $("label").className = prediction.label;
  $("probability").textContent = (100 * prediction.probability).toFixed(1) + "% probability";
  $("bar-fill").style.width = (100 * prediction.positive_probability).toFixed(1) + "%";
  showExplanation(prediction.explanation, review);
  result.hidden = false;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  button.disabled = true;
  button.textContent = "Predicting\\u2026";
  try {
    // A relative URL, so the page also works when a proxy serves the API under a path prefix.
    const review = { title: $("title").value, message: $("message").value };
    const response = await fetch("predict", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(explainable ? { ...review, explain: true } : review),
    });
    const body = await response.json().catch(() => null);
    if (!response.ok) throw new Error(body && body.message ? body.message : "the server answered " + response.status);
    showPrediction(body, review);
  } catch (error) {
    showError(error instanceof TypeError ? "cannot reach the server; is it running?" : error.message);
  } finally {
    button.disabled = false;
    button.textContent = "Predict sentiment";
  }
});

$("message").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
});

fetch("version").then((r) => r.ok ? r.json() : null).then((v) => {
  if (v && v.model_name) $("model").textContent = v.model_name + " v" + v.model_version;
  explainable = Boolean(v && v.model_explainable);
  if (v && v.model_card && v.model_card.page) {
    $("model-card").href = v.model_card.page;
    $("model-card-item").hidden = false;
  }
}).catch(() => {});
`;

function sha256Base64(text: string): string {
  return createHash("sha256").update(text).digest("base64");
}

function escapeAttribute(value: string): string {
  return value.replaceAll("&", "&amp;").replaceAll('"', "&quot;").replaceAll("<", "&lt;");
}

/** The page and the headers it must be served with. */
export interface RenderedPage {
  /** The HTML document. */
  html: string;
  /** Response headers, including the Content-Security-Policy that allows exactly the inline code. */
  headers: Record<string, string>;
}

/**
 * Renders the page. The input fields' `maxlength` follow the API's limits, so the browser stops a
 * person before the server would refuse the review.
 *
 * @param options The limits the page reflects and the app version shown in its footer.
 * @returns The HTML and its response headers.
 *
 * @example Usage
 * ```ts
 * import { renderPage } from "./page.ts";
 * const page = renderPage({ maxTitleChars: 1000, maxMessageChars: 20000, appVersion: "0.1.0" });
 * new Response(page.html, { headers: page.headers });
 * ```
 */
export function renderPage(
  options: Pick<ApiLimits, "maxTitleChars" | "maxMessageChars"> & { appVersion: string },
): RenderedPage {
  const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Review sentiment</title>
<link rel="icon" href="data:,">
<style>${STYLE}</style>
</head>
<body>
<main>
<h1>Review sentiment</h1>
<p class="lead">Type a product review and see whether the model reads it as positive or negative.</p>
<form id="review-form">
<label for="title">Title</label>
<input id="title" name="title" maxlength="${options.maxTitleChars}" autocomplete="off" placeholder="e.g. Great value for the price">
<label for="message">Review</label>
<textarea id="message" name="message" rows="6" maxlength="${options.maxMessageChars}" placeholder="What did you like or dislike?"></textarea>
<button id="submit" type="submit">Predict sentiment</button><span class="hint">or Ctrl+Enter</span>
</form>
<section id="result" aria-live="polite" hidden>
<p><span id="label"></span> &middot; <span id="probability"></span></p>
<div class="bar" title="probability that the review is positive"><div id="bar-fill"></div></div>
<div class="scale"><span>negative</span><span>positive</span></div>
<div id="explanation" hidden>
<p class="explain-lead">Why: each word's push, green toward positive, red toward negative (hover for its size)</p>
<p id="explained-title" class="explained"></p>
<p id="explained-message" class="explained"></p>
<p class="explain-lead">The words that pushed it most:</p>
<ol id="top-words"></ol>
</div>
</section>
<p id="error" role="alert" hidden></p>
<footer>Model <span id="model">not loaded</span> &middot; app ${escapeAttribute(options.appVersion)} &middot;
<a href="version">version</a><span id="model-card-item" hidden> &middot; <a id="model-card" href="version">model card</a></span> &middot;
<a href="metrics">metrics</a> &middot; <a href="ready">ready</a></footer>
</main>
<script>${SCRIPT}</script>
</body>
</html>
`;
  const csp = [
    "default-src 'none'",
    `script-src 'sha256-${sha256Base64(SCRIPT)}'`,
    `style-src 'sha256-${sha256Base64(STYLE)}'`,
    "connect-src 'self'",
    "img-src data:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join("; ");
  return {
    html,
    headers: {
      "content-type": "text/html; charset=utf-8",
      "content-security-policy": csp,
      "x-content-type-options": "nosniff",
      "referrer-policy": "no-referrer",
      "cache-control": "no-cache",
    },
  };
}
