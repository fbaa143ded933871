/**
 * End-to-end test of the web page at `GET /`: a real headless Chromium (Debian's `/usr/bin/chromium`,
 * driven by `playwright-core`) types reviews into the page served by the API handler and checks what the
 * page shows.
 *
 * The test process holds only the `test` permission set, which cannot start a browser, so this file is
 * also the browser driver: the test serves the API on a loopback port and runs this same file with
 * `deno run --drive <url>` and exactly the permissions Chromium needs (its binary, a scratch folder under
 * `.tmp-test/`, the environment). The driver prints what the page showed as JSON; the test asserts.
 *
 * When `/usr/bin/chromium` is missing the test is skipped and says so loudly: install it with
 * `apt-get install -y chromium`. By hand: `deno run ... scripts/serve_e2e_test.ts --drive URL
 * --screenshot page.png` (see {@linkcode driverPermissions}).
 *
 * @module
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { createWordListPredictor, wordListModel } from "../lib/serving/_wordlist_model.ts";
import { createApi } from "../lib/serving/handler.ts";
import { staticModelProvider } from "../lib/serving/model_provider.ts";
import { modelCardLinks } from "../lib/serving/mlflow_model_loader.ts";
import { buildTinyLinearModelFiles } from "../lib/serving/_tiny_model.ts";
import { loadModel } from "../lib/models/artifact.ts";
import { ENGINES } from "../lib/models/engines.ts";
import { REPO_ROOT } from "./_testing.ts";

const CHROMIUM = "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const THIS_FILE = fileURLToPath(import.meta.url);

/** What the page showed for one review. */
interface Shown {
  label: string;
  labelClass: string;
  probability: string;
  barWidth: string;
  error: string | null;
}

/** What the driver reports. */
interface DriverReport {
  title: string;
  model: string;
  positive: Shown;
  negative: Shown;
  empty: Shown;
  consoleErrors: string[];
}

/**
 * The driver's permissions: run Chromium, read and write a scratch folder (Playwright's profile and
 * artifacts go to TMPDIR), the environment (Playwright passes it on to the browser), and the few files
 * Playwright probes at start; its WSL probe is answered "not found".
 */
function driverPermissions(scratch: string, screenshot?: string): string[] {
  return [
    `--allow-run=${CHROMIUM}`,
    "--allow-env",
    "--allow-sys=homedir,osRelease",
    `--allow-read=${CHROMIUM},/etc/os-release,/proc/version,${scratch}`,
    "--ignore-read=/proc/sys/fs/binfmt_misc/WSLInterop,/run/WSL",
    `--allow-write=${[scratch, ...(screenshot ? [screenshot] : [])].join(",")}`,
  ];
}

/** The driver: opens the page, submits reviews, and reports what it shows. */
async function drive(url: string, screenshot: string | undefined): Promise<DriverReport> {
  const { chromium } = await import("playwright-core");
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  try {
    const page = await browser.newPage({ viewport: { width: 900, height: 760 } });
    const consoleErrors: string[] = [];
    page.on("console", (message) => {
      if (message.type() === "error") consoleErrors.push(message.text());
    });
    page.on("pageerror", (error) => consoleErrors.push(String(error)));
    await page.goto(url);
    // The footer fills in from GET /version once the script ran.
    // A locator, not waitForFunction: the page's CSP forbids eval, which a string predicate needs when polled.
    await page.locator("#model").filter({ hasNotText: "not loaded" }).waitFor();

    const submit = async (title: string, message: string, outcome: "#result" | "#error"): Promise<Shown> => {
      await page.fill("#title", title);
      await page.fill("#message", message);
      await page.click("#submit");
      await page.waitForSelector(`${outcome}:not([hidden])`);
      await page.waitForSelector("#submit:not([disabled])");
      return {
        label: (await page.textContent("#label")) ?? "",
        labelClass: (await page.getAttribute("#label", "class")) ?? "",
        probability: (await page.textContent("#probability")) ?? "",
        // The callbacks run in the page; Deno has no DOM types, hence the structural casts.
        barWidth: await page.$eval(
          "#bar-fill",
          (el) => (el as unknown as { style: { width: string } }).style.width,
        ),
        error: await page.isHidden("#error") ? null : await page.textContent("#error"),
      };
    };
    const positive = await submit("Great value", "I love it, works perfectly and looks beautiful", "#result");
    const negative = await submit("Terrible", "Broke after two days, a waste of money", "#result");
    if (screenshot) {
      await page.waitForTimeout(400); // let the bar's 0.3 s width transition finish
      await page.screenshot({ path: screenshot, fullPage: true });
    }
    const empty = await submit("", "   ", "#error");
    return {
      title: await page.title(),
      model: (await page.textContent("#model")) ?? "",
      positive,
      negative,
      empty,
      consoleErrors,
    };
  } finally {
    await browser.close();
  }
}

/** A highlighted word as the page shows it. */
interface Mark {
  text: string;
  className: string;
  title: string;
}

/** What the driver reports for a highlighted review. */
interface ExplainReport {
  label: string;
  explanationShown: boolean;
  titleText: string;
  messageText: string;
  titleMarks: Mark[];
  messageMarks: Mark[];
  topWords: string[];
  modelCardHref: string | null;
  consoleErrors: string[];
}

/** The driver for highlighting: submits one review and reports the marks and the top words. */
async function driveExplain(url: string, title: string, message: string): Promise<ExplainReport> {
  const { chromium } = await import("playwright-core");
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  try {
    const page = await browser.newPage({ viewport: { width: 900, height: 900 } });
    const consoleErrors: string[] = [];
    page.on("console", (m) => void (m.type() === "error" && consoleErrors.push(m.text())));
    page.on("pageerror", (error) => consoleErrors.push(String(error)));
    await page.goto(url);
    await page.locator("#model-card-item").waitFor();
    await page.fill("#title", title);
    await page.fill("#message", message);
    await page.click("#submit");
    await page.waitForSelector("#result:not([hidden])");
    await page.waitForSelector("#submit:not([disabled])");
    // The callbacks run in the page; Deno has no DOM types, hence the structural casts.
    type Element = { textContent: string; className: string; title: string };
    const marks = (selector: string) =>
      page.$$eval(
        selector,
        (els) =>
          (els as unknown as Element[]).map((el) => ({
            text: el.textContent,
            className: el.className,
            title: el.title,
          })),
      );
    // The field's text without its "Title"/"Review" label.
    const text = (selector: string) =>
      page.$eval(selector, (el) => (el as unknown as Element).textContent.replace(/^(Title|Review)/, ""));
    return {
      label: (await page.textContent("#label")) ?? "",
      explanationShown: !(await page.isHidden("#explanation")),
      titleText: await text("#explained-title"),
      messageText: await text("#explained-message"),
      titleMarks: await marks("#explained-title mark"),
      messageMarks: await marks("#explained-message mark"),
      topWords: await page.$$eval(
        "#top-words li",
        (els) => (els as unknown as Element[]).map((el) => el.textContent),
      ),
      modelCardHref: await page.getAttribute("#model-card", "href"),
      consoleErrors,
    };
  } finally {
    await browser.close();
  }
}

/** Serves an API on a loopback port and runs this file as the driver against it. */
async function runDriver(api: ReturnType<typeof createApi>, args: string[]): Promise<string> {
  await using server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, api.handler);
  await Deno.mkdir(`${REPO_ROOT}/.tmp-test`, { recursive: true });
  const scratch = await Deno.makeTempDir({ dir: `${REPO_ROOT}/.tmp-test`, prefix: "chromium-" });
  try {
    const [mode, ...rest] = args;
    const output = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-q",
        ...driverPermissions(scratch),
        THIS_FILE,
        mode!,
        `http://127.0.0.1:${server.addr.port}/`,
        ...rest,
      ],
      env: { TMPDIR: scratch, PLAYWRIGHT_BROWSERS_PATH: scratch, NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(output.code, 0, `the browser driver failed:\n${new TextDecoder().decode(output.stderr)}`);
    return new TextDecoder().decode(output.stdout);
  } finally {
    await Deno.remove(scratch, { recursive: true }).catch(() => {});
  }
}

function chromiumPresent(): boolean {
  // The test's permission set cannot read /usr/bin, so a child with just that grant looks.
  const probe = new Deno.Command(Deno.execPath(), {
    args: ["run", "-q", `--allow-read=${CHROMIUM}`, THIS_FILE, "--probe"],
    stdout: "piped",
    stderr: "null",
  }).outputSync();
  return new TextDecoder().decode(probe.stdout).trim() === "present";
}

if (import.meta.main) {
  const [mode, url, flag, screenshot] = Deno.args;
  if (mode === "--probe") {
    console.log(await Deno.stat(CHROMIUM).then(() => "present", () => "missing"));
  } else if (mode === "--drive" && url) {
    console.log(JSON.stringify(await drive(url, flag === "--screenshot" ? screenshot : undefined)));
  } else if (mode === "--drive-explain" && url && flag !== undefined && screenshot !== undefined) {
    console.log(JSON.stringify(await driveExplain(url, flag, screenshot)));
  } else {
    console.error(
      "usage: serve_e2e_test.ts --probe | --drive URL [--screenshot FILE] | --drive-explain URL TITLE MESSAGE",
    );
    Deno.exit(2);
  }
} else {
  const present = chromiumPresent();
  if (!present) {
    console.error(
      "\n" + "!".repeat(100) +
        `\n!! SKIPPED scripts/serve_e2e_test.ts: ${CHROMIUM} is missing, so the web page is NOT tested` +
        "\n!! Install it with: apt-get install -y chromium\n" + "!".repeat(100) + "\n",
    );
  }

  Deno.test({
    name: "GET / highlights the words of the review it just scored, green and red by contribution (Chromium)",
    ignore: !present,
    async fn() {
      // The real default family (a tiny linear model), so the page shows the product's own explanations.
      const model = loadModel(buildTinyLinearModelFiles(), ENGINES);
      const served = {
        predictor: model,
        name: "tiny-linear",
        version: "5",
        runId: "run-5",
        modelCard: modelCardLinks("http://127.0.0.1:9", "tiny-linear", "5", "run-5"),
        loadedAt: new Date(),
      };
      const api = createApi({
        provider: staticModelProvider(served),
        appVersion: "0.0.0-e2e",
        accessLog: false,
      });
      const title = "Not GOOD, terrible";
      const message = "It didn't work & broke after a week.\nGreat price, though!";
      const report = JSON.parse(await runDriver(api, ["--drive-explain", title, message])) as ExplainReport;
      const explanation = model.explain({ title, text: message });
      const largest = Math.max(...explanation.words.map((w) => Math.abs(w.contribution)));

      assert.equal(report.explanationShown, true);
      assert.equal(report.label, model.predict({ title, text: message }).label);
      // The typed text is shown as typed, every traced word marked, coloured by its sign.
      assert.equal(report.titleText, title);
      assert.equal(report.messageText, message);
      for (const [field, marks] of [["title", report.titleMarks], ["text", report.messageMarks]] as const) {
        const words = explanation.words.filter((w) => w.field === field);
        assert.deepEqual(marks.map((m) => m.text), words.map((w) => w.text), field);
        words.forEach((word, i) => {
          const shade = Math.abs(word.contribution) / largest < 0.05 ? "0" : "[123]";
          const sign = word.contribution >= 0 ? "pos" : "neg";
          assert.match(marks[i]!.className, new RegExp(`^${sign} s${shade}$`), word.text);
        });
      }
      // A negated word is shown as the model saw it; words it learned push the way they should.
      assert.match(report.titleMarks.find((m) => m.text === "GOOD")!.title, / as not_good not__lexpos_$/);
      assert.match(report.titleMarks.find((m) => m.text === "terrible")!.className, /^neg /);
      assert.match(report.messageMarks.find((m) => m.text === "Great")!.className, /^pos /);
      assert.equal(report.messageMarks.find((m) => m.text === "didn't")!.title.endsWith("as did not"), true);
      // The strongest word is the darkest.
      const strongest = explanation.words.find((w) => Math.abs(w.contribution) === largest)!;
      const marks = [...report.titleMarks, ...report.messageMarks];
      assert.match(marks.find((m) => m.text === strongest.text)!.className, / s3$/);
      assert.equal(report.topWords.length, 5);
      assert.match(report.topWords[0]!, new RegExp(`^[+\u2212]\\d\\.\\d{3}${strongest.text}`));
      assert.equal(report.modelCardHref, "http://127.0.0.1:9/#/models/tiny-linear/versions/5");
      assert.deepEqual(report.consoleErrors, []);
    },
  });

  Deno.test({
    name: "GET / lets a person type a review and see the predicted sentiment and its probability (Chromium)",
    ignore: !present,
    async fn() {
      const api = createApi({ provider: staticModelProvider(wordListModel("3")), appVersion: "0.0.0-e2e" });
      const report = JSON.parse(await runDriver(api, ["--drive"])) as DriverReport;
      const expected = (title: string, text: string) => createWordListPredictor().predict({ title, text });
      const positive = expected("Great value", "I love it, works perfectly and looks beautiful");
      const negative = expected("Terrible", "Broke after two days, a waste of money");

      assert.equal(report.title, "Review sentiment");
      assert.equal(report.model, "wordlist-demo v3");
      assert.equal(report.positive.label, "positive");
      assert.equal(report.positive.labelClass, "positive");
      assert.equal(report.positive.probability, `${(100 * positive.probability).toFixed(1)}% probability`);
      assert.equal(report.positive.barWidth, `${(100 * positive.positiveProbability).toFixed(1)}%`);
      assert.equal(report.positive.error, null);
      assert.equal(report.negative.label, "negative");
      assert.equal(report.negative.probability, `${(100 * negative.probability).toFixed(1)}% probability`);
      assert.equal(report.negative.barWidth, `${(100 * negative.positiveProbability).toFixed(1)}%`);
      assert.match(report.empty.error ?? "", /both "title" and "message" are empty/);
      // A CSP violation or a script error would show up here.
      assert.deepEqual(report.consoleErrors.filter((e) => !e.includes("status of 400")), []);
      assert.equal(api.metrics.requestCount("/predict"), 3, "the page called POST /predict three times");
    },
  });
}
