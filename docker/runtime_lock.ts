/**
 * Narrows an image's copy of deno.json and deno.lock to the npm packages a package list imports
 * (docker/model_deps.ts, docker/api_deps.ts), so that the image holds nothing else. Deno installs the whole npm
 * snapshot of a lockfile as soon as one npm package is needed, so the test, benchmark and browser packages
 * would otherwise land in every image. The versions stay exactly the locked ones: the narrowed lockfile is the
 * original with the packages no import reaches removed, and `deno install --frozen` checks it.
 *
 * ```sh
 * deno run --no-config --no-lock --allow-read=. --allow-write=deno.json,deno.lock docker/runtime_lock.ts docker/model_deps.ts
 * ```
 *
 * Run inside an image build only: it rewrites deno.json and deno.lock in the current folder.
 *
 * @module
 */

/** The parts of deno.lock (version 5) this reads and writes. */
export interface DenoLock {
  version: string;
  specifiers: Record<string, string>;
  npm: Record<string, { dependencies?: string[]; optionalDependencies?: string[] } & Record<string, unknown>>;
  workspace: { dependencies?: string[] } & Record<string, unknown>;
  [key: string]: unknown;
}

/** The bare specifiers a package list imports: its `import "name";` lines. */
export function importedNames(source: string): string[] {
  return [...source.matchAll(/^import\s+"([^"]+)";/gm)].map((match) => match[1]!);
}

/** `name@version` (a lock key, possibly with a peer suffix) without the version. */
function packageName(key: string): string {
  const at = key.indexOf("@", 1);
  return at < 0 ? key : key.slice(0, at);
}

/**
 * The import map and lockfile restricted to `names`.
 *
 * @param imports deno.json's `imports`.
 * @param lock deno.lock.
 * @param names Import-map keys to keep.
 * @returns The narrowed `imports` and lockfile.
 * @throws {Error} When a name is not in the import map or the lockfile lacks what it resolves to.
 */
export function narrowLock(
  imports: Record<string, string>,
  lock: DenoLock,
  names: string[],
): { imports: Record<string, string>; lock: DenoLock } {
  if (lock.version !== "5") throw new Error(`deno.lock version ${lock.version}; this reads version 5`);
  const keptImports: Record<string, string> = {};
  const specifiers: Record<string, string> = {};
  const roots: string[] = [];
  for (const name of names) {
    const specifier = imports[name];
    if (specifier === undefined) throw new Error(`"${name}" is not in deno.json's imports`);
    const resolved = lock.specifiers[specifier];
    if (resolved === undefined) throw new Error(`deno.lock does not resolve ${specifier}`);
    keptImports[name] = specifier;
    specifiers[specifier] = resolved;
    roots.push(`${specifier.replace(/^npm:/, "").replace(/@[^@]*$/, "")}@${resolved}`);
  }
  // A dependency is named `name` when the lockfile holds one version of it, else `name@version...`.
  const byName = new Map<string, string[]>();
  for (const key of Object.keys(lock.npm)) {
    const name = packageName(key);
    byName.set(name, [...byName.get(name) ?? [], key]);
  }
  const resolveDependency = (dependency: string): string => {
    if (dependency in lock.npm) return dependency;
    const keys = byName.get(dependency) ?? [];
    if (keys.length !== 1) throw new Error(`deno.lock: cannot resolve the dependency ${dependency}`);
    return keys[0]!;
  };
  const npm: DenoLock["npm"] = {};
  const pending = [...roots];
  while (pending.length > 0) {
    const key = pending.pop()!;
    if (key in npm) continue;
    const entry = lock.npm[key];
    if (entry === undefined) throw new Error(`deno.lock has no package ${key}`);
    npm[key] = entry;
    for (const dependency of [...entry.dependencies ?? [], ...entry.optionalDependencies ?? []]) {
      pending.push(resolveDependency(dependency));
    }
  }
  const sorted = Object.fromEntries(
    Object.keys(lock.npm).filter((key) => key in npm).map((key) => [key, npm[key]!]),
  );
  const workspace = { ...lock.workspace, dependencies: Object.keys(specifiers).sort() };
  return { imports: keptImports, lock: { ...lock, specifiers, npm: sorted, workspace } };
}

if (import.meta.main) {
  const [listPath] = Deno.args;
  if (listPath === undefined) {
    console.error("usage: runtime_lock.ts <package list, e.g. docker/model_deps.ts>");
    Deno.exit(2);
  }
  const config = JSON.parse(Deno.readTextFileSync("deno.json")) as { imports: Record<string, string> };
  const lock = JSON.parse(Deno.readTextFileSync("deno.lock")) as DenoLock;
  const narrowed = narrowLock(config.imports, lock, importedNames(Deno.readTextFileSync(listPath)));
  Deno.writeTextFileSync(
    "deno.json",
    JSON.stringify({ ...config, imports: narrowed.imports }, null, 2) + "\n",
  );
  Deno.writeTextFileSync("deno.lock", JSON.stringify(narrowed.lock, null, 2) + "\n");
  console.error(
    `${listPath}: kept ${Object.keys(narrowed.lock.npm).length} of ${
      Object.keys(lock.npm).length
    } npm packages`,
  );
}
