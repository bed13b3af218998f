import * as YAML from "yaml";
import { describe, expect, it } from "vitest";
import { argOf, container, render, settings, TOKEN } from "./helpers";
import { LABELS, selector, WATCHDOG_GRACE_SECONDS } from "../../contract";

describe("storage", async () => {
    const r = await render(settings());
    it("creates four claims with the configured size, access mode and class", () => {
        const pvcs = r.byKind("PersistentVolumeClaim");
        expect(pvcs.map((p) => p.metadata.name)).toEqual(["blog-models", "blog-data", "blog-checkpoints", "blog-results"]);
        expect(pvcs[2].spec).toMatchObject({ accessModes: ["ReadWriteMany"], resources: { requests: { storage: "800Gi" } } });
        // Not awaited for Bound: WaitForFirstConsumer classes bind only when a pod mounts the claim.
        expect(pvcs[0].metadata.annotations["pulumi.com/skipAwait"]).toBe("true");
    });
    it("uses existing claims without creating them", async () => {
        const r2 = await render(settings({ storage: { models: { existingClaim: "shared-models" } }, cluster: { createNamespace: false } }));
        expect(r2.byKind("PersistentVolumeClaim").map((p) => p.metadata.name)).not.toContain("blog-models");
        expect(r2.byKind("Namespace")).toEqual([]);
        const dl = r2.job("download", "11b");
        expect(dl.spec.template.spec.volumes.find((v: any) => v.name === "models").persistentVolumeClaim.claimName).toBe("shared-models");
    });
});

describe("provider", async () => {
    const r = await render(settings({ cluster: { context: "tensorwave", kubeconfig: "/home/me/.kube/tw" } }));
    it("targets the configured cluster and takes back objects a destroy kept", () => {
        const p = r.reg.find((x) => x.type === "pulumi:providers:kubernetes")!;
        expect(p.inputs).toMatchObject({ context: "tensorwave", kubeconfig: "/home/me/.kube/tw", upsertExistingObjects: "true", enableServerSideApply: "true" });
        // Every Kubernetes object goes through it.
        for (const x of r.reg.filter((y) => y.type.startsWith("kubernetes:"))) expect(x.provider).toMatch(/cot-vr-k8s/);
    });
});

describe("secrets", async () => {
    const r = await render(settings());
    it("the HF token reaches pods only as a file from the Secret, never in plain text or an env var", () => {
        const text = JSON.stringify(r.objects);
        expect(text.includes(TOKEN)).toBe(false);
        const secret = r.byKind("Secret")[0];
        expect(secret.stringData).toEqual({ HF_TOKEN: "<redacted>" }); // recorded as a Pulumi secret
        const job = r.job("download", "90b");
        const env = container(job).env;
        expect(env).toContainEqual({ name: "HF_TOKEN_PATH", value: "/var/run/secrets/cotvr/hf/token" });
        expect(env.filter((e: any) => e.valueFrom?.secretKeyRef)).toEqual([]);
        expect(job.spec.template.spec.volumes).toContainEqual({ name: "hf-token", secret: { secretName: "blog-secrets", items: [{ key: "HF_TOKEN", path: "token" }], optional: true } });
        expect(container(job).volumeMounts).toContainEqual({ name: "hf-token", mountPath: "/var/run/secrets/cotvr/hf", readOnly: true });
    });
    it("every pod that reads a dataset through `datasets` can write its cache's lock files (HF_HOME on the data volume)", () => {
        for (const [stage, variant] of [["train", "lora-11b"], ["sample", "base-11b"], ["evaluate", "lora-11b"], ["generate", "cot"]]) {
            const c = container(r.job(stage, variant));
            expect(c.env, `${stage}`).toContainEqual({ name: "HF_HOME", value: "/data/hf-home" });
            expect(c.volumeMounts, `${stage}`).toContainEqual({ name: "data", mountPath: "/data", readOnly: false });
        }
    });
    it("every pod that reads the Hub gets the configured endpoint, and none by default", async () => {
        expect(JSON.stringify(r.objects)).not.toContain("HF_ENDPOINT");
        const m = await render(settings({ models: { endpoint: "http://hub.mirror.local:8080" } }));
        const readers = m.byKind("Job").filter((j: any) => /-(generate|train)-/.test(j.metadata.name));
        expect(readers.length).toBeGreaterThanOrEqual(3); // the generation and the fine-tunes
        for (const job of [m.job("download", "11b"), m.job("download", "90b"), ...readers]) {
            expect(container(job).env).toContainEqual({ name: "HF_ENDPOINT", value: "http://hub.mirror.local:8080" });
        }
    });
    it("every pod runs hardened: non-root user >= 10000, no privilege escalation, no capabilities, read-only root with /tmp scratch", () => {
        const pods = [...r.byKind("Job"), ...r.byKind("Deployment")].map((o) => o.spec.template.spec);
        expect(pods.length).toBeGreaterThan(10);
        for (const pod of pods) {
            expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001, fsGroup: 10001 });
            for (const c of pod.containers) {
                expect(c.securityContext).toEqual({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ["ALL"] } });
                expect(c.volumeMounts).toContainEqual({ name: "tmp", mountPath: "/tmp" });
                expect(c.env).toContainEqual({ name: "HOME", value: "/tmp" });
            }
            expect(pod.volumes).toContainEqual({ name: "tmp", emptyDir: {} });
        }
    });
    it("CPU pods use RuntimeDefault seccomp; only pods that call the API get a token", () => {
        for (const stage of ["download", "generate", "report"]) {
            const jobs = r.byKind("Job").filter((j) => j.metadata.labels[LABELS.stage] === stage);
            for (const j of jobs) expect(j.spec.template.spec.securityContext.seccompProfile).toEqual({ type: "RuntimeDefault" });
        }
        const tokens = Object.fromEntries([...r.byKind("Job"), ...r.byKind("Deployment")].map((o) => [o.metadata.name, o.spec.template.spec.automountServiceAccountToken]));
        expect(Object.entries(tokens).filter(([, t]) => t !== false).map(([n]) => n).sort()).toEqual([r.job("generate").metadata.name, r.job("report").metadata.name].sort());
    });
    it("carries the Kubernetes recommended labels on every object", () => {
        for (const o of r.objects.filter((x) => x.kind !== "Namespace" || x.metadata.labels)) {
            expect(Object.keys(o.metadata.labels ?? {}), `${o.kind}/${o.metadata.name}`).toEqual(expect.arrayContaining([
                "app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component", "app.kubernetes.io/part-of", "app.kubernetes.io/managed-by",
            ]));
        }
    });
    it("with cluster.networkPolicy: default deny, the teacher reachable only from the generation, HTTPS and API egress only where needed", async () => {
        const r2 = await render(settings({ cluster: { networkPolicy: true } }));
        const pol = Object.fromEntries(r2.byKind("NetworkPolicy").map((p) => [p.metadata.name, p.spec]));
        expect(Object.keys(pol).sort()).toEqual(["blog-api-egress", "blog-default-deny", "blog-generate-to-teacher", "blog-https-egress", "blog-teacher-from-generate"]);
        expect(pol["blog-default-deny"]).toMatchObject({ podSelector: { matchLabels: { [LABELS.run]: "blog" } }, policyTypes: ["Ingress", "Egress"] });
        expect(pol["blog-teacher-from-generate"].ingress).toEqual([{ from: [{ podSelector: { matchLabels: { [LABELS.run]: "blog", [LABELS.stage]: "generate" } } }], ports: [{ protocol: "TCP", port: 8000 }] }]);
        expect(pol["blog-api-egress"].podSelector.matchExpressions).toEqual([{ key: LABELS.stage, operator: "In", values: ["generate", "teacher", "report"] }]);
        expect(r.byKind("NetworkPolicy")).toEqual([]);
    });
});

describe("model downloads", async () => {
    const r = await render(settings());
    it("downloads each needed model once, skipping the consolidated .pth files", () => {
        const jobs = r.byKind("Job").filter((j) => j.metadata.labels[LABELS.stage] === "download");
        expect(jobs.map((j) => j.metadata.labels[LABELS.variant])).toEqual(["11b", "90b"]);
        const args = container(jobs[1]).args;
        expect(argOf(args, "--repo-id")).toBe("meta-llama/Llama-3.2-90B-Vision-Instruct");
        expect(argOf(args, "--dest")).toBe("/models/Llama-3.2-90B-Vision-Instruct");
        expect(argOf(args, "--ignore")).toBe("original/consolidated*.pth");
        expect(args.filter((_: string, i: number) => args[i - 1] === "--require")).toEqual(["config.json", "original/tokenizer.model"]);
        expect(argOf(args, "--shards")).toBe("37");
        expect(container(jobs[1]).resources.limits).not.toHaveProperty("amd.com/gpu");
    });
    it("downloads only the 11B model when nothing reads the 90B one", async () => {
        const r2 = await render(settings({
            stages: { teacher: false, generate: false },
            train: { variants: { "lora-11b": { model: "11b", method: "lora", epochs: 1, batchSize: 1, gradientAccumulationSteps: 1 } } },
            evaluate: { variants: ["base-11b", "lora-11b"] }, sample: { variants: ["lora-11b"] },
        }));
        expect(r2.byKind("Job").filter((j) => j.metadata.labels[LABELS.stage] === "download").map((j) => j.metadata.labels[LABELS.variant])).toEqual(["11b"]);
        expect(r2.byKind("Deployment")).toEqual([]);
    });
});

describe("teacher", async () => {
    const r = await render(settings());
    const dep = r.byKind("Deployment")[0];
    const c = container(dep);
    const pod = dep.spec.template.spec;
    it("serves the 90B model from the models volume with vllm serve", () => {
        expect(c.image).toBe("rocm/vllm:rocm6.4.1_vllm_0.10.1_20250909");
        expect(c.command).toEqual(["vllm"]);
        expect(c.args.slice(0, 2)).toEqual(["serve", "/models/Llama-3.2-90B-Vision-Instruct"]);
        expect(argOf(c.args, "--served-model-name")).toBe("meta-llama/Llama-3.2-90B-Vision-Instruct");
        expect(argOf(c.args, "--max-model-len")).toBe("8192");
        expect(argOf(c.args, "--max-num-seqs")).toBe("16");
        expect(c.volumeMounts).toContainEqual({ name: "models", mountPath: "/models", readOnly: true });
    });
    it("takes one GPU with the ROCm pod settings and no hostPath devices", () => {
        expect(c.resources.limits["amd.com/gpu"]).toBe("1");
        expect(c.resources.requests["amd.com/gpu"]).toBe("1");
        // Non-root: the video/render groups open the GPU devices; seccomp Unconfined for ROCm's NUMA calls (config/schema.ts).
        expect(pod.securityContext).toEqual({ runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001, fsGroup: 10001, fsGroupChangePolicy: "OnRootMismatch", supplementalGroups: [44, 109, 110], seccompProfile: { type: "Unconfined" } });
        expect(c.securityContext.capabilities).toEqual({ drop: ["ALL"] });
        expect(pod.automountServiceAccountToken).toBe(false);
        expect(JSON.stringify(pod.volumes)).not.toContain("hostPath");
        expect(pod.volumes).toContainEqual({ name: "dshm", emptyDir: { medium: "Memory", sizeLimit: "64Gi" } });
        expect(pod.tolerations).toEqual([{ key: "amd.com/gpu", operator: "Exists", effect: "NoSchedule" }]);
    });
    it("has a startup probe as long as the teacher timeout, then readiness on /health", () => {
        expect(c.startupProbe.httpGet.path).toBe("/health");
        expect(c.startupProbe.periodSeconds * c.startupProbe.failureThreshold).toBe(90 * 60);
        expect(c.readinessProbe.httpGet.path).toBe("/health");
    });
    it("is selected by a Service on the configured port", () => {
        const svc = r.byKind("Service")[0];
        expect(svc.metadata.name).toBe("blog-teacher");
        expect(svc.spec.selector).toEqual(dep.spec.selector.matchLabels);
        expect(svc.spec.ports[0].port).toBe(8000);
    });
    it("honours a GPU resource name, node selector and pull secrets from config", async () => {
        const r2 = await render(settings({ cluster: { gpuResource: "gpu.example/mi300x", nodeSelector: { "amd.com/gpu.device-id": "74b5" }, imagePullSecrets: ["regcred"] } }));
        const d = r2.byKind("Deployment")[0];
        expect(container(d).resources.limits["gpu.example/mi300x"]).toBe("1");
        expect(d.spec.template.spec.nodeSelector).toEqual({ "amd.com/gpu.device-id": "74b5" });
        expect(d.spec.template.spec.imagePullSecrets).toEqual([{ name: "regcred" }]);
        expect(r2.job("train", "lora-11b").spec.template.spec.nodeSelector).toEqual({ "amd.com/gpu.device-id": "74b5" });
    });
    it("is created at 0 replicas and scaled by the generation: `up` and `up --refresh` leave the replicas alone", () => {
        expect(dep.spec.replicas).toBe(0);
        expect(r.reg.find((x) => x.type === "kubernetes:apps/v1:Deployment")!.ignoreChanges).toEqual(["spec.replicas"]);
        // The Service has no endpoints at 0 replicas: not awaited.
        expect(r.byKind("Service")[0].metadata.annotations).toEqual({ "pulumi.com/skipAwait": "true" });
    });
    it("has a watchdog beside vLLM that releases it once the generation's pods are gone, with the only API token", () => {
        const w = pod.containers.find((x: any) => x.name === "release");
        expect(w.image).toBe(container(r.job("generate")).image);
        expect(w.command).toEqual(["python", "/opt/cotvr/teacher_scale.py"]);
        expect(w.args).toEqual(["--namespace", "cot-vr", "--deployment", "blog-teacher", "--record", "/results/blog/gpu-time/teacher.jsonl",
            "watch", "--holders", selector({ [LABELS.run]: "blog", [LABELS.stage]: "generate" }), "--grace", String(WATCHDOG_GRACE_SECONDS)]);
        expect(w.resources.limits).toEqual({ memory: "128Mi" });
        expect(w.securityContext).toEqual(c.securityContext);
        // Its token is projected into it alone: vLLM has none (no automount), nor the results volume.
        expect(pod.automountServiceAccountToken).toBe(false);
        expect(pod.serviceAccountName).toBe("blog-teacher");
        expect(w.volumeMounts).toContainEqual({ name: "api-token", mountPath: "/var/run/secrets/kubernetes.io/serviceaccount", readOnly: true });
        expect(w.volumeMounts).toContainEqual({ name: "results", mountPath: "/results", readOnly: false });
        expect(c.volumeMounts.map((m: any) => m.name)).not.toContain("api-token");
        expect(c.volumeMounts.map((m: any) => m.name)).not.toContain("results");
        const token = pod.volumes.find((v: any) => v.name === "api-token");
        expect(token.projected.sources[0]).toEqual({ serviceAccountToken: { path: "token", expirationSeconds: 3600 } });
        const role = r.byKind("Role").find((x) => x.metadata.name === "blog-teacher")!;
        expect(role.rules).toEqual([
            { apiGroups: [""], resources: ["pods"], verbs: ["list"] },
            { apiGroups: ["apps"], resources: ["deployments/scale"], resourceNames: ["blog-teacher"], verbs: ["get", "patch"] },
        ]);
        const binding = r.byKind("RoleBinding").find((x) => x.metadata.name === "blog-teacher")!;
        expect(binding.subjects).toEqual([{ kind: "ServiceAccount", name: "blog-teacher", namespace: "cot-vr" }]);
    });
    it("mounts the results volume for the watchdog's record only when it is ReadWriteMany (else the teacher could not start)", async () => {
        const r2 = await render(settings({ storage: { results: { accessMode: "ReadWriteOncePod" } } }));
        const p2 = r2.byKind("Deployment")[0].spec.template.spec;
        const w = p2.containers.find((x: any) => x.name === "release");
        expect(w.args).not.toContain("--record");
        expect(p2.volumes.map((v: any) => v.name)).not.toContain("results");
        expect(w.args).toContain("watch");
    });
    it("with teacher.keep serves from the stack: 1 replica owned by the stack, the Service awaited, no scaler", async () => {
        const r2 = await render(settings({ teacher: { keep: true } }));
        expect(r2.byKind("Deployment")[0].spec.replicas).toBe(1);
        expect(r2.reg.find((x) => x.type === "kubernetes:apps/v1:Deployment")!.ignoreChanges).toEqual([]);
        expect(r2.byKind("Service")[0].metadata.annotations).toBeUndefined();
        const g = container(r2.job("generate"));
        expect(g.args).not.toContain("--teacher-deployment");
        expect(r2.byKind("Role").map((x) => x.metadata.name)).toEqual(["blog-report"]);
        expect(r2.job("generate").spec.template.spec.serviceAccountName).toBeUndefined();
        const kept = r2.byKind("Deployment")[0].spec.template.spec;
        expect(kept.containers.map((x: any) => x.name)).toEqual(["vllm"]);
        expect(kept.serviceAccountName).toBeUndefined();
    });
    it("is absent when the stack disables it", async () => {
        const r2 = await render(settings({ stages: { teacher: false, generate: false } }));
        expect(r2.byKind("Deployment")).toEqual([]);
        expect(r2.byKind("Service")).toEqual([]);
    });
});

describe("CoT generation", async () => {
    const s = settings({ generate: { limit: 2000, temperature: 0.3 } });
    const r = await render(s);
    const job = r.job("generate");
    const sdk = YAML.parse(r.configOf(job)["sdk.yaml"]);
    it("holds the teacher: scales its Deployment through a Role limited to that Deployment's scale", () => {
        const args = container(job).args;
        expect(argOf(args, "--teacher-deployment")).toBe("blog-teacher");
        expect(argOf(args, "--teacher-namespace")).toBe("cot-vr");
        expect(argOf(args, "--teacher-record")).toBe("/results/blog/gpu-time/teacher.jsonl");
        expect(argOf(args, "--teacher-timeout")).toBe(String(90 * 60));
        const role = r.byKind("Role").find((x) => x.metadata.name === "blog-generate")!;
        expect(role.rules).toEqual([{ apiGroups: ["apps"], resources: ["deployments/scale"], resourceNames: ["blog-teacher"], verbs: ["get", "patch"] }]);
        const binding = r.byKind("RoleBinding").find((x) => x.metadata.name === "blog-generate")!;
        expect(binding.subjects).toEqual([{ kind: "ServiceAccount", name: "blog-generate", namespace: "cot-vr" }]);
        expect(job.spec.template.spec.serviceAccountName).toBe("blog-generate");
        // The Job starts only once its Role is bound, after the teacher is defined.
        expect(r.reg.find((x) => x.name === "cot-vr-generate-job")!.dependsOn).toEqual(["cot-vr-teacher-service", "cot-vr-generate-binding"]);
        expect(container(job).volumeMounts).toContainEqual({ name: "results", mountPath: "/results", readOnly: false });
    });
    it("asks the teacher by its served name at its Service", () => {
        expect(sdk.llm.provider).toBe("api-endpoint");
        expect(sdk["api-endpoint"].model).toBe(s.teacher.servedModelName);
        expect(sdk["api-endpoint"].api_base).toBe("http://blog-teacher.cot-vr.svc.cluster.local:8000/v1");
    });
    it("sends the blog's CoT prompt as the top-level prompt (not prompts.xqa_add_reasoning)", () => {
        expect(sdk.prompt).toMatch(/^You are an AI with an IQ of 170/);
        expect(sdk.prompt).toMatch(/Final answer: \{answer\}/);
        expect(sdk.prompts).toBeUndefined();
        expect(sdk.input_split).toBe("train");
        expect(sdk.output_split).toBe("train");
    });
    it("takes the sampling settings from config", () => {
        expect(sdk.generation).toEqual({ temperature: 0.3, top_p: 0.95, max_tokens: 4092, batch_size: 32 });
    });
    it("writes cot_chartqa on the data volume, with the sample limit", () => {
        const args = container(job).args;
        expect(argOf(args, "--out")).toBe("/data/cot_chartqa");
        expect(argOf(args, "--limit")).toBe("2000");
        expect(argOf(args, "--source")).toBe("HuggingFaceM4/ChartQA");
        expect(container(job).command).toEqual(["python", "/opt/cotvr/generate_cot.py"]);
    });
    it("takes a stack's own prompt", async () => {
        const r2 = await render(settings({ generate: { prompt: "Think step by step." } }));
        expect(YAML.parse(r2.configOf(r2.job("generate"))["sdk.yaml"]).prompt).toBe("Think step by step.");
    });
});

describe("Jobs", async () => {
    const r = await render(settings({ timing: { evaluate: { timeout: "7h", retries: 5 } } }));
    it("have no TTL, a deadline and a timeout from config, and fail at once on bad input", () => {
        for (const j of r.byKind("Job")) {
            expect(j.spec.ttlSecondsAfterFinished).toBeUndefined();
            expect(j.spec.template.spec.restartPolicy).toBe("Never");
            expect(Number(j.metadata.annotations["pulumi.com/timeoutSeconds"])).toBe(j.spec.activeDeadlineSeconds);
            expect(j.spec.podFailurePolicy.rules[0]).toMatchObject({ action: "FailJob", onExitCodes: { operator: "In", values: [2, 3, 4, 5, 6] } });
        }
        const ev = r.job("evaluate", "base-11b");
        expect(ev.spec.activeDeadlineSeconds).toBe(7 * 3600);
        expect(ev.spec.backoffLimit).toBe(5);
    });
    it("do not count evictions and node loss against retries, so a fine-tune resumes", () => {
        const t = r.job("train", "qlora-90b");
        expect(t.spec.podFailurePolicy.rules).toContainEqual({ action: "Ignore", onPodConditions: [{ type: "DisruptionTarget", status: "True" }] });
        expect(t.spec.backoffLimit).toBe(2);
    });
    it("submit without waiting when a stage is not awaited", async () => {
        const r2 = await render(settings({ timing: { train: { await: false } }, stages: { sample: false, evaluate: false, report: false } }));
        const t = r2.job("train", "lora-11b");
        expect(t.metadata.annotations["pulumi.com/skipAwait"]).toBe("true");
        expect(t.metadata.annotations["pulumi.com/replaceUnready"]).toBeUndefined();
    });
    it("tolerate the GPU taint only on GPU pods, unless cluster.cpuTolerations says so (a cluster of GPU nodes only)", async () => {
        const cpuStages = ["download", "generate", "report"];
        for (const j of r.byKind("Job")) {
            const tol = j.spec.template.spec.tolerations;
            if (cpuStages.includes(j.metadata.labels[LABELS.stage])) expect(tol, j.metadata.name).toBeUndefined();
            else expect(tol, j.metadata.name).toEqual([{ key: "amd.com/gpu", operator: "Exists", effect: "NoSchedule" }]);
        }
        const r2 = await render(settings({ cluster: { cpuTolerations: [{ key: "amd.com/gpu" }] } }));
        for (const j of r2.byKind("Job").filter((j) => cpuStages.includes(j.metadata.labels[LABELS.stage]))) {
            expect(j.spec.template.spec.tolerations, j.metadata.name).toEqual([{ key: "amd.com/gpu", operator: "Exists" }]);
        }
    });
    it("request one GPU for each fine-tune, sample and evaluation, none for downloads, generation and report", () => {
        for (const j of r.byKind("Job")) {
            const stage = j.metadata.labels[LABELS.stage];
            const gpus = container(j).resources.limits["amd.com/gpu"];
            expect([stage, gpus]).toEqual([stage, ["train", "sample", "evaluate"].includes(stage) ? "1" : undefined]);
        }
    });
    it("wait for their DAG edges in the Job alone: every stage's ConfigMap and Role exist from the update's start", () => {
        // A stage component that waited for its edges would hold back its children until the upstream
        // Jobs finished, so a ConfigMap the API server rejects would surface a GPU-day late.
        const deps = (name: string) => r.reg.find((x) => x.name === name)!.dependsOn;
        for (const c of r.reg.filter((x) => x.type.startsWith("cot-vr:stages:"))) expect([c.name, c.dependsOn]).toEqual([c.name, undefined]);
        for (const name of ["cot-vr-train-lora-11b-config", "cot-vr-report-config", "cot-vr-report-role", "cot-vr-generate-role"]) expect(deps(name)).toBeUndefined();
        expect(deps("cot-vr-train-lora-11b-job")).toEqual(["cot-vr-generate-job", "cot-vr-download-11b-job"]);
        expect(deps("cot-vr-teacher-deployment")).toEqual(["cot-vr-download-90b-job"]);
    });
    it("are named <run>-<stage>-<variant>-<hash> within 63 characters", () => {
        for (const j of r.byKind("Job")) {
            expect(j.metadata.name).toMatch(/^blog-[a-z]+(-[a-z0-9-]+)?-[0-9a-f]{8}$/);
            expect(j.metadata.name.length).toBeLessThanOrEqual(63);
            expect(j.metadata.name.endsWith(j.metadata.labels[LABELS.hash])).toBe(true);
        }
    });
});

describe("throughput benchmark (stages.benchmark)", async () => {
    const s = settings({ stages: { download: false, generate: false, train: false, sample: false, evaluate: false, report: false, benchmark: true } });
    const r = await render(s);
    it("measures each fine-tune from its own rendered config on one GPU, with nothing to download", async () => {
        const jobs = r.byKind("Job");
        expect(jobs.map((j) => j.metadata.labels[LABELS.stage])).toEqual(["benchmark", "benchmark"]);
        const j = r.job("benchmark", "lora-11b");
        const args = container(j).args;
        expect(container(j).command).toEqual(["python", "/opt/cotvr/bench_finetune.py"]);
        // the blog's exact setting (16 x 1, checkpointing, eager) against the shipped one, in the same run
        expect(argOf(args, "--settings")).toBe("blog:m16,best:m4:x");
        expect(argOf(container(r.job("benchmark", "qlora-90b")).args, "--settings")).toBe("blog:m2,compile:m2");
        expect(argOf(args, "--json-out")).toBe("/results/blog/bench/lora-11b.json");
        expect(container(j).resources.limits["amd.com/gpu"]).toBe("1");
        // The very config the fine-tune would run.
        const train = await render(settings());
        expect(r.configOf(j)["train.yaml"]).toBe(train.configOf(train.job("train", "lora-11b"))["train.yaml"]);
        expect(s.neededModels).toEqual([]);
    });
});
