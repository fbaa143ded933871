/**
 * Test support shared by the tests of `lib/` and `scripts/`: scratch folders under `.tmp-test/` (the only
 * place tests may write), the Kaggle-format CSVs and zip archives the ingest tests feed in, and reading
 * back what a test wrote. Not used by any stage.
 *
 * @example Usage
 * ```ts ignore
 * import { buildZip, goodRows, readLines, scratchDir } from "./_testing.ts";
 * await using dir = await scratchDir("ingest-");
 * await Deno.writeFile(`${dir.path}/reviews.zip`, await buildZip({ "train.csv": goodRows(10) }));
 * ```
 *
 * @module
 */
import { join } from "node:path";
import { TextReader, Uint8ArrayWriter, ZipWriter } from "@zip.js/zip.js";
import { type ProcessedRow, readProcessed, type ReadProcessedOptions } from "./data/processed_data.ts";
import { TOKENIZER_VERSION, type TokenizerInfo } from "./features/tokenizer.ts";

/** `.tmp-test/` at the project root, where {@linkcode scratchDir} makes its folders. */
export const SCRATCH_ROOT: string = join(import.meta.dirname!, "..", ".tmp-test");

/**
 * A new empty folder under `.tmp-test/`, removed with everything in it on dispose.
 *
 * @param prefix Start of the folder's name, naming the test file that made it (e.g. `"ingest-"`).
 */
export async function scratchDir(prefix: string): Promise<AsyncDisposable & { path: string }> {
  await Deno.mkdir(SCRATCH_ROOT, { recursive: true });
  const path = await Deno.makeTempDir({ dir: SCRATCH_ROOT, prefix });
  return { path, [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }) };
}

/**
 * A zip archive built in memory.
 *
 * @param files Entry name to text.
 * @param level Deflate level; 0 stores the entries uncompressed, so a test can flip a data byte.
 * @returns The archive's bytes.
 */
export async function buildZip(files: Record<string, string>, level = 6): Promise<Uint8Array<ArrayBuffer>> {
  const writer = new ZipWriter(new Uint8ArrayWriter(), { useWebWorkers: false });
  for (const [name, text] of Object.entries(files)) await writer.add(name, new TextReader(text), { level });
  // Copied into a plain ArrayBuffer, which is what `new Response(body)` accepts.
  return new Uint8Array(await writer.close());
}

/**
 * `count` valid rows in the Kaggle format (`"<1|2>","<title>","<text>"` and LF), labels alternating and
 * starting at 1 for an even `offset`; each text holds a comma, which only quoting keeps in its field.
 *
 * @param count Number of rows.
 * @param offset Number of the first row, so that two calls can give distinct rows. @default {0}
 */
export function goodRows(count: number, offset = 0): string {
  let text = "";
  for (let i = offset; i < offset + count; i++) {
    text += `"${1 + (i % 2)}","Title ${i}","Text, of review ${i}"\n`;
  }
  return text;
}

/** The lines of a text file that ends with LF, without their LF. */
export async function readLines(path: string): Promise<string[]> {
  return (await Deno.readTextFile(path)).split("\n").slice(0, -1);
}

/** Every row of a processed `.tsv`, in order (see {@linkcode readProcessed}). */
export async function collectProcessed(
  path: string,
  options: ReadProcessedOptions = {},
): Promise<ProcessedRow[]> {
  const rows: ProcessedRow[] = [];
  for await (const row of readProcessed(path, options)) rows.push(row);
  return rows;
}

/**
 * The tokenizer info that models and processed files recorded before the lexicon and plain titles became
 * the defaults: titles twice (`t:` and plain), no `lexicon` field. What an older champion carries.
 */
export const TOKENIZER_BEFORE_LEXICON: Readonly<TokenizerInfo> = Object.freeze({
  version: TOKENIZER_VERSION,
  lemmas: false,
  negation: true,
  negationWindow: 3,
  title: "both",
  maxWordLength: 40,
  lemmatizer: null,
});

/** Runs a program; true when it exited 0. For the mount helpers below (tests run as root in CI). */
async function succeeds(program: string, args: string[]): Promise<boolean> {
  try {
    const { code } = await new Deno.Command(program, { args, stdout: "null", stderr: "null" }).output();
    return code === 0;
  } catch {
    return false; // not installed, or not granted to the tests
  }
}

/** A file system mounted for a test; unmounted on dispose. */
export interface TestMount extends AsyncDisposable {
  /** The mount point. */
  path: string;
}

function unmountOnDispose(path: string): TestMount {
  return {
    path,
    async [Symbol.asyncDispose]() {
      // Lazy, so a file a failed test left open never keeps the mount (and the scratch folder) alive.
      await succeeds("umount", ["-l", path]);
    },
  };
}

/**
 * Mounts a tmpfs of `bytes` at `path` (created if needed), or returns `undefined` when mounting is not
 * allowed here (not root, no `mount`): the caller then skips and says so.
 */
export async function mountTmpfs(path: string, bytes: number): Promise<TestMount | undefined> {
  await Deno.mkdir(path, { recursive: true });
  if (!(await succeeds("mount", ["-t", "tmpfs", "-o", `size=${bytes},mode=755`, "tmpfs", path]))) {
    return undefined;
  }
  return unmountOnDispose(path);
}

/**
 * Bind-mounts `path` onto itself read-only, so everything in it stays readable and nothing can be
 * written, or returns `undefined` when mounting is not allowed here.
 */
export async function mountReadOnly(path: string): Promise<TestMount | undefined> {
  if (!(await succeeds("mount", ["--bind", path, path]))) return undefined;
  if (!(await succeeds("mount", ["-o", "remount,bind,ro", path]))) {
    await succeeds("umount", ["-l", path]);
    return undefined;
  }
  return unmountOnDispose(path);
}

/** Whether this process may mount file systems (root with `mount` granted); checked once, on a scratch folder. */
export async function canMount(): Promise<boolean> {
  await Deno.mkdir(SCRATCH_ROOT, { recursive: true });
  const probe = await Deno.makeTempDir({ dir: SCRATCH_ROOT, prefix: "mount-probe-" });
  try {
    await using mount = await mountTmpfs(probe, 65536);
    return mount !== undefined;
  } finally {
    await Deno.remove(probe, { recursive: true }).catch(() => {});
  }
}

/** The line a test prints when it cannot mount here, so the run's output says what was not tested. */
export const MOUNT_SKIP_NOTE =
  "skipped: mounting a tmpfs or a read-only bind mount needs root (CI runs as root); this test did not run";
