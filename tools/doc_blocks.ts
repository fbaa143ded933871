/**
 * Reads the shell blocks of the project's Markdown and the `docs-test` marks beside them, for
 * `docs/docs_test.ts`, which runs every block a reader is invited to run.
 *
 * A fenced block whose language is `sh`, `bash`, `shell` or `console` is a command block: the reader is
 * invited to run it. Other blocks (`text`, `json`, none) are shown, not run. An HTML comment right above a
 * command block (blank lines between are allowed) says how the test treats it; it is invisible on GitHub
 * and on the Pages site. One directive per line, or one on the comment's own line:
 *
 * ```text
 * <!-- docs-test: not runnable here: needs Kaggle credentials -->
 * <!-- docs-test: not runnable here for "make bench-deps": installs Debian packages as root -->
 * <!-- docs-test: run by docker/docker_test.ts -->
 * <!-- docs-test
 * given data/external/amazon_review_polarity_csv.zip
 * given a champion model
 * server for "./deno task serve"
 * with server "./deno task serve --host 127.0.0.1"
 * expect /registered \S+ version \d+/
 * -->
 * ```
 *
 * - `not runnable here: REASON`: the block is not run; the reason (Kaggle credentials, a cluster, AWS) is
 *   counted and printed. `for "PREFIX"` limits it to the commands that start with PREFIX.
 * - `run by FILE`: another test runs these commands; FILE must exist and name this Markdown file or
 *   contain each command. `for "PREFIX"` limits it as above; `: WHY` may follow.
 * - `given PATH`: the test puts a generated stand-in at PATH first (a reader's own file, such as a
 *   downloaded zip); `.zip` is an archive in the dataset's layout, `.csv` a review CSV, a name without an
 *   extension a folder of two review CSVs.
 * - `given a champion model`: the block needs a registered version holding `@champion`; the test makes one
 *   with the stages (ingest, split, preprocess, train, evaluate on generated data), once per file.
 * - `server`: each command (or, with `for "PREFIX"`, each that starts with PREFIX) is a server that runs
 *   until stopped: it must answer `GET /ready` on its port (`--port N`, else 8000) with 200, then exit 0
 *   on SIGTERM.
 * - `with server "COMMAND"`: COMMAND runs as such a server while the block runs.
 * - `expect /REGEX/`: the block's output (stdout and stderr) must match.
 *
 * A `json` block right after a command block is the output the text promises: the block's stdout must
 * parse as JSON of the same shape (same keys, same kinds of values, as many objects in a list; values may
 * differ); `...` in place of a list element stands for more elements like those shown.
 *
 * @module
 */

/** Languages of the blocks a reader is invited to run. */
export const COMMAND_LANGUAGES: ReadonlySet<string> = new Set(["sh", "bash", "shell", "console"]);

/** A command of a block: continuation lines joined, the `$ ` prompt and trailing comment removed. */
export interface DocCommand {
  /** 1-based line in the Markdown file where the command starts. */
  line: number;
  /** The command as the shell gets it. */
  text: string;
}

/** A `docs-test` directive. */
export type Directive =
  | { kind: "not-runnable"; reason: string; prefix?: string }
  | { kind: "run-by"; file: string; prefix?: string }
  | { kind: "given"; what: string }
  | { kind: "server"; prefix?: string }
  | { kind: "with-server"; command: string }
  | { kind: "expect"; pattern: RegExp };

/** A fenced block of a Markdown file. */
export interface DocBlock {
  /** The Markdown file, relative to the project root. */
  file: string;
  /** 1-based line of the opening fence. */
  line: number;
  /** The info string's first word, lower-case; empty when none. */
  language: string;
  /** The block's text, without the fences. */
  body: string;
  /** Directives of the `docs-test` comment right above it. */
  directives: Directive[];
  /** The `json` block right after it, if any: the output the text promises. */
  output?: string;
}

/** Thrown for a `docs-test` comment the reader cannot parse: a mark that means nothing must fail loudly. */
export class DirectiveError extends Error {
  override name = "DirectiveError";
}

function parseDirective(text: string, where: string): Directive {
  let match: RegExpExecArray | null;
  if ((match = /^not runnable here(?: for "([^"]+)")?:\s*(.*)$/.exec(text))) {
    const reason = match[2]!.trim();
    if (reason === "") throw new DirectiveError(`${where}: "not runnable here" needs a reason`);
    return { kind: "not-runnable", reason, ...(match[1] ? { prefix: match[1] } : {}) };
  }
  if ((match = /^run by (\S+)(?: for "([^"]+)")?(?::\s*(.*))?$/.exec(text))) {
    return { kind: "run-by", file: match[1]!, ...(match[2] ? { prefix: match[2] } : {}) };
  }
  if ((match = /^given (\S+|a champion model)$/.exec(text))) return { kind: "given", what: match[1]! };
  if ((match = /^server(?: for "([^"]+)")?$/.exec(text))) {
    return { kind: "server", ...(match[1] ? { prefix: match[1] } : {}) };
  }
  if ((match = /^with server "(.+)"$/.exec(text))) return { kind: "with-server", command: match[1]! };
  if ((match = /^expect \/(.+)\/([a-z]*)$/.exec(text))) {
    return { kind: "expect", pattern: new RegExp(match[1]!, match[2]!) };
  }
  throw new DirectiveError(`${where}: unknown docs-test directive "${text}"`);
}

/** The directives of one `<!-- docs-test ... -->` comment. */
export function parseDirectives(comment: string, where: string): Directive[] {
  const body = comment.replace(/^<!--\s*docs-test:?/, "").replace(/-->\s*$/, "");
  return body.split("\n").map((line) => line.trim()).filter((line) => line !== "")
    .map((line) => parseDirective(line, where));
}

/**
 * Every fenced block of a Markdown text, with its directives and promised output.
 *
 * @param file The file's path, for messages.
 * @param markdown Its text.
 * @throws {DirectiveError} For a `docs-test` comment that is not right above a command block, or that
 *   holds an unknown directive.
 */
export function readBlocks(file: string, markdown: string): DocBlock[] {
  const lines = markdown.split("\n");
  const blocks: DocBlock[] = [];
  let pending: { line: number; directives: Directive[] } | undefined;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const trimmed = line.trim();
    if (trimmed.startsWith("<!-- docs-test")) {
      let comment = trimmed;
      const start = i;
      while (!comment.includes("-->") && i + 1 < lines.length) comment += "\n" + lines[++i]!.trim();
      pending = { line: start + 1, directives: parseDirectives(comment, `${file}:${start + 1}`) };
      continue;
    }
    const fence = /^(\s*)(`{3,}|~{3,})\s*([^\s`]*)/.exec(line);
    if (!fence) {
      if (trimmed !== "" && pending) {
        throw new DirectiveError(
          `${file}:${pending.line}: a docs-test comment must be right above a shell block`,
        );
      }
      continue;
    }
    const [, indent, marker, info] = fence;
    const bodyLines: string[] = [];
    const opened = i;
    for (i++; i < lines.length; i++) {
      const closing = lines[i]!.trim();
      if (closing.startsWith(marker!) && closing.replace(marker!, "").trim() === "") break;
      bodyLines.push(lines[i]!.startsWith(indent!) ? lines[i]!.slice(indent!.length) : lines[i]!);
    }
    const language = info!.toLowerCase();
    if (pending && !COMMAND_LANGUAGES.has(language)) {
      throw new DirectiveError(
        `${file}:${pending.line}: a docs-test comment must be right above a shell block`,
      );
    }
    const block: DocBlock = {
      file,
      line: opened + 1,
      language,
      body: bodyLines.join("\n"),
      directives: pending?.directives ?? [],
    };
    pending = undefined;
    const previous = blocks.at(-1);
    if (language === "json" && previous && COMMAND_LANGUAGES.has(previous.language)) {
      const between = lines.slice(previous.line, opened).join("\n");
      // Only the previous block's own lines and blank lines lie between: the JSON is its output.
      if (between.split("\n").slice(previous.body.split("\n").length + 1).every((l) => l.trim() === "")) {
        previous.output = block.body;
      }
    }
    blocks.push(block);
  }
  return blocks;
}

/**
 * The commands of a shell block: `\` continuations joined, a leading `$ ` prompt and a trailing
 * ` # comment` removed, blank and comment-only lines dropped.
 */
export function blockCommands(block: Pick<DocBlock, "body" | "line">): DocCommand[] {
  const commands: DocCommand[] = [];
  let pending = "";
  let startLine = 0;
  const lines = block.body.split("\n");
  for (let i = 0; i < lines.length; i++) {
    let line = lines[i]!.replace(/^\$ /, "");
    if (pending === "") startLine = block.line + 1 + i;
    else line = pending + " " + line.trim();
    if (line.endsWith("\\")) {
      pending = line.slice(0, -1).trimEnd();
      continue;
    }
    pending = "";
    const text = stripComment(line).trim();
    if (text !== "") commands.push({ line: startLine, text });
  }
  return commands;
}

/** The line without a trailing `# comment` (a `#` outside quotes, after whitespace or at the start). */
function stripComment(line: string): string {
  let quote: string | undefined;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quote) {
      if (c === quote) quote = undefined;
      else if (c === "\\" && quote === '"') i++;
    } else if (c === "'" || c === '"') {
      quote = c;
    } else if (c === "#" && (i === 0 || /\s/.test(line[i - 1]!))) {
      return line.slice(0, i);
    }
  }
  return line;
}

/**
 * The directive among `directives` of `kind` that applies to `command`: one without a prefix, or one whose
 * prefix starts the command.
 */
export function directiveFor<K extends Directive["kind"]>(
  directives: readonly Directive[],
  kind: K,
  command: string,
): Extract<Directive, { kind: K }> | undefined {
  return directives.find((d): d is Extract<Directive, { kind: K }> =>
    d.kind === kind && (!("prefix" in d) || d.prefix === undefined || command.startsWith(d.prefix))
  );
}

/** Stands for the `...` a promised output ends a list with: more elements of the shapes shown. */
const MORE = "\u2026more";

/**
 * Parses the JSON a doc shows as a command's output. A `...` in place of a list element (`[a, b, ...]`)
 * means "more elements like these".
 *
 * @throws {SyntaxError} When the text is not JSON, `...` aside.
 */
export function parsePromisedJson(text: string): unknown {
  return JSON.parse(text.replace(/([[,])\s*\.\.\.\s*(?=[,\]])/g, `$1 "${MORE}"`));
}

/**
 * True when `actual` has the shape of `promised` (from {@linkcode parsePromisedJson}): the same kind of
 * value; for objects the same keys, each of the same shape; for lists of objects the same length (at least
 * as many when the doc ends the list with `...`), element by element; for lists of plain values any
 * length, each element of a kind shown. Values themselves may differ.
 */
export function sameShape(actual: unknown, promised: unknown): boolean {
  if (Array.isArray(promised)) {
    if (!Array.isArray(actual)) return false;
    const more = promised.at(-1) === MORE;
    const shown = more ? promised.slice(0, -1) : promised;
    if (shown.some((item) => item !== null && typeof item === "object")) {
      if (more ? actual.length < shown.length : actual.length !== shown.length) return false;
      return actual.every((item, i) =>
        i < shown.length ? sameShape(item, shown[i]) : shown.some((example) => sameShape(item, example))
      );
    }
    return shown.length === 0 || actual.every((item) => shown.some((example) => sameShape(item, example)));
  }
  if (promised !== null && typeof promised === "object") {
    if (actual === null || typeof actual !== "object" || Array.isArray(actual)) return false;
    const keys = Object.keys(promised).sort();
    const actualKeys = Object.keys(actual).sort();
    return keys.length === actualKeys.length && keys.every((key, i) => key === actualKeys[i]) &&
      keys.every((key) =>
        sameShape((actual as Record<string, unknown>)[key], (promised as Record<string, unknown>)[key])
      );
  }
  return typeof actual === typeof promised && (actual === null) === (promised === null);
}
