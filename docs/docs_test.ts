/**
 * Keeps the documentation true: the generated scripts reference is current, every `deno task` and `make`
 * command shown in a shell block of README.md or docs/ names a real task or target with flags that stage
 * declares, and every relative link points at a file that exists.
 */
import { strict as assert } from "node:assert";
import { dirname, join, normalize } from "node:path";
import { MAKEFILES, renderScriptsDoc, SCRIPTS_DOC, stageHelp, STAGES } from "../tools/gen_docs.ts";

const ROOT = normalize(join(dirname(new URL(import.meta.url).pathname), ".."));

async function markdownFiles(): Promise<string[]> {
  const files = ["README.md"];
  async function walk(dir: string): Promise<void> {
    for await (const entry of Deno.readDir(join(ROOT, dir))) {
      const path = `${dir}/${entry.name}`;
      if (entry.isDirectory) await walk(path);
      else if (entry.name.endsWith(".md")) files.push(path);
    }
  }
  await walk("docs");
  return files;
}

/** Lines of ```sh / ```bash / ```console blocks, with prompts, comments and continuations handled. */
function shellCommands(markdown: string): string[] {
  const commands: string[] = [];
  const blocks = markdown.matchAll(/```(?:sh|bash|shell|console)\n([\s\S]*?)```/g);
  for (const [, body] of blocks) {
    let pending = "";
    for (const raw of body!.split("\n")) {
      let line = raw.replace(/^\$ /, "");
      if (pending) line = pending + " " + line.trim();
      if (line.endsWith("\\")) {
        pending = line.slice(0, -1).trim();
        continue;
      }
      pending = "";
      const command = line.replace(/\s+#.*$/, "").trim();
      if (command) commands.push(command);
    }
  }
  return commands;
}

async function makeTargets(): Promise<Set<string>> {
  const names = new Set<string>();
  for (const file of MAKEFILES) {
    const text = await Deno.readTextFile(join(ROOT, file)).catch(() => "");
    for (const match of text.matchAll(/^([a-zA-Z0-9_-]+):(?!=)/gm)) names.add(match[1]!);
  }
  return names;
}

Deno.test("docs/model/scripts.md matches every stage's --help (run make docs when this fails)", async () => {
  const committed = await Deno.readTextFile(join(ROOT, SCRIPTS_DOC));
  assert.equal(committed, await renderScriptsDoc(ROOT));
});

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
    for (const command of shellCommands(await Deno.readTextFile(join(ROOT, file)))) {
      for (const part of command.split(/\s*(?:&&|\|\||;|\|)\s*/)) {
        const words = part.trim().split(/\s+/);
        if (words[0] === "deno" && words[1] === "task") {
          const task = words[2]!;
          assert.ok(tasks.has(task), `${file}: "${part}" names no task "${task}" in deno.json`);
          const stage = stages.get(task);
          if (stage) {
            for (const word of words.slice(3)) {
              const flag = /^--([a-zA-Z0-9_-]+)/.exec(word)?.[1];
              if (!flag) continue;
              assert.ok(
                flag === "help" || flag === "json" || stage.has(flag),
                `${file}: "${part}" uses --${flag}, which ${task} --help does not document`,
              );
            }
          }
          checked++;
        } else if (words[0] === "make" && words[1] && !words[1].includes("=") && !words[1].startsWith("-")) {
          assert.ok(targets.has(words[1]), `${file}: "${part}" names no make target "${words[1]}"`);
          checked++;
        }
      }
    }
  }
  assert.ok(checked > 20, `only ${checked} commands found; is the extraction broken?`);
});

Deno.test("every relative link in the docs points at an existing file", async () => {
  for (const file of await markdownFiles()) {
    const text = await Deno.readTextFile(join(ROOT, file));
    for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      if (/^(https?:|mailto:|#)/.test(target!)) continue;
      const path = normalize(join(ROOT, dirname(file), target!.split("#")[0]!));
      const exists = await Deno.stat(path).then(() => true, () => false);
      assert.ok(exists, `${file}: link to ${target} points at nothing`);
    }
  }
});
