/**
 * Hostile and careless clients against `deno task serve` as a process, with its real permission set and a
 * fake MLflow on loopback: more connections than the process has file descriptors, clients that never
 * finish their headers, more requests at once than the server takes, a flood of `POST /reload`, and the
 * documented proxy (docker/proxy/haproxy.cfg) in front for what Deno's HTTP server cannot do itself. The
 * rows of docs/reliability.md, "Hostile load", name these tests.
 *
 * The proxy test needs HAProxy (`make test-deps` installs it); without it the test is skipped with a
 * banner.
 *
 * @module
 */
import assert from "node:assert/strict";
import type { FakeMlflowState } from "../lib/tracking/_fake_mlflow.ts";
import { buildTinyModelFiles } from "../lib/serving/_tiny_model.ts";
import { createProjectRoot, REPO_ROOT } from "./_testing.ts";
import {
  envFor,
  predict,
  serveFakeMlflow,
  type ServeProcess,
  spawnServe,
  waitFor,
  waitReady,
} from "./_serve_testing.ts";

const NAME = "amazon-reviews-sentiment";
const FD_LIMIT = 1024;
const FLOOD_CONNECTIONS = 1100;
const encoder = new TextEncoder();
const REVIEW = JSON.stringify({ title: "Great", message: "I love it, works great and the battery lasts" });
const PREDICT_REQUEST = encoder.encode(
  `POST /predict HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${
    encoder.encode(REVIEW).length
  }\r\n\r\n${REVIEW}`,
);

async function fakeMlflow(): Promise<ReturnType<typeof serveFakeMlflow> & { state: FakeMlflowState }> {
  const files = await buildTinyModelFiles();
  const state: FakeMlflowState = {
    name: NAME,
    versions: { "1": { runId: "run-one", files }, "2": { runId: "run-two", files } },
    aliases: { champion: "1" },
  };
  return { ...serveFakeMlflow(state), state };
}

/** `serve` on a free loopback port with a model from its own fake MLflow, ready to answer. */
async function startServe(
  args: string[],
  options: { env?: Record<string, string>; shellPrefix?: string } = {},
) {
  const mlflow = await fakeMlflow();
  const root = await createProjectRoot();
  const serve = spawnServe(
    root,
    ["--port", "0", "--host", "127.0.0.1", ...args],
    { ...envFor(mlflow.uri), ...options.env },
    { shellPrefix: options.shellPrefix },
  );
  const base = await serve.base();
  await waitReady(base);
  return {
    serve,
    base,
    mlflow,
    async [Symbol.asyncDispose]() {
      await serve[Symbol.asyncDispose]();
      await root[Symbol.asyncDispose]();
      await mlflow.server.shutdown();
    },
  };
}

/** Whether the process is still running. */
async function running(serve: ServeProcess): Promise<boolean> {
  const exited = await Promise.race([serve.child.status.then(() => true), delay(0).then(() => false)]);
  return !exited;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function portOf(base: string): number {
  return Number(new URL(base).port);
}

/** Connects, giving up after `ms` (a full accept queue drops SYNs, and connect would wait a minute). */
async function connectWithin(port: number, ms: number): Promise<Deno.TcpConn | undefined> {
  const attempt = Deno.connect({ hostname: "127.0.0.1", port });
  const conn = await Promise.race([attempt, delay(ms).then(() => undefined)]).catch(() => undefined);
  // A connection that succeeds after we gave up is closed at once.
  if (conn === undefined) attempt.then((late) => late.close(), () => {});
  return conn;
}

/** Reads whatever comes within `ms`: the bytes, "" when the peer closed the connection, undefined if none. */
async function readWithin(conn: Deno.TcpConn, ms: number): Promise<string | undefined> {
  const buffer = new Uint8Array(4096);
  const read = conn.read(buffer).then(
    (n) => (n === null ? "" : new TextDecoder().decode(buffer.subarray(0, n))),
    () => "",
  );
  return await Promise.race([read, delay(ms).then(() => undefined)]);
}

/** Whether the peer closes the connection within `ms` (reading and discarding what it sends). */
async function closedWithin(conn: Deno.TcpConn, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const data = await readWithin(conn, deadline - Date.now());
    if (data === "") return true;
    if (data === undefined) return false;
  }
  return false;
}

/**
 * What `wrk -c<connections>` does: every client posts a review on its own keep-alive connection, reads
 * the answer and posts again, and reconnects when the connection fails, for `seconds`.
 *
 * @returns Statuses of the answers (by code) and the number of failed connections.
 */
async function flood(port: number, connections: number, seconds: number): Promise<Map<number, number>> {
  const statuses = new Map<number, number>();
  const until = Date.now() + seconds * 1000;
  const client = async () => {
    while (Date.now() < until) {
      const conn = await connectWithin(port, 1000);
      if (!conn) continue;
      try {
        while (Date.now() < until) {
          await conn.write(PREDICT_REQUEST);
          const answer = await readWithin(conn, Math.max(1, until - Date.now()));
          if (!answer) break; // closed, or no answer in time
          const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1]);
          if (status) statuses.set(status, (statuses.get(status) ?? 0) + 1);
          if (/\r\nconnection: close\r\n/i.test(answer)) break;
        }
      } catch {
        // reset by the server: reconnect
      } finally {
        try {
          conn.close();
        } catch { /* already closed */ }
      }
    }
  };
  await Promise.all(Array.from({ length: connections }, client));
  return statuses;
}

async function metricsOf(base: string): Promise<string> {
  return await (await fetch(`${base}/metrics`)).text();
}

function metric(text: string, name: string): number {
  const escaped = name.replace(/[{}"=]/g, (c) => `\\${c}`);
  return Number(new RegExp(`^${escaped} (\\S+)$`, "m").exec(text)?.[1] ?? NaN);
}

async function stop(serve: ServeProcess): Promise<number> {
  serve.child.kill("SIGTERM");
  return (await serve.child.status).code;
}

Deno.test("serve survives running out of file descriptors: 1,100 connections under ulimit -n 1024, one log line, counted in /metrics, recovers", async () => {
  await using started = await startServe(["--model_version", "1", "--no-access-log"], {
    shellPrefix: `ulimit -n ${FD_LIMIT}`,
  });
  const { serve, base } = started;

  const statuses = await flood(portOf(base), FLOOD_CONNECTIONS, 4);
  assert.ok(await running(serve), `serve died under the flood:\n${serve.lines.slice(-5).join("\n")}`);
  assert.ok((statuses.get(200) ?? 0) > 0, `no request was answered during the flood: ${[...statuses]}`);

  // The flood is over: it serves again by itself.
  await waitFor(
    async () =>
      (await fetch(`${base}/health`).then((r) => r.body?.cancel().then(() => r.ok), () => false)) ?? false,
    "health after the flood",
    20_000,
  );
  const after = await predict(base, { message: "works great" });
  assert.equal(after.status, 200);
  await after.body?.cancel();
  const metrics = await metricsOf(base);
  assert.ok(metric(metrics, 'http_listener_failures_total{reason="fd_exhausted"}') >= 1, metrics);
  assert.equal(metric(metrics, "http_listening"), 1);
  const logged = serve.lines.filter((line) => line.includes("out of file descriptors"));
  assert.equal(logged.length, 1, `logged once per incident:\n${logged.join("\n")}`);
  assert.equal(JSON.parse(logged[0]!).level, "error");
  assert.equal(await stop(serve), 0);
});

Deno.test("serve survives 1,100 slow clients that never finish their headers (slowloris), and serves again", async () => {
  await using started = await startServe(["--model_version", "1"], { shellPrefix: `ulimit -n ${FD_LIMIT}` });
  const { serve, base } = started;

  const partial = encoder.encode("GET /health HTTP/1.1\r\nHo");
  const sockets = (await Promise.all(
    Array.from({ length: FLOOD_CONNECTIONS }, async () => {
      const conn = await connectWithin(portOf(base), 2000);
      await conn?.write(partial).catch(() => {});
      return conn;
    }),
  )).filter((conn): conn is Deno.TcpConn => conn !== undefined);
  assert.ok(sockets.length > FD_LIMIT - 100, `only ${sockets.length} sockets connected`);
  await waitFor(
    async () =>
      (await fetch(`${base}/health`).then((r) => r.body?.cancel().then(() => r.ok), () => false)) ?? false,
    "health while the slow clients hang on",
    20_000,
  );
  assert.ok(await running(serve), `serve died:\n${serve.lines.slice(-5).join("\n")}`);
  for (const conn of sockets) {
    try {
      conn.close();
    } catch { /* closed by the server */ }
  }
  assert.ok(serve.lines.some((line) => line.includes("out of file descriptors")));
  assert.equal(await stop(serve), 0);
});

Deno.test("serve answers 503 with Retry-After beyond --max-in-flight on /predict, keeps its probes up, and recovers", async () => {
  await using started = await startServe(["--model_version", "1", "--max-in-flight", "4"]);
  const { serve, base } = started;

  // Four requests in flight: their bodies never finish arriving.
  const stalled = await Promise.all(Array.from({ length: 4 }, async () => {
    const conn = (await connectWithin(portOf(base), 2000))!;
    await conn.write(encoder.encode(
      "POST /predict HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
    ));
    return conn;
  }));
  await waitFor(
    async () => metric(await metricsOf(base), "http_requests_in_flight") >= 5,
    "4 requests in flight",
  );
  const shed = await predict(base, { message: "works great" });
  assert.equal(shed.status, 503);
  assert.equal(shed.headers.get("retry-after"), "1");
  assert.equal((await shed.json()).error_code, "TEMPORARILY_UNAVAILABLE");
  const health = await fetch(`${base}/health`);
  assert.equal(health.status, 200, "probes are never shed");
  await health.body?.cancel();
  assert.ok(metric(await metricsOf(base), "http_requests_shed_total") >= 1);

  for (const conn of stalled) conn.close();
  await waitFor(async () => {
    const response = await predict(base, { message: "works great" });
    await response.body?.cancel();
    return response.status === 200;
  }, "a 200 once the stalled requests are gone");
  assert.equal(await stop(serve), 0);
});

Deno.test("POST /reload is rate-limited (a flood reaches MLflow once) and needs the token when SERVE_RELOAD_TOKEN is set", async (t) => {
  await t.step("from loopback without a token: at most one reload per --reload-interval", async () => {
    await using started = await startServe(["--model_version", "@champion", "--reload-interval", "5"]);
    const { serve, base, mlflow } = started;
    const callsBefore = mlflow.calls.length;
    const statuses = new Map<number, number>();
    let retryAfter: string | null = null;
    const until = Date.now() + 2000;
    while (Date.now() < until) {
      const response = await fetch(`${base}/reload`, { method: "POST" });
      statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
      if (response.status === 429) {
        retryAfter = response.headers.get("retry-after");
        assert.equal((await response.json()).error_code, "REQUEST_LIMIT_EXCEEDED");
      } else {
        await response.body?.cancel();
      }
    }
    assert.equal(statuses.get(200), 1, `statuses: ${[...statuses]}`);
    assert.ok((statuses.get(429) ?? 0) > 10, `statuses: ${[...statuses]}`);
    assert.ok(Number(retryAfter) >= 1 && Number(retryAfter) <= 5, `Retry-After ${retryAfter}`);
    // One reload resolves the alias and finds the version unchanged: a handful of calls, not thousands.
    assert.ok(mlflow.calls.length - callsBefore <= 5, `${mlflow.calls.length - callsBefore} calls to MLflow`);
    assert.equal(await stop(serve), 0);
  });

  await t.step("with SERVE_RELOAD_TOKEN: 401 without it or with a wrong one, 200 with it", async () => {
    await using started = await startServe(["--model_version", "@champion"], {
      env: { SERVE_RELOAD_TOKEN: "s3cret-reload-token" },
    });
    const { serve, base } = started;
    const reload = (authorization?: string) =>
      fetch(`${base}/reload`, { method: "POST", headers: authorization ? { authorization } : {} });
    const missing = await reload();
    assert.equal(missing.status, 401);
    assert.equal((await missing.json()).error_code, "UNAUTHENTICATED");
    const wrong = await reload("Bearer nope");
    assert.equal(wrong.status, 401);
    await wrong.body?.cancel();
    const right = await reload("Bearer s3cret-reload-token");
    assert.equal(right.status, 200);
    await right.body?.cancel();
    assert.ok(!serve.lines.join("\n").includes("s3cret-reload-token"), "the token is never logged");
    assert.equal(await stop(serve), 0);
  });
});

const haproxy = await new Deno.Command("haproxy", { args: ["-v"], stdout: "null", stderr: "null" }).output()
  .then(
    (output) => output.success,
    () => false,
  );
if (!haproxy) {
  console.error(
    "\n*** SKIPPED: the proxy test needs HAProxy (make test-deps installs it: apt-get install haproxy) ***\n",
  );
}

Deno.test({
  name:
    "behind docker/proxy/haproxy.cfg, slow headers and idle keep-alive connections are closed in time and 1,100 connections never exhaust serve's descriptors",
  ignore: !haproxy,
  async fn(t) {
    await using started = await startServe(["--model_version", "1", "--no-access-log"], {
      shellPrefix: `ulimit -n ${FD_LIMIT}`,
    });
    const { serve, base } = started;
    const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const proxyPort = probe.addr.port;
    probe.close();
    const proxy = new Deno.Command("haproxy", {
      args: ["-db", "-f", `${REPO_ROOT}/docker/proxy/haproxy.cfg`],
      env: {
        API_PROXY_BIND: `127.0.0.1:${proxyPort}`,
        API_SERVE_ADDR: `127.0.0.1:${portOf(base)}`,
        API_HEADER_TIMEOUT: "1s",
        API_IDLE_TIMEOUT: "2s",
      },
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const proxyLog = new Response(proxy.stderr).text();
    try {
      const front = `http://127.0.0.1:${proxyPort}`;
      await waitFor(
        async () =>
          (await fetch(`${front}/health`).then((r) => r.body?.cancel().then(() => r.ok), () => false)) ??
            false,
        "the proxy",
      );

      await t.step(
        "a client that never finishes its headers is dropped after the header timeout",
        async () => {
          const conns = (await Promise.all(Array.from({ length: 50 }, () => connectWithin(proxyPort, 2000))))
            .filter((conn): conn is Deno.TcpConn => conn !== undefined);
          await Promise.all(conns.map((conn) => conn.write(encoder.encode("GET /health HTTP/1.1\r\nHo"))));
          const started = Date.now();
          const closed = await Promise.all(conns.map((conn) => closedWithin(conn, 4000)));
          assert.deepEqual(new Set(closed), new Set([true]), "every slow client was dropped within 4 s");
          assert.ok(Date.now() - started >= 500, "not before the timeout");
          for (const conn of conns) conn.close();
        },
      );

      await t.step("an idle keep-alive connection is closed after the idle timeout", async () => {
        const conn = (await connectWithin(proxyPort, 2000))!;
        await conn.write(encoder.encode("GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n"));
        assert.match((await readWithin(conn, 5000)) ?? "", /^HTTP\/1\.1 200/);
        assert.equal(await readWithin(conn, 1000), undefined, "still open during the idle timeout");
        assert.ok(await closedWithin(conn, 4000), "closed after it");
        conn.close();
      });

      await t.step(
        "1,100 clients posting reviews: answered 200 or 503, never a descriptor failure in serve",
        async () => {
          const statuses = await flood(proxyPort, FLOOD_CONNECTIONS, 4);
          assert.ok((statuses.get(200) ?? 0) > 0, `statuses: ${[...statuses]}`);
          assert.deepEqual(
            [...statuses.keys()].filter((s) => s !== 200 && s !== 503),
            [],
            `statuses: ${[...statuses]}`,
          );
          assert.ok(await running(serve));
          const metrics = await metricsOf(base);
          assert.equal(metric(metrics, 'http_listener_failures_total{reason="fd_exhausted"}'), 0, metrics);
        },
      );
    } finally {
      proxy.kill("SIGTERM");
      await proxy.status;
      await proxyLog;
    }
    assert.equal(await stop(serve), 0);
  },
});
