// The pipeline's real programs in real containers on the real node (sim/node.sh), deployed by the real
// `pulumi up` with the shipped pod specs: non-root, read-only root, fsGroup, projected tokens, Roles.
// Images: the CPU twins of images/trainer and images/datagen, a fake vLLM teacher and a fake Hugging
// Face hub (test/pods/images.sh), pulled by containerd from the local registry.
//
// The stack has the blog's shape: the downloads (from the fake hub, through models.endpoint), the
// teacher held by the generation's real teacher_scale.py through its Role, synthetic-data-kit against
// the teacher's Service by its DNS name, the dataset check; then, on the tiny model of the hub's 11B
// repo, the LoRA fine-tune with real torchtune (its pod deleted after the first epoch: it resumes),
// sampling and lm-eval's chartqa for the base and tuned model, and the report.
import { spawn } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ANNOTATIONS, LABELS, selector } from "../../contract";
import { downloadOnly, initStack, KUBECONFIG, kubectl, kubectlJson, must, projectCopy, ROOT, run, runAsync, Stack, statusJson, WORK } from "../e2e/helpers";

const NS = "cot-vr-pods";
const RUN = "pods";
const HUB_NS = "fake-hub";
const VOLUMES = process.env.COT_PODS_VOLUMES ?? "";
const image = (name: string): string => {
    const v = process.env[`COT_PODS_IMAGE_${name.toUpperCase()}`];
    if (!v) throw new Error(`COT_PODS_IMAGE_${name.toUpperCase()} is not set: run the tier with bash test/pods/run.sh (it builds and pushes the images)`);
    return v;
};

/**
 * The tier's registry wants a password (images.sh registry start --auth): a namespace's pods pull with
 * a dockerconfigjson Secret, made here as a user would (`kubectl create secret docker-registry`), and
 * named by the stacks in cluster.imagePullSecrets. Returns the Secret's name, or none without auth.
 */
const PULL_SECRET = "pods-registry";
function pullSecret(ns: string): string[] {
    const { COT_PODS_REGISTRY: server, COT_PODS_REGISTRY_USER: username, COT_PODS_REGISTRY_PASSWORD: password } = process.env;
    if (!server || !username || !password) return [];
    const auth = Buffer.from(`${username}:${password}`).toString("base64");
    const f = path.join(WORK, `pull-secret-${ns}.json`);
    fs.writeFileSync(f, JSON.stringify({
        apiVersion: "v1", kind: "List", items: [
            { apiVersion: "v1", kind: "Namespace", metadata: { name: ns } },
            {
                apiVersion: "v1", kind: "Secret", type: "kubernetes.io/dockerconfigjson", metadata: { name: PULL_SECRET, namespace: ns },
                data: { ".dockerconfigjson": Buffer.from(JSON.stringify({ auths: { [server]: { username, password, auth } } })).toString("base64") },
            },
        ],
    }), { mode: 0o600 });
    must(kubectl("apply", "-f", f), `pull secret in ${ns}`);
    fs.rmSync(f);
    return [PULL_SECRET];
}

/** The fake Hugging Face hub as a Deployment and Service of the cluster (tolerating the GPU taint). */
function deployHub(): string {
    const secrets = pullSecret(HUB_NS).map((name) => ({ name }));
    const f = path.join(WORK, "hub.json");
    const labels = { app: "fake-hub" };
    fs.writeFileSync(f, JSON.stringify({
        apiVersion: "v1", kind: "List", items: [
            { apiVersion: "v1", kind: "Namespace", metadata: { name: HUB_NS } },
            {
                apiVersion: "apps/v1", kind: "Deployment", metadata: { name: "hub", namespace: HUB_NS },
                spec: {
                    replicas: 1, selector: { matchLabels: labels },
                    template: {
                        metadata: { labels },
                        spec: {
                            tolerations: [{ key: "amd.com/gpu", operator: "Exists", effect: "NoSchedule" }],
                            imagePullSecrets: secrets.length ? secrets : undefined,
                            containers: [{
                                name: "hub", image: image("hub"), ports: [{ name: "http", containerPort: 8080 }],
                                readinessProbe: { httpGet: { path: "/health", port: "http" }, periodSeconds: 2 },
                            }],
                        },
                    },
                },
            },
            { apiVersion: "v1", kind: "Service", metadata: { name: "hub", namespace: HUB_NS }, spec: { selector: labels, ports: [{ port: 80, targetPort: "http" }] } },
        ],
    }));
    must(kubectl("apply", "-f", f), "deploy the fake hub");
    must(kubectl("-n", HUB_NS, "rollout", "status", "deployment/hub", "--timeout=180s"), "fake hub ready");
    return `http://hub.${HUB_NS}.svc.cluster.local`;
}

/** Every stage after the dataset, on the tiny Llama 3.2 Vision of the fake hub's 11B repo: the trainer
 * image's tiny twin has its builders (test/python/tinyvision.py), named through recipeOverrides; the
 * images are 112 px tiles. CPU-sized pods, nothing compiled (the base image has no C compiler), 8 epochs
 * of the 8 rows in micro-batches of 2 (about a second each: a pod deleted after the first can resume). */
const TINY = { "tokenizer.image_size": 112, device: "cpu" };
const LATER_STAGES = `  cot-vr:train:
    variants:
      lora-11b:
        model: 11b
        method: lora
        epochs: 8
        batchSize: 2
        gradientAccumulationSteps: 1
        microBatchSize: 2
        warmupSteps: 1
        compile: false
        compileEncoder: false
        activationCheckpointing: false
        exactTiles: true
        cpu: 500m
        memory: 3Gi
        shmSize: 256Mi
        # on CPU: no fused AdamW, no CUDA memory statistics
        recipeOverrides: ${JSON.stringify({ "model._component_": "tinyvision.tiny_lora_llama3_2_vision", "model.image_size": 112, ...TINY, "optimizer.fused": false, log_peak_memory_stats: false })}
  cot-vr:sample:
    variants: [base-11b, lora-11b]
    imageIndex: 1
    maxNewTokens: 8
    cpu: 500m
    memory: 3Gi
    recipeOverrides: ${JSON.stringify({ "model._component_": "tinyvision.tiny_llama3_2_vision", ...TINY })}
  cot-vr:evaluate:
    variants: [base-11b, lora-11b]
    limit: 2
    cpu: 500m
    memory: 3Gi
    # eot_bias: the random model ends its answer at once (a short evaluation)
    recipeOverrides: ${JSON.stringify({ "model._component_": "tinyvision.tiny_llama3_2_vision", "model.eot_bias": 10000, ...TINY })}
`;

function stackText(hub: string, o: { run: string; ns: string; dataset: string; teacherArgs?: string[]; all?: boolean } = { run: RUN, ns: NS, dataset: "cot_chartqa_pods", all: true }): string {
    const extra = o.teacherArgs ? `, extraArgs: ${JSON.stringify(o.teacherArgs)}` : "";
    return `config:
  cot-vr:run: ${o.run}
  cot-vr:cluster:
    namespace: ${o.ns}
    kubeconfig: ${KUBECONFIG}
    context: e2e
    # The node is the cluster: the CPU pods (downloads, generation) must tolerate its GPU taint.
    cpuTolerations: [{ key: amd.com/gpu }]
    imagePullSecrets: ${JSON.stringify(pullSecret(o.ns))}
  # The sizes the config requires of the real models and data (a volume here is a folder: no quota).
  cot-vr:storage:
    models: { size: 204Gi }
    data: { size: 10Gi }
    checkpoints: { size: 180Gi }
    results: { size: 1Gi }
  cot-vr:images:
    trainer: ${o.all ? image("tiny") : image("trainer")}
    datagen: ${image("datagen")}
    vllm: ${image("vllm")}
  cot-vr:models:
    endpoint: ${hub}
${o.all ? LATER_STAGES : "  cot-vr:stages: { train: false, sample: false, evaluate: false, report: false }\n"}  cot-vr:teacher: { cpu: 250m, memory: 1Gi, shmSize: 64Mi${extra} }
  cot-vr:generate: { datasetName: ${o.dataset}, limit: 8, batchSize: 4, cpu: 250m, memory: 2Gi }
  cot-vr:timing:
    download: { timeout: 5m }
    teacher: { timeout: 5m }
    generate: { timeout: 10m }
    train: { timeout: 15m }
    sample: { timeout: 10m }
    evaluate: { timeout: 10m }
    report: { timeout: 5m }
`;
}

const volumeOf = (ns: string, run: string) => (claim: string, ...rest: string[]) => path.join(VOLUMES, ns, `${run}-${claim}`, ...rest);
const volume = volumeOf(NS, RUN);
const readJson = (f: string) => JSON.parse(fs.readFileSync(f, "utf8"));
const podUids = () => (kubectlJson("-n", NS, "get", "pods").items as any[]).map((p) => p.metadata.uid).sort();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** The namespace's pods, the end of each one's log, and its events: what a failed test shows. */
function diagnose(ns: string): string {
    const pods = kubectl("-n", ns, "get", "pods", "-o", "wide").out;
    const logs = (kubectlJson("-n", ns, "get", "pods").items as any[])
        .map((p) => `--- ${p.metadata.name}\n${kubectl("-n", ns, "logs", p.metadata.name, "--all-containers", "--tail=60").out}`).join("\n");
    const events = kubectl("-n", ns, "get", "events", "--sort-by=.lastTimestamp").out.slice(-4000);
    return `${pods}\n${logs}\n--- events\n${events}`;
}

/** A stage's pods, oldest first. */
const podsOf = (ns: string, run: string, stage: string) => (kubectlJson("-n", ns, "get", "pods", "-l", selector({ [LABELS.run]: run, [LABELS.stage]: stage })).items as any[])
    .sort((a, b) => a.metadata.creationTimestamp.localeCompare(b.metadata.creationTimestamp));

/**
 * A run in a kept work dir (COT_PODS_KEEP=1, then vitest again) starts from nothing too: no stack, no
 * namespace, no volumes of a previous run (the provisioner would hand their data back, and every stage
 * would find its output done).
 */
function startFresh(dir: string, stack = RUN, ns = NS): void {
    run("pulumi", ["stack", "rm", stack, "--force", "--yes", "--non-interactive"], { cwd: dir });
    if (kubectl("get", "namespace", ns).code === 0) must(kubectl("delete", "namespace", ns, "--timeout=180s"), `delete namespace ${ns}`);
    for (const pv of kubectlJson("get", "pv").items as any[]) {
        if (pv.spec.claimRef?.namespace === ns) must(kubectl("delete", "pv", pv.metadata.name), `delete pv ${pv.metadata.name}`);
    }
    fs.rmSync(path.join(VOLUMES, ns), { recursive: true, force: true });
}

describe("the pipeline on real pods", () => {
    let st: Stack;
    beforeAll(() => {
        if (!VOLUMES) throw new Error("COT_PODS_VOLUMES is not set: run the tier with bash test/pods/run.sh (sim/node.sh sets it)");
        const hub = deployHub();
        const dir = projectCopy(RUN);
        startFresh(dir);
        st = initStack(RUN, { copy: dir, stackFileText: stackText(hub) });
        st.setConfig("hfToken", "hf_pods_placeholder_token", { secret: true });
    });
    afterAll(() => {
        if (!st) return;
        // the data stays (Retain); the namespace's objects go
        st.pulumi("destroy", "--yes");
    });

    test("pulumi up runs every stage for real; the fine-tune pod deleted mid-run resumes from its newest complete epoch", async () => {
        const up = st.pulumiAsync(["up", "--yes", "--skip-preview"]);
        let finished = false;
        void up.then(() => (finished = true));
        // The fault: once the recipe has saved its state after epoch_0 (it does after every epoch but the
        // last), delete the fine-tune's pod with a 1 s grace period, as a drain would with a short one. (The
        // program is PID 1 and has no SIGTERM handler, so the kernel drops the SIGTERM: the SIGKILL after the
        // grace period ends it, and with the default 30 s the tiny model would finish first.)
        const state = volume("checkpoints", RUN, "lora-11b", "recipe_state", "recipe_state.pt");
        while (!fs.existsSync(state) && !finished) await sleep(100);
        const victim = podsOf(NS, RUN, "train").find((p) => p.status.phase === "Running");
        if (!victim) throw new Error(`no running fine-tune pod once ${state} exists:\n${(await up).out.slice(-3000)}\n${diagnose(NS)}`);
        must(kubectl("-n", NS, "delete", "pod", victim.metadata.name, "--grace-period=1", "--wait=false"), "delete the fine-tune pod");

        const result = await up;
        if (result.code !== 0) throw new Error(`pulumi up failed:\n${result.out.slice(-5000)}\n${diagnose(NS)}`);
        // The downloads: every shard from the hub, verified, and the marker; the 11B is the tiny model's
        // real checkpoint, the 90B (the teacher's, which the fake teacher does not read) dummy shards.
        for (const [repo, shards] of [["Llama-3.2-11B-Vision-Instruct", 5], ["Llama-3.2-90B-Vision-Instruct", 37]] as const) {
            const dir = volume("models", repo);
            expect(fs.existsSync(path.join(dir, ".complete.json")), dir).toBe(true);
            expect(fs.existsSync(path.join(dir, "config.json"))).toBe(true);
            expect(fs.existsSync(path.join(dir, "original", "tokenizer.model"))).toBe(true);
            expect(fs.readdirSync(dir).filter((f) => f.endsWith(".safetensors"))).toHaveLength(shards);
        }
        // The dataset: 8 rows, checked, published with its marker.
        const marker = readJson(volume("data", "cot_chartqa_pods", ".complete.json"));
        expect(marker.rows).toBe(8);
        // The teacher: held by the generation through its Role, released after.
        const d = kubectlJson("-n", NS, "get", "deployment", `${RUN}-teacher`);
        expect(d.spec.replicas).toBe(0);
        const events = fs.readFileSync(volume("results", RUN, "gpu-time", "teacher.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
        expect(events.filter((e) => e.event === "scaled").map((e) => e.replicas)).toEqual([1, 0]);

        // The fine-tune: the deleted pod's successor resumed after an epoch the first one completed, and
        // trained only the epochs after it; every epoch's merged HF shards and adapter, and the marker.
        // (The deleted pod is gone from the API once the Job controller has counted it: one pod is left.)
        const [second, ...more] = podsOf(NS, RUN, "train");
        expect(more).toHaveLength(0);
        expect(second.metadata.uid).not.toBe(victim.metadata.uid);
        const log = kubectl("-n", NS, "logs", second.metadata.name).out;
        const resumed = /resuming after epoch_(\d+) \((\d+)\/8 epochs done\)/.exec(log);
        expect(resumed, log.slice(0, 3000)).not.toBeNull();
        expect(Number(resumed![1])).toBeLessThan(7);
        expect(second.status.phase).toBe("Succeeded");
        const out = volume("checkpoints", RUN, "lora-11b");
        for (let e = 0; e < 8; e++) {
            expect(fs.readdirSync(path.join(out, `epoch_${e}`)).filter((f) => /^model-0000\d-of-00005\.safetensors$/.test(f)), `epoch_${e}`).toHaveLength(5);
            expect(fs.existsSync(path.join(out, `epoch_${e}`, "adapter_model.pt")), `epoch_${e} adapter`).toBe(true);
        }
        expect(fs.existsSync(path.join(out, ".complete.json"))).toBe(true);

        // Samples and evaluations of the base and the tuned model, from their real programs.
        for (const model of ["base-11b", "lora-11b"]) {
            const sample = readJson(volume("results", RUN, "samples", `${model}.json`));
            expect(sample.variant).toBe(model);
            expect(sample.answer.trim(), `${model}'s sampled answer`).not.toBe("");
            const ev = readJson(volume("results", RUN, "eval", `${model}.json`));
            expect(ev.results.chartqa, `${model}'s chartqa metrics`).toHaveProperty("exact_match");
            expect(ev.n_samples.chartqa.effective).toBe(2);
        }
        // The report: its table and charts.
        const report = volume("results", RUN, "report");
        expect(fs.readFileSync(path.join(report, "report.md"), "utf8")).toMatch(/lora-11b/);
        for (const png of ["exact_match.png", "gpu_timeline.png"]) {
            expect(fs.readFileSync(path.join(report, png)).subarray(1, 4).toString(), png).toBe("PNG");
        }
    });

    test("a second pulumi up changes nothing and re-runs nothing", async () => {
        const before = podUids();
        must(st.pulumi("preview", "--expect-no-changes"), "pulumi preview --expect-no-changes");
        must(await st.pulumiAsync(["up", "--yes", "--skip-preview"]), "second pulumi up");
        expect(podUids()).toEqual(before);
    });

    test("npm run status --json shows the stages complete, from the pods' real progress records", async () => {
        const r = await runAsync(path.join(ROOT, "node_modules/.bin/tsx"), [path.join(ROOT, "scripts/status.ts"), "--config", path.join(st.dir, "stacks", `Pulumi.${RUN}.yaml`), "--json"]);
        expect(r.code, r.out.slice(-3000)).toBe(0);
        const rows = JSON.parse(r.stdout).rows as any[];
        for (const [stage, variant] of [["download", "11b"], ["download", "90b"], ["generate", "cot"], ["train", "lora-11b"],
            ["sample", "base-11b"], ["sample", "lora-11b"], ["evaluate", "base-11b"], ["evaluate", "lora-11b"]]) {
            const row = rows.find((x) => x.stage === stage && x.variant === variant);
            expect(row, `${stage}/${variant} in ${r.stdout.slice(0, 2000)}`).toBeDefined();
            expect(row.state, row.name).toBe("complete");
            // The last COTVR_PROGRESS record of the pod's log, as the program printed it.
            expect(row.progress, `${row.name}: no progress record in its pod's log`).not.toBeNull();
            expect(row.progress.stage).toBe(stage);
            expect(row.progress.done, row.name).toBe(row.progress.total);
        }
        const gen = rows.find((x) => x.stage === "generate");
        expect([gen.progress.unit, gen.progress.total]).toEqual(["rows", 8]);
        // the fine-tune's optimizer steps over its 8 epochs (the resumed pod's record counts the epochs before it)
        const train = rows.find((x) => x.stage === "train");
        expect([train.progress.unit, train.progress.total, train.progress.epochs]).toEqual(["steps", 32, 8]);
        expect(rows.find((x) => x.stage === "report")?.state).toBe("complete");
    });

    test("tear-down keeps the data", () => {
        must(st.pulumi("destroy", "--yes"), "pulumi destroy");
        // The workloads go; the claims and namespace stay (storage.retainOnDestroy), and so does the data.
        expect(must(kubectl("-n", NS, "get", "jobs,deployments,services", "-o", "name"), "list workloads").stdout.trim()).toBe("");
        expect(readJson(volume("data", "cot_chartqa_pods", ".complete.json")).rows).toBe(8);
        expect(fs.existsSync(volume("models", "Llama-3.2-90B-Vision-Instruct", ".complete.json"))).toBe(true);
        expect(fs.existsSync(volume("checkpoints", RUN, "lora-11b", ".complete.json"))).toBe(true);
        expect(fs.existsSync(volume("results", RUN, "report", "report.md"))).toBe(true);
    });
});

// The generation's resume on real pods: its pod SIGKILLed (no handler runs, no teacher release) once
// the first batch's answers are journaled; the Job's next pod must ask the teacher only for the rest.
// The fake teacher takes 3 s per answer (so the kill lands mid-run) and logs each question on arrival.
describe("a generation pod killed mid-run", () => {
    const FRUN = "podsfault";
    const FNS = "cot-vr-pods-fault";
    const fvolume = volumeOf(FNS, FRUN);
    let st: Stack;
    beforeAll(() => {
        const hub = deployHub();
        const dir = projectCopy(FRUN);
        startFresh(dir, FRUN, FNS);
        st = initStack(FRUN, { copy: dir, stackFileText: stackText(hub, { run: FRUN, ns: FNS, dataset: "cot_fault", teacherArgs: ["--fake-answer-delay", "3"] }) });
        st.setConfig("hfToken", "hf_pods_placeholder_token", { secret: true });
    });
    afterAll(() => {
        if (st) st.pulumi("destroy", "--yes");
    });

    /** Answers journaled so far by the shard in progress: row -> label (generate_cot.py's labels.jsonl). */
    const journal = (): Map<number, string> => {
        const shards = fvolume("data", "cot_fault.shards");
        const found = new Map<number, string>();
        if (!fs.existsSync(shards)) return found;
        for (const key of fs.readdirSync(shards)) {
            const f = path.join(shards, key, "shard-00000.staging", "labels.jsonl");
            if (!fs.existsSync(f)) continue;
            for (const line of fs.readFileSync(f, "utf8").split("\n")) {
                try {
                    const e = JSON.parse(line);
                    found.set(e.row, e.label);
                } catch { /* a torn last line */ }
            }
        }
        return found;
    };

    test("is retried by its Job and asks the teacher only for the rows not answered yet", async () => {
        const up = st.pulumiAsync(["up", "--yes", "--skip-preview"]);
        // The kill: as soon as a batch is journaled, SIGKILL the program (PID 1 of the container) from the node.
        let answered = new Map<number, string>();
        const deadline = Date.now() + 8 * 60_000;
        while ((answered = journal()).size === 0) {
            if (Date.now() > deadline) throw new Error(`no answer journaled in 8 min:\n${(await up).out.slice(-3000)}`);
            await sleep(100);
        }
        const victim = podsOf(FNS, FRUN, "generate").find((p) => p.status.phase === "Running");
        expect(victim, "a running generation pod").toBeDefined();
        const id = must(run("crictl", ["ps", "-q", "--name", "^main$", "--label", `io.kubernetes.pod.uid=${victim.metadata.uid}`]), "crictl ps").stdout.trim();
        const pid = JSON.parse(must(run("crictl", ["inspect", id]), "crictl inspect").stdout).info.pid;
        process.kill(pid, "SIGKILL");
        answered = journal(); // what the killed pod left: nothing more can come from it
        expect(answered.size, "the kill came after the last batch: nothing left to resume").toBeLessThan(8);

        // Every question the teacher got, with when it arrived (its log, streamed until it is scaled down).
        const teacher = podsOf(FNS, FRUN, "teacher")[0];
        const stream = spawn("kubectl", ["-n", FNS, "logs", "-f", "-c", "vllm", teacher.metadata.name], { env: process.env });
        let log = "";
        stream.stdout.on("data", (d) => (log += d));
        const streamed = new Promise((r) => stream.on("close", r));

        const result = await up;
        expect(result.code, result.out.slice(-5000)).toBe(0);
        await Promise.race([streamed, sleep(60_000)]);
        stream.kill();

        const [first, second, ...more] = podsOf(FNS, FRUN, "generate");
        expect(more).toHaveLength(0);
        // Requests reach the teacher from the pod's own address (no SNAT between pods of one node): the
        // retried pod's are told apart by it. (By time they are not: requests the killed pod had already
        // written to its sockets reach the teacher after the kill.)
        const asked = log.split("\n").flatMap((l) => {
            const m = /^vllm: asked (".*") from (\S+)$/.exec(l);
            return m ? [{ question: JSON.parse(m[1]) as string, from: m[2] }] : [];
        });
        const questionOf = (label: string) => label.split(" Looking at the bars")[0];
        const done = new Set([...answered.values()].map(questionOf));
        expect([...done].filter((q) => !asked.some((a) => a.question === q)), "journaled answers to questions the teacher never got").toEqual([]);
        const retried = asked.filter((a) => a.from === second.status.podIP).map((a) => a.question);
        // The retried pod asked exactly the rows without an answer: none answered before the kill, each once.
        expect(retried.filter((q) => done.has(q)), "asked again by the retried pod").toEqual([]);
        expect(retried).toHaveLength(8 - answered.size);
        expect(new Set([...done, ...retried]).size).toBe(8);
        expect(first.status.containerStatuses[0].state.terminated.exitCode).toBe(137);
        expect(second.status.phase).toBe("Succeeded");
        expect(kubectl("-n", FNS, "logs", second.metadata.name).out).toContain(`${answered.size} of 8 rows already answered, asking for ${8 - answered.size}`);
        expect(readJson(fvolume("data", "cot_fault", ".complete.json")).rows).toBe(8);
        expect(kubectlJson("-n", FNS, "get", "deployment", `${FRUN}-teacher`).spec.replicas).toBe(0);
    });
});

// An image that does not exist, pulled by the real kubelet from the local registry: the registry
// answers "manifest unknown", containerd "not found", and the Job fails in seconds, not after the
// stage's timeout (4h here); `status` says why.
describe("an image that does not exist, on the real node", () => {
    const IRUN = "podsimage";
    const INS = "cot-vr-pods-image";
    const TIMEOUT = "4h";
    let st: Stack;
    let bad: string;
    beforeAll(() => {
        // the tier's registry, a tag it never had
        bad = image("trainer").replace(/:[^:/]+$/, ":cpu-does-not-exist");
        const dir = projectCopy(IRUN);
        startFresh(dir, IRUN, INS);
        st = initStack(IRUN, {
            copy: dir, stackFileText: `config:
  cot-vr:run: ${IRUN}
  cot-vr:cluster: { namespace: ${INS}, kubeconfig: ${KUBECONFIG}, context: e2e, cpuTolerations: [{ key: amd.com/gpu }], imagePullSecrets: ${JSON.stringify(pullSecret(INS))} }
  cot-vr:models: { endpoint: http://hub.${HUB_NS}.svc.cluster.local }
`,
        });
        st.setConfig("hfToken", "hf_pods_placeholder_token", { secret: true });
        downloadOnly(st, bad, TIMEOUT);
    });
    afterAll(() => {
        if (st) st.pulumi("destroy", "--yes");
    });

    test("fails pulumi up within 2 minutes, naming the image and the registry's answer; status says why", async () => {
        const r = await st.pulumiAsync(["up", "--yes", "--skip-preview"]);
        expect(r.code, r.out.slice(-4000)).not.toBe(0);
        expect(r.seconds, r.out.slice(-4000)).toBeLessThan(120);
        expect(r.out).toContain(`image "${bad}" cannot be pulled: `);
        expect(r.out).toMatch(/not found/);
        const jobs = (kubectlJson("-n", INS, "get", "jobs").items as any[]).filter((j) => j.metadata.labels?.[LABELS.stage] === "download");
        expect(jobs.length).toBeGreaterThan(0);
        for (const j of jobs) {
            const failed = j.status.conditions?.find((c: any) => c.type === "Failed" && c.status === "True");
            expect(failed?.reason, j.metadata.name).toBe("DeadlineExceeded");
            expect(JSON.parse(j.metadata.annotations[ANNOTATIONS.failure])).toMatchObject({ image: bad, container: "main", kind: "fatal", stage: "download" });
        }
        expect((kubectlJson("-n", INS, "get", "pods").items as any[]).filter((p) => p.status.phase === "Pending")).toEqual([]);

        const s = await statusJson(st);
        expect(s.code, s.out.slice(-3000)).toBe(1);
        for (const row of (s.json.rows as any[]).filter((x) => x.stage === "download")) {
            expect(row.state).toBe("failed");
            expect(row.imagePull).toMatchObject({ image: bad, kind: "fatal" });
            expect(row.failure.reason).toMatch(/image pull failed, so pulumi up failed the Job: .*not found/);
            expect(row.failure.next).toMatch(/^fix cot-vr:images\.trainer in the stack config/);
        }
    });
});
