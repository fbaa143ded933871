/**
 * Builds the documentation site the way GitHub Pages does (Jekyll, with the plugins Pages runs and the theme
 * named in docs/_config.yml; .github/workflows/docs.yml publishes the same folder) and checks it: the build
 * succeeds without warnings, every Markdown page became an HTML page, and every internal link and image of
 * every page (including the theme's navigation) points at a file of the site, and at an element with that id
 * when it names an anchor.
 *
 * Needs Debian's jekyll, its Pages plugins and the minima theme (`make test-deps` installs them; CI runs it).
 * Without /usr/bin/jekyll the test is skipped and says so loudly.
 */
import assert from "node:assert/strict";
import { dirname, join, normalize, relative } from "node:path";
import { REPO_ROOT } from "../scripts/_testing.ts";

const JEKYLL = "/usr/bin/jekyll";
/** The path Pages serves a project site under: /<repository>/. */
const BASEURL = "/amazon-reviews-mlops";
const DOCS = join(REPO_ROOT, "docs");

// Probed by running it: the test permission set may run it but not read outside the repository.
const present = await new Deno.Command(JEKYLL, { args: ["--version"], stdout: "null", stderr: "null" })
  .output()
  .then(({ success }) => success, () => false);
if (!present) {
  console.warn(
    `\n!! SKIPPED docs/site_test.ts: ${JEKYLL} is missing, so the Pages site is NOT built nor link-checked` +
      "\n!! install it with `make test-deps` (Debian's jekyll, its Pages plugins and the minima theme)\n",
  );
}

async function files(dir: string, suffix: string): Promise<string[]> {
  const found: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    const path = join(dir, entry.name);
    if (entry.isDirectory) found.push(...await files(path, suffix));
    else if (entry.name.endsWith(suffix)) found.push(path);
  }
  return found;
}

function decodeEntities(text: string): string {
  return text.replaceAll("&amp;", "&").replaceAll("&quot;", '"').replaceAll("&#39;", "'");
}

/** The file of the site a link resolves to (a folder serves its index.html), or undefined outside the site. */
function targetFile(site: string, page: string, link: string): string | undefined {
  const path = decodeURIComponent(link.split("#")[0]!.split("?")[0]!);
  let resolved: string;
  if (path === "") resolved = page;
  else if (path.startsWith("/")) {
    if (path !== BASEURL && !path.startsWith(BASEURL + "/")) return undefined;
    resolved = join(site, path.slice(BASEURL.length));
  } else resolved = normalize(join(dirname(page), path));
  return path.endsWith("/") || path === BASEURL ? join(resolved, "index.html") : resolved;
}

Deno.test({
  name: "docs/ builds with Jekyll as GitHub Pages does, with no broken internal link",
  ignore: !present,
  async fn() {
    await Deno.mkdir(join(REPO_ROOT, ".tmp-test"), { recursive: true });
    const site = await Deno.makeTempDir({ dir: join(REPO_ROOT, ".tmp-test"), prefix: "site-" });
    try {
      const { code, stdout, stderr } = await new Deno.Command(JEKYLL, {
        args: [
          "build",
          "--source",
          DOCS,
          "--destination",
          site,
          "--baseurl",
          BASEURL,
          "--strict_front_matter",
        ],
        cwd: REPO_ROOT,
        stdout: "piped",
        stderr: "piped",
      }).output();
      const log = new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr);
      assert.equal(code, 0, `jekyll build failed:\n${log}`);
      assert.doesNotMatch(log, /warn|error|deprecat/i, `jekyll build printed warnings:\n${log}`);

      for (const markdown of await files(DOCS, ".md")) {
        const page = join(site, relative(DOCS, markdown)).replace(/\.md$/, ".html");
        assert.ok(
          await Deno.stat(page).then(() => true, () => false),
          `${relative(DOCS, markdown)} has no page`,
        );
      }

      const ids = new Map<string, Set<string>>();
      const idsOf = async (file: string) => {
        if (!ids.has(file)) {
          const html = await Deno.readTextFile(file);
          ids.set(
            file,
            new Set([...html.matchAll(/\sid="([^"]+)"/g)].map((match) => decodeEntities(match[1]!))),
          );
        }
        return ids.get(file)!;
      };
      const broken: string[] = [];
      let checked = 0;
      for (const page of await files(site, ".html")) {
        const html = await Deno.readTextFile(page);
        for (const [, , raw] of html.matchAll(/\s(href|src)="([^"]*)"/g)) {
          const link = decodeEntities(raw!);
          if (/^(https?:|mailto:|data:|\/\/)/.test(link)) continue;
          const where = `${relative(site, page)}: ${link}`;
          const file = targetFile(site, page, link);
          if (file === undefined) {
            broken.push(`${where} (outside ${BASEURL}/, where Pages serves the site)`);
            continue;
          }
          checked++;
          if (!await Deno.stat(file).then((info) => info.isFile, () => false)) {
            broken.push(`${where} (no ${relative(site, file)})`);
            continue;
          }
          const anchor = link.includes("#") ? decodeURIComponent(link.slice(link.indexOf("#") + 1)) : "";
          if (anchor && file.endsWith(".html") && !(await idsOf(file)).has(anchor)) {
            broken.push(`${where} (no element with id "${anchor}")`);
          }
        }
      }
      assert.deepEqual(broken, [], `broken links in the built site:\n${broken.join("\n")}`);
      assert.ok(checked > 50, `only ${checked} internal links found; is the extraction broken?`);
    } finally {
      await Deno.remove(site, { recursive: true }).catch(() => {});
    }
  },
});
