/**
 * Keeps the documentation true.
 *
 * - The generated stage reference (`docs/model/scripts.md`) is current, and every default a stage's
 *   `--help` states comes from a named constant, not a literal copied into the text.
 * - Every shell block of README.md and docs/ runs as written (`tools/doc_blocks.ts` has the marking
 *   convention): each Markdown file gets a scratch copy of the project with the real permission sets, the
 *   tests' MLflow server (`MLFLOW_TRACKING_URI`) and a model name of its own, and its blocks run in order,
 *   each command in a fresh `bash` at the copy's root. A command must exit 0 and print what the text says
 *   it prints; a block marked not runnable here is counted with its reason; a block run by another test
 *   is checked to be that test's. The test prints how many blocks it ran and how many are marked.
 * - Every `deno task` and `make` command shown names a real task or target with flags that stage declares,
 *   and every relative link points at a file that exists.
 */
import { strict as assert } from "node:assert";
import { dirname, join, normalize } from "node:path";
import { MAKEFILES, renderScriptsDoc, SCRIPTS_DOC, stageHelp, STAGES } from "../tools/gen_docs.ts";
import {
  blockCommands,
  COMMAND_LANGUAGES,
  directiveFor,
  type DocBlock,
  type DocCommand,
  parsePromisedJson,
  readBlocks,
  sameShape,
} from "../tools/doc_blocks.ts";
import { buildZip } from "../lib/_testing.ts";
import { formatReviewLine } from "../lib/data/csv.ts";
import { generateReviews } from "../lib/data/sample_data.ts";
import { requireServer } from "../scripts/_testing.ts";

const ROOT = normalize(join(dirname(new URL(import.meta.url).pathname), ".."));
const trackingUri = Deno.env.get("MLFLOW_TRACKING_URI") ?? "http://127.0.0.1:5501";

async function markdownFiles(): Promise<string[]> {
  const files = ["README.md"];
  async function walk(dir: string): Promise<void> {
    const entries: Deno.DirEntry[] = [];
    for await (const entry of Deno.readDir(join(ROOT, dir))) entries.push(entry);
    for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
      const path = `${dir}/${entry.name}`;
      if (entry.isDirectory) await walk(path);
      else if (entry.name.endsWith(".md")) files.push(path);
    }
  }
  await walk("docs");
  return files;
}

async function commandBlocks(file: string): Promise<DocBlock[]> {
  const blocks = readBlocks(file, await Deno.readTextFile(join(ROOT, file)));
  return blocks.filter((block) => COMMAND_LANGUAGES.has(block.language));
}

// ---------------------------------------------------------------------------------------------------
// The generated reference and --help defaults

Deno.test("docs/model/scripts.md matches every stage's --help (run make docs when this fails)", async () => {
  const committed = await Deno.readTextFile(join(ROOT, SCRIPTS_DOC));
  assert.equal(committed, await renderScriptsDoc(ROOT));
});

Deno.test("every default a stage's --help states is built from a constant, not a literal in the text", async () => {
  // `(default ${CONSTANT})`, `(default ENV_NAME or ${CONSTANT})` and `(default: how it is computed)` are
  // fine; `(default 5)` is a copy of a value that can drift from the code, as --epochs once did.
  const literal = /\(default (?!\$\{|:|[A-Z_]+ or \$\{)([^)\n]*)/g;
  let defaults = 0;
  for await (const entry of Deno.readDir(join(ROOT, "scripts"))) {
    if (!entry.name.endsWith(".ts") || entry.name.endsWith("_test.ts")) continue;
    const source = await Deno.readTextFile(join(ROOT, "scripts", entry.name));
    defaults += source.match(/\(default[ :]/g)?.length ?? 0;
    for (const [text] of source.matchAll(literal)) {
      assert.fail(`scripts/${entry.name}: "${text}" states a default as a literal; interpolate its constant`);
    }
  }
  assert.ok(defaults > 20, `only ${defaults} defaults found in the stages' usage; is the scan broken?`);
});

// ---------------------------------------------------------------------------------------------------
// Static checks of the commands shown

async function makeTargets(): Promise<Set<string>> {
  const names = new Set<string>();
  for (const file of MAKEFILES) {
    const text = await Deno.readTextFile(join(ROOT, file)).catch(() => "");
    for (const match of text.matchAll(/^([a-zA-Z0-9_-]+):(?!=)/gm)) names.add(match[1]!);
  }
  return names;
}

Deno.test("every deno task and make command in the docs names a real task or target with real flags", async () => {
  const config = JSON.parse(await Deno.readTextFile(join(ROOT, "deno.json")));
  const tasks = new Set(Object.keys(config.tasks));
  const targets = await makeTargets();
  // The flags each stage's --help documents, which the docs' commands may use.
  const stages = new Map<string, Set<string>>();
  for (const stage of STAGES) {
    const help = await stageHelp(stage, ROOT);
    stages.set(stage, new Set([...help.matchAll(/--([a-zA-Z0-9_-]+)/g)].map((match) => match[1]!)));
  }
  let checked = 0;
  for (const file of await markdownFiles()) {
    for (const block of await commandBlocks(file)) {
      for (const { text: command, line } of blockCommands(block)) {
        for (const part of command.split(/\s*(?:&&|\|\||;|\||&)\s*/)) {
          const words = part.trim().split(/\s+/).filter((word) => !/^[A-Z_]+=/.test(word));
          // A bare `deno` is not on a fresh clone's PATH; the docs use the checkout's `./deno`.
          assert.ok(
            !(words[0] === "deno" && ["task", "run", "test"].includes(words[1]!)),
            `${file}:${line}: "${part}" needs Deno on PATH; write ./deno ${words.slice(1).join(" ")}`,
          );
          if (words[0] === "./deno" && words[1] === "task") {
            const task = words[2]!;
            assert.ok(tasks.has(task), `${file}:${line}: "${part}" names no task "${task}" in deno.json`);
            const stage = stages.get(task);
            for (const word of stage ? words.slice(3) : []) {
              const flag = /^--([a-zA-Z0-9_-]+)/.exec(word)?.[1];
              if (!flag) continue;
              assert.ok(
                flag === "help" || flag === "json" || stage!.has(flag),
                `${file}:${line}: "${part}" uses --${flag}, which ${task} --help does not document`,
              );
            }
            checked++;
          } else if (
            words[0] === "make" && words[1] && !words[1].includes("=") && !words[1].startsWith("-")
          ) {
            assert.ok(targets.has(words[1]), `${file}:${line}: "${part}" names no make target "${words[1]}"`);
            checked++;
          }
        }
      }
    }
  }
  assert.ok(checked > 20, `only ${checked} commands found; is the extraction broken?`);
});

Deno.test("every relative link in the docs points at an existing file, inside docs/ for a page of the site", async () => {
  for (const file of await markdownFiles()) {
    const text = await Deno.readTextFile(join(ROOT, file));
    for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      if (/^(https?:|mailto:|#)/.test(target!)) continue;
      const path = normalize(join(ROOT, dirname(file), target!.split("#")[0]!));
      // Pages publishes docs/ alone: a link from a page to a file outside it is a 404 on the site.
      assert.ok(
        !file.startsWith("docs/") || path.startsWith(join(ROOT, "docs") + "/"),
        `${file}: link to ${target} leaves docs/, which the site does not publish; name the file in code instead`,
      );
      const exists = await Deno.stat(path).then(() => true, () => false);
      assert.ok(exists, `${file}: link to ${target} points at nothing`);
    }
  }
});

// ---------------------------------------------------------------------------------------------------
// Running the blocks

/** What a command prints, wherever the docs show it: the stages' contract (README, "Every stage shares…"). */
const PRINTS: { command: RegExp; stdout?: RegExp; file?: { path: RegExp; firstLine: string } }[] = [
  {
    command: /^\.\/deno task split_batches\b(?!.*--json)/,
    stdout: /^(wrote \d+ batches to data\/batches: \d+ rows|data\/batches is up to date: \d+ batches)/m,
  },
  {
    command: /^\.\/deno task preprocess_(batch|test)\b(?!.*--json)/,
    stdout: /^(wrote )?data\/processed\/\S+\.tsv( is up to date)?: \d+ rows, \d+ rejected/m,
  },
  { command: /^\.\/deno task train\b(?!.*--json)/, stdout: /^run [0-9a-f]{32}: registered \S+ version \d+/m },
  {
    command: /^\.\/deno task evaluate\b(?!.*--json)/,
    stdout:
      /version \d+ on data\/processed\/test\.tsv \(run [0-9a-f]{32}\):\n[\s\S]*accuracy[\s\S]*\npromotion: /,
  },
  {
    command: /^\.\/deno task predict --title\b(?!.*--json)/,
    stdout: /^(positive|negative) \(probability 0\.\d{4}, polarity [12]\) by \S+ version \d+$/m,
  },
  {
    command: /^\.\/deno task predict --input\b.*>/,
    file: { path: />\s*(\S+)\s*$/, firstLine: "line,true_polarity,polarity,label,probability" },
  },
  { command: /^make demo\b/, stdout: /Registered model version: \d+\nMLflow UI: http/ },
  { command: /^make pipeline-train\b/, stdout: /"model_version":"\d+"[\s\S]*promotion: / },
];

/** Seconds any one documented command may take before it fails the test. */
const COMMAND_TIMEOUT_S = 600;
/** Seconds a documented server has to answer `GET /ready`. */
const SERVER_READY_S = 120;

interface Counts {
  files: number;
  blocks: number;
  ran: number;
  runBy: number;
  notRunnable: number;
  commands: number;
  commandsNotRunnable: number;
  reasons: Map<string, number>;
}

/**
 * A scratch copy of the project for one Markdown file: every top-level file and folder except the data and
 * scratch folders, with `node_modules` and the Python environments linked to the real ones. Modification
 * times are kept, so make sees the MLflow install as current.
 */
async function docsRoot(): Promise<{ path: string } & AsyncDisposable> {
  const base = join(ROOT, ".tmp-test");
  await Deno.mkdir(base, { recursive: true });
  const path = await Deno.makeTempDir({ dir: base, prefix: "docs-" });
  const skip = new Set([".git", ".tmp-test", ".tmp-bench", "data", "mlflow-data"]);
  const copy = async (from: string, to: string): Promise<void> => {
    const info = await Deno.lstat(from);
    if (info.isDirectory) {
      await Deno.mkdir(to);
      for await (const entry of Deno.readDir(from)) await copy(join(from, entry.name), join(to, entry.name));
    } else if (info.isFile) {
      await Deno.copyFile(from, to);
      if (info.mtime) await Deno.utime(to, info.atime ?? info.mtime, info.mtime);
    }
  };
  for await (const entry of Deno.readDir(ROOT)) {
    if (skip.has(entry.name)) continue;
    const from = join(ROOT, entry.name);
    if (entry.name === "node_modules" || entry.name.startsWith(".venv")) {
      // Deno.symlink needs unscoped read and write; ln needs only the test's grant to run bash.
      const link = await new Deno.Command("bash", {
        args: ["-c", 'ln -s "$1" "$2"', "ln", await Deno.realPath(from), join(path, entry.name)],
        stdin: "null",
      }).output();
      assert.ok(link.success, `ln -s ${from}: ${decode(link.stderr)}`);
    } else {
      await copy(from, join(path, entry.name));
    }
  }
  await Deno.mkdir(join(path, "data"));
  return { path, [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }) };
}

interface Output {
  code: number;
  stdout: string;
  stderr: string;
}

function decode(bytes: Uint8Array): string {
  return new TextDecoder().decode(bytes);
}

/** The environment of every documented command: a reader's shell pointed at the tests' MLflow server. */
function readerEnv(modelName: string): Record<string, string> {
  const env: Record<string, string> = { NO_COLOR: "1" };
  for (const name of ["PATH", "HOME", "DENO_DIR", "TMPDIR"]) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  const mlflow = new URL(trackingUri).host;
  return {
    ...env,
    MLFLOW_TRACKING_URI: trackingUri,
    // As the README says for a tracking URI that is not the default; the API page adds the listen address.
    MLFLOW_ALLOW_NET: `--allow-net=${mlflow},0.0.0.0:8000,127.0.0.1:8000`,
    MLFLOW_EXPERIMENT_NAME: modelName,
    MLFLOW_MODEL_NAME: modelName,
  };
}

/** `bash -c SCRIPT` at `root` with only `env`, as a reader's fresh shell runs a command. */
function spawnBash(root: string, script: string, env: Record<string, string>): Deno.ChildProcess {
  return new Deno.Command("bash", {
    args: ["-c", script],
    cwd: root,
    env,
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

async function runCommand(root: string, command: string, env: Record<string, string>): Promise<Output> {
  const child = spawnBash(root, command, env);
  const timer = setTimeout(() => child.kill("SIGKILL"), COMMAND_TIMEOUT_S * 1000);
  const output = await child.output();
  clearTimeout(timer);
  return { code: output.code, stdout: decode(output.stdout), stderr: decode(output.stderr) };
}

/** The port a documented server listens on: its `--port N`, else the stages' 8000. */
function serverPort(command: string): number {
  return Number(/--port[ =](\d+)/.exec(command)?.[1] ?? 8000);
}

async function ready(port: number): Promise<boolean> {
  try {
    const response = await fetch(`http://127.0.0.1:${port}/ready`, { signal: AbortSignal.timeout(2000) });
    await response.body?.cancel();
    return response.status === 200;
  } catch {
    return false;
  }
}

/**
 * Starts a documented server (`exec`, so the signal reaches it), waits until `GET /ready` answers 200, and
 * returns a function that stops it with SIGTERM and resolves with its output; it must then exit 0.
 */
async function startServer(
  root: string,
  command: string,
  env: Record<string, string>,
): Promise<() => Promise<Output>> {
  const child = spawnBash(root, `exec ${command}`, env);
  const output = child.output().then((o) => ({
    code: o.code,
    stdout: decode(o.stdout),
    stderr: decode(o.stderr),
  }));
  let exited: Output | undefined;
  output.then((o) => exited = o);
  const port = serverPort(command);
  const deadline = Date.now() + SERVER_READY_S * 1000;
  while (!(await ready(port))) {
    if (exited) throw new Error(`"${command}" exited ${exited.code} before it was ready:\n${exited.stderr}`);
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`"${command}" did not answer GET /ready on :${port} within ${SERVER_READY_S} s`);
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  return async () => {
    try {
      child.kill("SIGTERM");
    } catch { /* already exited */ }
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
    const result = await output;
    clearTimeout(timer);
    return result;
  };
}

/** The stages that leave a registered version holding @champion, on generated data. */
const CHAMPION_MODEL = [
  "./deno task ingest --source sample --rows 2000 --test-rows 500",
  "./deno task split_batches",
  "./deno task preprocess_batch 0",
  "./deno task preprocess_test",
  "./deno task train --batches 0",
  "./deno task evaluate --model_version latest",
];

/** A stand-in for a reader's own file: a zip in the dataset's layout, a review CSV, or a folder of them. */
async function writeGiven(root: string, path: string): Promise<void> {
  const csv = (rows: number, seed: number) =>
    [...generateReviews({ rows, seed })].map(formatReviewLine).join("");
  await Deno.mkdir(dirname(join(root, path)), { recursive: true });
  if (path.endsWith(".zip")) {
    const folder = path.slice(path.lastIndexOf("/") + 1, -".zip".length);
    await Deno.writeFile(
      join(root, path),
      await buildZip({ [`${folder}/train.csv`]: csv(3000, 11), [`${folder}/test.csv`]: csv(500, 12) }),
    );
  } else if (path.endsWith(".csv")) {
    await Deno.writeTextFile(join(root, path), csv(200, 13));
  } else if (!/\.\w+$/.test(path)) {
    // A folder of sources, one review CSV each.
    await Deno.mkdir(join(root, path), { recursive: true });
    await Deno.writeTextFile(join(root, path, "source_a.csv"), csv(200, 14));
    await Deno.writeTextFile(join(root, path, "source_b.csv"), csv(200, 15));
  } else {
    throw new Error(`docs-test "given ${path}": only .zip, .csv and folder stand-ins exist`);
  }
}

/** Checks a command's output against what the docs say it prints. */
async function checkPrints(root: string, command: DocCommand, output: Output, where: string): Promise<void> {
  if (
    /(^|\s)--json(\s|$)/.test(command.text) && !/[>|]/.test(command.text) && !command.text.startsWith("make")
  ) {
    assert.doesNotThrow(() => JSON.parse(output.stdout), `${where}: --json printed no JSON object`);
  }
  for (const rule of PRINTS.filter((r) => r.command.test(command.text))) {
    if (rule.stdout) {
      assert.match(output.stdout, rule.stdout, `${where}: "${command.text}" did not print what the docs say`);
    }
    if (rule.file) {
      const file = rule.file.path.exec(command.text)![1]!;
      const text = await Deno.readTextFile(join(root, file));
      assert.equal(text.split("\n")[0], rule.file.firstLine, `${where}: ${file}`);
      assert.ok(text.split("\n").length > 2, `${where}: ${file} holds no prediction`);
    }
  }
}

/** True when FILE (another test) runs the block: it reads this Markdown file, or contains each command. */
async function runByOtherTest(file: string, block: DocBlock, commands: DocCommand[]): Promise<void> {
  const text = await Deno.readTextFile(join(ROOT, file)).catch(() => {
    throw new Error(`${block.file}:${block.line}: "run by ${file}": no such file`);
  });
  const squash = (s: string) => s.replace(/\s+/g, " ");
  const covered = text.includes(block.file) || commands.every((c) => squash(text).includes(c.text));
  assert.ok(
    covered,
    `${block.file}:${block.line}: ${file} neither reads ${block.file} nor runs its commands`,
  );
}

async function runFile(file: string, blocks: DocBlock[], counts: Counts): Promise<void> {
  await using root = await docsRoot();
  const env = readerEnv(`docs-${file.replace(/\W+/g, "-")}-${crypto.randomUUID().slice(0, 8)}`);
  let champion = false;
  for (const block of blocks) {
    const commands = blockCommands(block);
    const where = (command?: DocCommand) => `${block.file}:${command?.line ?? block.line}`;
    counts.blocks++;
    const runBy = block.directives.find((d) => d.kind === "run-by" && d.prefix === undefined);
    const whole = block.directives.find((d) => d.kind === "not-runnable" && d.prefix === undefined);
    if (whole && whole.kind === "not-runnable") {
      counts.notRunnable++;
      counts.reasons.set(whole.reason, (counts.reasons.get(whole.reason) ?? 0) + 1);
      continue;
    }
    if (runBy && runBy.kind === "run-by") {
      await runByOtherTest(runBy.file, block, commands);
      counts.runBy++;
      continue;
    }
    for (const given of block.directives) {
      if (given.kind !== "given") continue;
      if (given.what !== "a champion model") {
        await writeGiven(root.path, given.what);
      } else if (!champion) {
        for (const step of CHAMPION_MODEL) {
          const output = await runCommand(root.path, step, env);
          assert.equal(
            output.code,
            0,
            `${where()}: given a champion model: "${step}" failed:\n${output.stderr}`,
          );
        }
        champion = true;
      }
    }
    const background = block.directives.find((d) => d.kind === "with-server");
    const stopBackground = background?.kind === "with-server"
      ? await startServer(root.path, background.command, env)
      : undefined;
    let printed = "";
    let lastStdout = "";
    let ran = 0;
    try {
      for (const command of commands) {
        const skipped = directiveFor(block.directives, "not-runnable", command.text);
        if (skipped) {
          counts.commandsNotRunnable++;
          counts.reasons.set(skipped.reason, (counts.reasons.get(skipped.reason) ?? 0) + 1);
          continue;
        }
        const other = directiveFor(block.directives, "run-by", command.text);
        if (other) {
          await runByOtherTest(other.file, block, [command]);
          continue;
        }
        ran++;
        counts.commands++;
        let output: Output;
        if (directiveFor(block.directives, "server", command.text)) {
          const stop = await startServer(root.path, command.text, env);
          output = await stop();
        } else {
          output = await runCommand(root.path, command.text, env);
        }
        assert.equal(
          output.code,
          0,
          `${where(command)}: "${command.text}" exited ${output.code}:\n${output.stderr.slice(-3000)}`,
        );
        await checkPrints(root.path, command, output, where(command));
        printed += output.stdout + output.stderr;
        lastStdout = output.stdout;
      }
    } finally {
      const stopped = await stopBackground?.();
      if (stopped) {
        assert.equal(
          stopped.code,
          0,
          `${where()}: "${background!.kind === "with-server" && background!.command}" ` +
            `exited ${stopped.code} on SIGTERM:\n${stopped.stderr.slice(-3000)}`,
        );
      }
    }
    if (ran === 0) {
      counts.runBy++;
      continue;
    }
    counts.ran++;
    for (const expect of block.directives) {
      if (expect.kind === "expect") assert.match(printed, expect.pattern, `${where()}: output`);
    }
    if (block.output !== undefined) {
      const promised = parsePromisedJson(block.output);
      let actual: unknown;
      assert.doesNotThrow(
        () => actual = JSON.parse(lastStdout),
        `${where()}: the output is not JSON:\n${lastStdout}`,
      );
      assert.ok(
        sameShape(actual, promised),
        `${where()}: the output does not have the shape of the JSON shown after it:\n${lastStdout}`,
      );
    }
  }
}

Deno.test("every shell block in README.md and docs/ runs as written, or is marked not runnable here with a reason", async (t) => {
  await requireServer(trackingUri);
  const started = performance.now();
  const counts: Counts = {
    files: 0,
    blocks: 0,
    ran: 0,
    runBy: 0,
    notRunnable: 0,
    commands: 0,
    commandsNotRunnable: 0,
    reasons: new Map(),
  };
  for (const file of await markdownFiles()) {
    const blocks = await commandBlocks(file);
    if (blocks.length === 0) continue;
    counts.files++;
    await t.step(file, () => runFile(file, blocks, counts));
  }
  const reasons = [...counts.reasons].map(([reason, n]) => `  ${n} × ${reason}`).join("\n");
  console.log(
    `docs: ${counts.blocks} shell blocks in ${counts.files} files: ${counts.ran} run here (${counts.commands} ` +
      `commands), ${counts.runBy} run by other tests, ${counts.notRunnable} marked not runnable here, ` +
      `${counts.commandsNotRunnable} more commands marked not runnable inside run blocks; ` +
      `${((performance.now() - started) / 1000).toFixed(0)} s\n${reasons}`,
  );
  assert.ok(counts.ran > 0, "no shell block ran");
});
