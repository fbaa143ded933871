/**
 * The API image's `HEALTHCHECK`: `GET http://127.0.0.1:8000/health` (or the URL given as the only argument)
 * and exit 0 on a 2xx answer, 1 otherwise, with one line on stderr saying why. The Deno image has no curl, and
 * this runs with nothing but `--allow-net` for that one address.
 *
 * ```sh
 * deno run -q --cached-only --allow-net=127.0.0.1:8000 docker/healthcheck.ts http://127.0.0.1:8000/health
 * ```
 *
 * @module
 */

/** Where the API answers inside its container. */
export const DEFAULT_HEALTH_URL = "http://127.0.0.1:8000/health";

/**
 * Asks a health endpoint whether the service is up.
 *
 * @param url The health endpoint.
 * @param timeoutMs Give up after this long; Docker kills a check that outlives its own `--timeout`, with a
 *   less useful message. @default {4000}
 * @returns `undefined` when healthy, else a one-line reason.
 *
 * @example Usage
 * ```ts ignore
 * import { checkHealth } from "./healthcheck.ts";
 * const problem = await checkHealth("http://127.0.0.1:8000/health");
 * ```
 */
export async function checkHealth(url: string, timeoutMs = 4000): Promise<string | undefined> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    await response.body?.cancel();
    return response.ok ? undefined : `${url} answered HTTP ${response.status}`;
  } catch (error) {
    const reason = error instanceof Error ? error.message.split("\n")[0] : String(error);
    return `${url} did not answer: ${reason}`;
  }
}

if (import.meta.main) {
  const problem = await checkHealth(Deno.args[0] ?? DEFAULT_HEALTH_URL);
  if (problem !== undefined) console.error(`unhealthy: ${problem}`);
  Deno.exit(problem === undefined ? 0 : 1);
}
