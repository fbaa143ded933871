import assert from "node:assert/strict";
import { createLogger } from "../core/log.ts";
import { ApiMetrics } from "./prometheus.ts";
import { isFdExhaustion, SupervisedServer } from "./supervised_server.ts";

/** A stand-in for Deno.serve whose servers fail when the test says so. */
function fakeServe() {
  const servers: { options: Deno.ServeTcpOptions; fail: (error: Error) => void; shutdowns: number }[] = [];
  const serve = (options: Deno.ServeTcpOptions): Deno.HttpServer<Deno.NetAddr> => {
    const { promise, reject } = Promise.withResolvers<void>();
    const entry = { options, fail: reject, shutdowns: 0 };
    servers.push(entry);
    const addr: Deno.NetAddr = { transport: "tcp", hostname: options.hostname!, port: options.port || 4321 };
    options.onListen?.(addr);
    return {
      addr,
      finished: promise,
      ref() {},
      unref() {},
      shutdown() {
        entry.shutdowns++;
        return Promise.resolve();
      },
      [Symbol.asyncDispose]: () => Promise.resolve(),
    };
  };
  return { serve, servers };
}

const EMFILE = () => new Error("Http: Error: Too many open files (os error 24)");
const tick = (ms = 5) => new Promise((resolve) => setTimeout(resolve, ms));

Deno.test("isFdExhaustion() recognises EMFILE and ENFILE as Deno reports them", () => {
  assert.ok(isFdExhaustion(EMFILE()));
  assert.ok(isFdExhaustion(new Error("Too many open files in system (os error 23)")));
  assert.ok(!isFdExhaustion(new Error("Connection reset by peer (os error 104)")));
});

Deno.test("SupervisedServer closes a failed server's connections and listens again on the same port", async () => {
  const { serve, servers } = fakeServe();
  const lines: string[] = [];
  const metrics = new ApiMetrics();
  const listened: boolean[] = [];
  const server = new SupervisedServer({
    hostname: "127.0.0.1",
    port: 0,
    handler: () => new Response("ok"),
    serve,
    metrics,
    log: createLogger({ json: true, sink: (line) => lines.push(line) }),
    retryMs: 1,
    maxRetryMs: 4,
    quietMs: 30,
    onListen: (_address, restarted) => listened.push(restarted),
  });
  assert.equal(server.start().port, 4321);
  servers[0]!.fail(EMFILE());
  await tick(20);
  assert.equal(servers.length, 2);
  assert.ok(servers[0]!.options.signal!.aborted, "the failed server's connections were closed");
  assert.equal(servers[1]!.options.port, 4321, "the port picked at first is kept");
  assert.deepEqual(listened, [false, true]);
  assert.equal(server.restarts, 1);

  // More failures in the same incident are counted, not logged.
  servers[1]!.fail(EMFILE());
  await tick(20);
  servers[2]!.fail(new Error("something else"));
  await tick(20);
  const text = metrics.render();
  assert.match(text, /^http_listener_failures_total\{reason="fd_exhausted"\} 2$/m);
  assert.match(text, /^http_listener_failures_total\{reason="other"\} 1$/m);
  assert.match(text, /^http_listening 1$/m);
  const failures = lines.map((line) => JSON.parse(line)).filter((entry) => entry.level === "error");
  assert.equal(failures.length, 1);
  assert.match(failures[0].msg, /^out of file descriptors: closing every connection and listening again/);
  assert.equal(failures[0].reason, "fd_exhausted");

  // Quiet for a while: the incident is over, said once.
  await tick(80);
  const recovered = lines.map((line) => JSON.parse(line)).filter((entry) =>
    entry.msg === "listening normally again"
  );
  assert.deepEqual(recovered.map((entry) => entry.failures), [3]);
  await server.shutdown();
  assert.equal(servers.at(-1)!.shutdowns, 1);
});

Deno.test("SupervisedServer keeps trying while listening itself fails, and stops trying on shutdown", async () => {
  const { serve, servers } = fakeServe();
  let refuse = 0;
  const metrics = new ApiMetrics();
  const server = new SupervisedServer({
    hostname: "127.0.0.1",
    port: 8000,
    handler: () => new Response("ok"),
    serve: (options) => {
      if (refuse > 0) {
        refuse--;
        throw EMFILE();
      }
      return serve(options);
    },
    metrics,
    retryMs: 1,
    maxRetryMs: 2,
  });
  server.start();
  refuse = 3;
  servers[0]!.fail(EMFILE());
  await tick(40);
  assert.equal(servers.length, 2, "listening again after three refused attempts");
  assert.match(metrics.render(), /^http_listener_failures_total\{reason="fd_exhausted"\} 4$/m);
  await server.shutdown();
  servers[1]!.fail(EMFILE());
  await tick(20);
  assert.equal(servers.length, 2, "no restart after shutdown");
});

Deno.test("SupervisedServer.start() throws what the first attempt throws, for the caller to report", () => {
  const server = new SupervisedServer({
    hostname: "127.0.0.1",
    port: 8000,
    handler: () => new Response("ok"),
    serve: () => {
      throw new Deno.errors.AddrInUse("Address already in use");
    },
  });
  assert.throws(() => server.start(), Deno.errors.AddrInUse);
});
