/**
 * Symbolic links and the permission sets. Deno checks a path against a stage's read grant, not the file a
 * link there points to, so a link planted in a granted folder (`data/external/x/train.csv -> /etc/shadow`)
 * would let a stage read, and copy into its outputs, a file its permission set never granted.
 * {@linkcode refuseEscapingLink} resolves an input's real path and refuses it unless it lies in one of the
 * stage's folders (themselves resolved, so a `data/` that is a link to a larger disk keeps working) or the
 * stage was granted the target itself. Writes never follow links at all (see `atomic_file.ts`).
 *
 * @module
 */
import { dirname, isAbsolute, relative, resolve, sep } from "node:path";
import { PipelineError } from "./errors.ts";

function isInside(child: string, parent: string): boolean {
  const path = relative(parent, child);
  return path === "" || (path.split(sep)[0] !== ".." && !isAbsolute(path));
}

/**
 * Refuses to read `path` when it, or a folder on its way, is a symbolic link to somewhere outside
 * `folders` that the stage was not granted. A missing path passes (the caller reports it).
 *
 * @param path The input the stage is about to read.
 * @param folders The folders the stage may read, as in its permission set (e.g. `["data/raw"]`); by default
 * the input's own folder.
 * @throws {PipelineError} `<path> is a symbolic link to <target>, outside the folders this stage may read
 * (...); copy the file there instead of linking it`.
 *
 * @example Usage
 * ```ts ignore
 * import { refuseEscapingLink } from "./read_guard.ts";
 * await refuseEscapingLink("data/raw/train.csv", ["data/raw"]);
 * ```
 */
export async function refuseEscapingLink(
  path: string,
  folders: readonly string[] = [dirname(path)],
): Promise<void> {
  let target: string;
  try {
    target = await Deno.realPath(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return;
    throw error;
  }
  if (target === resolve(path)) return;
  for (const folder of folders) {
    const real = await Deno.realPath(folder).catch(() => resolve(folder));
    if (isInside(target, real)) return;
  }
  if (Deno.permissions.querySync({ name: "read", path: target }).state === "granted") return;
  throw new PipelineError(
    `${path} is a symbolic link to ${target}, outside the folders this stage may read (${
      folders.join(", ")
    }); ` +
      "copy the file there instead of linking it",
  );
}

/**
 * Opens an input for reading after {@linkcode refuseEscapingLink}: the way every stage opens its inputs.
 *
 * @param path The input.
 * @param folders The folders the stage may read; by default the input's own folder.
 */
export async function openInput(path: string, folders?: readonly string[]): Promise<Deno.FsFile> {
  await refuseEscapingLink(path, folders);
  return await Deno.open(path, { read: true });
}
