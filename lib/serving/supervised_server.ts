/**
 * `Deno.serve` that survives its listening socket failing, above all when the process runs out of file
 * descriptors (EMFILE) under a flood of connections.
 *
 * In Deno 2.9 an error from `accept()` ends `Deno.serve`'s accept loop: the socket is closed, the server's
 * `finished` promise rejects (an uncaught rejection kills the process), and requests on connections it
 * had accepted are never dispatched again. There is no connection limit, header timeout or idle timeout
 * to prevent it (denoland/deno#3515). So this wrapper catches the failure, closes every connection of the
 * failed server at once (which gives their descriptors back), and listens again on the same address after
 * a short pause that doubles while listening keeps failing. Clients see their connections reset and
 * reconnect; the process never dies. Connection limits and timeouts belong in front of it (a proxy, see
 * docs/api/index.md, "Deployment").
 *
 * One failure is logged per incident (the first), the rest only counted in the metrics
 * (`http_listener_failures_total`, `http_listening`); when the server has stayed up for
 * {@linkcode SupervisedServerOptions.quietMs}, one line says it recovered and how many failures there were.
 *
 * @module
 */
import type { Logger } from "../core/log.ts";
import type { ApiMetrics, ListenerFailure } from "./prometheus.ts";

/** Options of {@linkcode SupervisedServer}. */
export interface SupervisedServerOptions {
  hostname: string;
  /** Port; 0 picks a free one, which is then kept across restarts. */
  port: number;
  handler: Deno.ServeHandler<Deno.NetAddr>;
  /** Where failures and recoveries are logged. */
  log?: Logger;
  /** Where failures are counted. */
  metrics?: ApiMetrics;
  /** Called with the address each time the server (re)starts listening. */
  onListen?: (address: Deno.NetAddr, restarted: boolean) => void;
  /** First pause before listening again, in milliseconds; it doubles while failures repeat. @default {100} */
  retryMs?: number;
  /** Longest pause between attempts. @default {2000} */
  maxRetryMs?: number;
  /** Time without a failure after which an incident is over. @default {10000} */
  quietMs?: number;
  /** The server factory; tests pass a fake. @default {Deno.serve} */
  serve?: (
    options: Deno.ServeTcpOptions,
    handler: Deno.ServeHandler<Deno.NetAddr>,
  ) => Deno.HttpServer<Deno.NetAddr>;
}

/** Whether an error says the process or the system ran out of file descriptors. */
export function isFdExhaustion(error: unknown): boolean {
  const text = error instanceof Error ? `${error.message} ${String(error.cause ?? "")}` : String(error);
  return /too many open files|os error 2[34]\b|EMFILE|ENFILE/i.test(text);
}

function firstLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split("\n")[0]!;
}

/**
 * A `Deno.serve` server that listens again after its socket fails.
 *
 * @example Usage
 * ```ts ignore
 * import { SupervisedServer } from "./supervised_server.ts";
 * const server = new SupervisedServer({ hostname: "127.0.0.1", port: 8000, handler: () => new Response("ok") });
 * server.start();
 * await server.shutdown();
 * ```
 */
export class SupervisedServer {
  #options: SupervisedServerOptions;
  #serve: NonNullable<SupervisedServerOptions["serve"]>;
  #server: Deno.HttpServer<Deno.NetAddr> | undefined;
  #abort: AbortController | undefined;
  #port: number;
  #stopping = false;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #quietTimer: ReturnType<typeof setTimeout> | undefined;
  #delayMs: number;
  /** Failures of the current incident; 0 when none is going on. */
  #failures = 0;
  #restarts = 0;

  constructor(options: SupervisedServerOptions) {
    this.#options = options;
    this.#serve = options.serve ?? ((serveOptions, handler) => Deno.serve(serveOptions, handler));
    this.#port = options.port;
    this.#delayMs = options.retryMs ?? 100;
  }

  /** How many times the server started listening again after a failure. */
  get restarts(): number {
    return this.#restarts;
  }

  /**
   * Starts listening. Errors of the first attempt (address in use, not an address of this machine) are
   * thrown for the caller to report; later failures are handled here.
   *
   * @returns The address listened on.
   */
  start(): Deno.NetAddr {
    return this.#listen(false);
  }

  /** Stops accepting connections and waits for the requests in flight. */
  async shutdown(): Promise<void> {
    this.#stopping = true;
    clearTimeout(this.#retryTimer);
    clearTimeout(this.#quietTimer);
    await this.#server?.shutdown();
  }

  #listen(restarted: boolean): Deno.NetAddr {
    const abort = new AbortController();
    const server = this.#serve({
      hostname: this.#options.hostname,
      port: this.#port,
      signal: abort.signal,
      onListen: (address) => {
        this.#port = address.port;
        this.#options.metrics?.setListening(true);
        this.#options.onListen?.(address, restarted);
      },
    }, this.#options.handler);
    this.#server = server;
    this.#abort = abort;
    server.finished.catch((error) => this.#failed(server, error));
    return server.addr;
  }

  #failed(server: Deno.HttpServer<Deno.NetAddr>, error: unknown): void {
    if (this.#stopping || server !== this.#server) return;
    const reason: ListenerFailure = isFdExhaustion(error) ? "fd_exhausted" : "other";
    this.#options.metrics?.countListenerFailure(reason);
    this.#options.metrics?.setListening(false);
    clearTimeout(this.#quietTimer);
    if (this.#failures++ === 0) {
      this.#options.log?.error(
        reason === "fd_exhausted"
          ? "out of file descriptors: closing every connection and listening again (further failures are only counted, in http_listener_failures_total)"
          : "the listening socket failed: closing every connection and listening again (further failures are only counted, in http_listener_failures_total)",
        { error: firstLine(error), reason },
      );
    }
    // Closing the failed server's connections gives their descriptors back; its accept loop is gone,
    // so requests on them would never be answered anyway.
    this.#abort?.abort();
    this.#scheduleRestart();
  }

  #scheduleRestart(): void {
    const delay = this.#delayMs;
    this.#delayMs = Math.min(delay * 2, this.#options.maxRetryMs ?? 2000);
    this.#retryTimer = setTimeout(() => {
      if (this.#stopping) return;
      try {
        this.#listen(true);
      } catch (error) {
        // Opening the socket can itself fail for want of a descriptor: count it and wait longer.
        this.#options.metrics?.countListenerFailure(isFdExhaustion(error) ? "fd_exhausted" : "other");
        this.#scheduleRestart();
        return;
      }
      this.#restarts++;
      this.#quietTimer = setTimeout(() => this.#recovered(), this.#options.quietMs ?? 10_000);
    }, delay);
  }

  #recovered(): void {
    if (this.#stopping || this.#failures === 0) return;
    this.#options.log?.info("listening normally again", { failures: this.#failures });
    this.#failures = 0;
    this.#delayMs = this.#options.retryMs ?? 100;
  }
}
