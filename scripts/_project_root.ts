/**
 * A copy of the project in which stages run exactly as `deno task <stage>` runs them: deno.json, deno.lock,
 * scripts/, tools/ and lib/, and an empty data/. Permission paths in deno.json are relative to the config
 * file, so in a copy each stage is granted that copy's data folders and nothing of the real `data/`. The
 * stage tests run stages in one (`_testing.ts`), and so does the benchmark.
 *
 * @module
 */
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root. */
export const REPO_ROOT: string = join(dirname(fileURLToPath(import.meta.url)), "..");

/** The code folders a copy holds. */
export const CODE_FOLDERS: readonly string[] = ["scripts", "tools", "lib"];

async function copyTree(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const entry of Deno.readDir(from)) {
    const source = join(from, entry.name);
    const target = join(to, entry.name);
    if (entry.isDirectory) await copyTree(source, target);
    // Test files are copied too: `scripts/preprocess_test.ts` is a stage whose name only looks like one.
    else if (entry.isFile) await Deno.copyFile(source, target);
  }
}

/**
 * Copies what the stages need to run into `root`: deno.json, deno.lock, the code folders and an empty data/.
 *
 * @param root The copy's folder; created if missing.
 * @param repoRoot The project to copy. @default {REPO_ROOT}
 */
export async function copyProject(root: string, repoRoot: string = REPO_ROOT): Promise<void> {
  await Deno.mkdir(join(root, "data"), { recursive: true });
  for (const file of ["deno.json", "deno.lock"]) await Deno.copyFile(join(repoRoot, file), join(root, file));
  for (const folder of CODE_FOLDERS) await copyTree(join(repoRoot, folder), join(root, folder));
}
