/**
 * Keeps the Argo and Step Functions manifests in orchestration/ true: every step must run a real stage with flags
 * that stage accepts (checked by running the step's container arguments through docker/entrypoint.sh with
 * `--help`), the fan-out over batches must exist, and every name a manifest refers to (template, parameter,
 * volume claim, ConfigMap, container, state) must be defined.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import { REPO_ROOT } from "../scripts/_testing.ts";
import { checkStageCommand, createImageRoot, fillPlaceholders } from "../docker/_testing.ts";

const ORCHESTRATION = join(REPO_ROOT, "orchestration");
/** uid of the image's `deno` user, which owns /app/data in the image. */
const IMAGE_UID = 1993;

type Json = Record<string, unknown>;

function readYamlDocuments(file: string): Json[] {
  const documents = parseAllDocuments(Deno.readTextFileSync(join(ORCHESTRATION, file)));
  return documents.map((document) => {
    assert.deepEqual(document.errors, [], `${file}: YAML errors`);
    return document.toJS() as Json;
  });
}

function readJson(file: string): Json {
  return JSON.parse(Deno.readTextFileSync(join(ORCHESTRATION, file))) as Json;
}

function asArray<T = Json>(value: unknown): T[] {
  return Array.isArray(value) ? value as T[] : [];
}

function asObject(value: unknown): Json {
  return typeof value === "object" && value !== null && !Array.isArray(value) ? value as Json : {};
}

// ---------------------------------------------------------------------------------------------------------
// Kubernetes / Argo

interface ArgoTemplate {
  name: string;
  dag?: { tasks: ArgoTask[] };
  inputs?: { parameters?: { name: string }[] };
  container?: {
    image: string;
    args: string[];
    envFrom?: { configMapRef?: { name: string } }[];
    env?: {
      name: string;
      value?: string;
      valueFrom?: { secretKeyRef?: { name: string; optional?: boolean } };
    }[];
    volumeMounts?: { name: string; mountPath: string }[];
  };
}

interface ArgoTask {
  name: string;
  template: string;
  depends?: string;
  withSequence?: { count: string };
  withParam?: string;
  withItems?: unknown[];
  arguments?: { parameters?: { name: string; value: string }[] };
}

function loadArgo() {
  const [workflow] = readYamlDocuments("argo/argo-workflow.yaml");
  const k8s = readYamlDocuments("argo/kubernetes.yaml");
  const spec = asObject(workflow?.spec);
  const templates = asArray<ArgoTemplate>(spec.templates);
  const byName = new Map(templates.map((t) => [t.name, t]));
  const workflowParameters = new Set(
    asArray<{ name: string }>(asObject(spec.arguments).parameters).map((p) => p.name),
  );
  return { workflow: workflow!, spec, templates, byName, workflowParameters, k8s };
}

function k8sObject(documents: Json[], kind: string, name: string): Json | undefined {
  return documents.find((d) => d.kind === kind && asObject(d.metadata).name === name);
}

Deno.test("argo-workflow.yaml: every DAG task names a template, and every dependency a task", () => {
  const { spec, byName } = loadArgo();
  const entry = byName.get(String(spec.entrypoint));
  assert.ok(entry?.dag, `entrypoint ${spec.entrypoint} is not a DAG template`);
  const taskNames = new Set(entry.dag.tasks.map((t) => t.name));
  for (const task of entry.dag.tasks) {
    assert.ok(byName.has(task.template), `task ${task.name}: no template ${task.template}`);
    for (
      const dependency of (task.depends ?? "").split(/&&|\|\||[()!]/).map((d) => d.trim()).filter(Boolean)
    ) {
      const name = dependency.split(".")[0]!;
      assert.ok(taskNames.has(name), `task ${task.name} depends on unknown task ${name}`);
    }
  }
});

Deno.test("argo-workflow.yaml: preprocess-batch fans out over the batches that split-batches makes", () => {
  const { spec, byName } = loadArgo();
  const tasks = byName.get(String(spec.entrypoint))!.dag!.tasks;
  const fanOut = tasks.find((t) => t.template === "preprocess-batch");
  assert.ok(fanOut, "no task runs preprocess-batch");
  assert.equal(fanOut.withSequence?.count, "{{workflow.parameters.num-batches}}");
  assert.deepEqual(fanOut.arguments?.parameters, [{ name: "batch", value: "{{item}}" }]);
  assert.match(fanOut.depends ?? "", /\bsplit-batches\b/);
  // The split makes exactly as many batches as the fan-out counts.
  const split = byName.get("split-batches")!.container!.args;
  assert.deepEqual(split.slice(split.indexOf("--num-batches"), split.indexOf("--num-batches") + 2), [
    "--num-batches",
    "{{workflow.parameters.num-batches}}",
  ]);
  const train = tasks.find((t) => t.template === "train");
  assert.match(train?.depends ?? "", /\bpreprocess-batch\b/, "train must wait for the whole fan-out");
});

Deno.test("argo-workflow.yaml: every placeholder refers to a declared parameter", () => {
  const { templates, workflowParameters } = loadArgo();
  for (const template of templates) {
    const inputs = new Set(asArray<{ name: string }>(template.inputs?.parameters).map((p) => p.name));
    const text = JSON.stringify(template);
    for (
      const [, scope, name] of text.matchAll(/\{\{(workflow\.parameters|inputs\.parameters)\.([\w-]+)\}\}/g)
    ) {
      const declared = scope === "workflow.parameters" ? workflowParameters : inputs;
      assert.ok(declared.has(name!), `template ${template.name}: {{${scope}.${name}}} is not declared`);
    }
  }
});

Deno.test("argo-workflow.yaml: pods mount the claim and ConfigMap of kubernetes.yaml and run as the image's user", () => {
  const { spec, templates, k8s } = loadArgo();
  const claim = asArray<{ name: string; persistentVolumeClaim?: { claimName: string } }>(spec.volumes)
    .find((v) => v.name === "data")?.persistentVolumeClaim?.claimName;
  const pvc = k8sObject(k8s, "PersistentVolumeClaim", String(claim));
  assert.ok(pvc, `kubernetes.yaml has no PersistentVolumeClaim ${claim}`);
  assert.deepEqual(
    asObject(pvc.spec).accessModes,
    ["ReadWriteMany"],
    "parallel pods on several nodes share it",
  );
  assert.deepEqual(asObject(spec.securityContext), {
    runAsNonRoot: true,
    runAsUser: IMAGE_UID,
    runAsGroup: IMAGE_UID,
    fsGroup: IMAGE_UID,
  });
  assert.ok(k8sObject(k8s, "ServiceAccount", String(spec.serviceAccountName)), "service account not defined");

  for (const template of templates.filter((t) => t.container)) {
    const container = template.container!;
    assert.equal(
      container.image,
      "{{workflow.parameters.image}}",
      `${template.name}: one image for all stages`,
    );
    assert.deepEqual(
      container.volumeMounts?.map((m) => [m.name, m.mountPath]),
      [["data", "/app/data"]],
      `${template.name}: the data volume must be at /app/data`,
    );
    for (const ref of container.envFrom ?? []) {
      const name = ref.configMapRef?.name;
      assert.ok(k8sObject(k8s, "ConfigMap", String(name)), `${template.name}: ConfigMap ${name} not defined`);
    }
    for (const variable of container.env ?? []) {
      // Secrets are created from the secret store, not committed; they must be optional so that a cluster
      // without them still runs --source sample against an MLflow without auth.
      if (variable.valueFrom?.secretKeyRef) assert.equal(variable.valueFrom.secretKeyRef.optional, true);
      assert.equal(
        variable.value,
        undefined,
        `${template.name}: ${variable.name} must not be a literal value`,
      );
    }
  }
});

Deno.test("argo-workflow.yaml: every container step runs a real stage with valid flags", async () => {
  const { templates, k8s } = loadArgo();
  await using root = await createImageRoot();
  const steps = templates.filter((t) => t.container);
  assert.ok(steps.length >= 6, "ingest, split, preprocess batch and test, train, evaluate");
  for (const template of steps) {
    const env: Record<string, string> = {};
    for (const ref of template.container!.envFrom ?? []) {
      const data = asObject(k8sObject(k8s, "ConfigMap", String(ref.configMapRef?.name))?.data);
      for (const [key, value] of Object.entries(data)) env[key] = String(value);
    }
    const argv = template.container!.args.map((arg) => fillPlaceholders(arg));
    assert.equal(await checkStageCommand(root, argv, env), undefined, `template ${template.name}`);
  }
});

// ---------------------------------------------------------------------------------------------------------
// AWS Step Functions + ECS

interface EcsStep {
  state: string;
  containerName: string;
  argv: string[];
}

/**
 * Evaluates the container command of an ECS task state: a literal `Command` array, or a `Command.$`
 * `States.Array(...)` whose string literals are kept and whose paths and nested intrinsics become a sample
 * value (a batch number, a count): enough to check the stage and its flags.
 */
function containerCommand(override: Json): string[] {
  if (Array.isArray(override.Command)) return override.Command.map(String);
  const expression = override["Command.$"];
  assert.equal(typeof expression, "string", "a container override needs Command or Command.$");
  const match = /^States\.Array\((.*)\)$/s.exec(String(expression));
  assert.ok(match, `Command.$ must be States.Array(...): ${expression}`);
  const args: string[] = [];
  let depth = 0, quoted = false, current = "";
  for (const char of match[1]!) {
    if (char === "'" && !current.endsWith("\\")) quoted = !quoted;
    if (!quoted && char === "(") depth++;
    if (!quoted && char === ")") depth--;
    if (!quoted && depth === 0 && char === ",") {
      args.push(current.trim());
      current = "";
    } else current += char;
  }
  args.push(current.trim());
  return args.map((arg) => /^'.*'$/s.test(arg) ? arg.slice(1, -1).replaceAll("\\'", "'") : "4");
}

/** Every state of a machine, nested ones (Parallel branches, Map processors) included, with their siblings. */
function* walkStates(machine: Json): Generator<{ name: string; state: Json; siblings: Json }> {
  const states = asObject(machine.States);
  for (const [name, state] of Object.entries(states)) {
    const s = asObject(state);
    yield { name, state: s, siblings: states };
    for (const branch of asArray(s.Branches)) yield* walkStates(branch);
    if (s.ItemProcessor) yield* walkStates(asObject(s.ItemProcessor));
    if (s.Iterator) yield* walkStates(asObject(s.Iterator));
  }
}

function ecsSteps(machine: Json): EcsStep[] {
  const steps: EcsStep[] = [];
  for (const { name, state } of walkStates(machine)) {
    if (state.Type !== "Task" || !String(state.Resource).startsWith("arn:aws:states:::ecs:runTask")) continue;
    const overrides = asArray(asObject(asObject(state.Parameters).Overrides).ContainerOverrides);
    assert.equal(overrides.length, 1, `${name}: one container override`);
    steps.push({
      state: name,
      containerName: String(overrides[0]!.Name),
      argv: containerCommand(overrides[0]!),
    });
  }
  return steps;
}

Deno.test("step-functions.asl.json: every transition leads to a state and every branch ends", () => {
  const machine = readJson("step-functions/step-functions.asl.json");
  const check = (graph: Json, where: string) => {
    const states = asObject(graph.States);
    assert.ok(String(graph.StartAt) in states, `${where}: StartAt ${graph.StartAt} is not a state`);
    for (const [name, state] of Object.entries(states).map(([n, s]) => [n, asObject(s)] as const)) {
      if (state.Next !== undefined) {
        assert.ok(String(state.Next) in states, `${name}: Next ${state.Next} missing`);
      } else {assert.ok(
          state.End === true || ["Succeed", "Fail"].includes(String(state.Type)),
          `${name} never ends`,
        );}
      asArray(state.Branches).forEach((branch, i) => check(branch, `${name} branch ${i}`));
      if (state.ItemProcessor) check(asObject(state.ItemProcessor), `${name} processor`);
    }
  };
  check(machine, "machine");
});

Deno.test("step-functions.asl.json: preprocess-batch runs in a Map over the batches split-batches makes", () => {
  const machine = readJson("step-functions/step-functions.asl.json");
  const map = [...walkStates(machine)].find(({ state }) =>
    state.Type === "Map" &&
    ecsSteps(asObject(state.ItemProcessor)).some((s) => s.argv[0] === "preprocess-batch")
  );
  assert.ok(map, "no Map state runs preprocess-batch");
  assert.equal(map.state.ItemsPath, "$.batches");
  assert.ok(Number(map.state.MaxConcurrency) > 1, "the batches must run in parallel");
  const split = [...walkStates(machine)].find(({ name }) => name === "SplitBatches")!.state;
  const command = asObject(asArray(asObject(asObject(split.Parameters).Overrides).ContainerOverrides)[0]);
  assert.match(
    String(command["Command.$"]),
    /'--num-batches', States\.Format\('\{\}', States\.ArrayLength\(\$\.batches\)\)/,
  );
});

Deno.test("step-functions.asl.json: every ECS step runs a real stage with valid flags in the task definition's container", async () => {
  const machine = readJson("step-functions/step-functions.asl.json");
  const taskDefinition = readJson("step-functions/ecs-task-definition.json");
  const containers = asArray(taskDefinition.containerDefinitions);
  await using root = await createImageRoot();
  const steps = ecsSteps(machine);
  assert.deepEqual(
    steps.map((s) => s.argv[0]),
    ["ingest", "split-batches", "preprocess-batch", "preprocess-test", "train", "evaluate"],
  );
  for (const step of steps) {
    const container = containers.find((c) => c.name === step.containerName);
    assert.ok(container, `${step.state}: no container ${step.containerName} in ecs-task-definition.json`);
    const env = Object.fromEntries(
      asArray<{ name: string; value: string }>(container.environment).map((e) => [e.name, e.value]),
    );
    assert.equal(await checkStageCommand(root, step.argv, env), undefined, `state ${step.state}`);
  }
});

Deno.test("ecs-task-definition.json: secrets come from Secrets Manager and data from EFS at /app/data", () => {
  const taskDefinition = readJson("step-functions/ecs-task-definition.json");
  const [container] = asArray(taskDefinition.containerDefinitions);
  assert.ok(container);
  assert.equal(
    container.user,
    `${IMAGE_UID}:${IMAGE_UID}`,
    "the image's user, whom the EFS access point maps to",
  );
  for (const secret of asArray<{ name: string; valueFrom: string }>(container.secrets)) {
    assert.match(
      secret.valueFrom,
      /^arn:aws:secretsmanager:/,
      `${secret.name} must come from Secrets Manager`,
    );
  }
  const environment = asArray<{ name: string }>(container.environment).map((e) => e.name);
  for (
    const name of ["KAGGLE_API_TOKEN", "KAGGLE_KEY", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"]
  ) {
    assert.ok(!environment.includes(name), `${name} is a secret, not a plain environment variable`);
  }
  const mount = asArray<{ sourceVolume: string; containerPath: string }>(container.mountPoints)[0];
  assert.equal(mount?.containerPath, "/app/data");
  const volume = asArray(taskDefinition.volumes).find((v) => v.name === mount.sourceVolume);
  assert.equal(asObject(asObject(volume?.efsVolumeConfiguration).authorizationConfig).iam, "ENABLED");
});
