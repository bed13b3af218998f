// The whole experiment as one component: provider, namespace, secrets, volumes, and the enabled
// stages wired into the DAG with `dependsOn`:
//   downloads -> teacher -> generation -> fine-tunes -> tuned samples/evaluations -> report
//   downloads -> base samples/evaluations -> report
// A stage whose input came from an earlier update finds it on the volume (its program checks the
// completion marker and fails at once if it is missing).
import * as pulumi from "@pulumi/pulumi";
import * as k8s from "@pulumi/kubernetes";
import { ModelSize, Settings } from "../config";
import { CotGeneration } from "./cotDataset";
import { ModelDownload } from "./download";
import { ModelRead } from "./evaluate";
import { FineTune } from "./finetune";
import { stageGraph } from "./graph";
import { configuredImages, ImageRefs, ProjectImages } from "./images";
import { labels } from "./naming";
import { StageContext } from "./pod";
import { Report } from "./report";
import { SharedVolumes } from "./storage";
import { Teacher } from "./teacher";

export interface PipelineSecrets {
    readonly hfToken?: pulumi.Input<string>;
    readonly wandbApiKey?: pulumi.Input<string>;
    readonly registryPassword?: pulumi.Input<string>;
}

export interface PipelineArgs {
    readonly settings: Settings;
    /** Secret values (already marked secret by the caller). */
    readonly secrets: PipelineSecrets;
}

/** Kubernetes Secret data: the keys the pods read. Values stay Pulumi secrets. */
export function secretData(secrets: PipelineSecrets): Record<string, pulumi.Input<string>> {
    const data: Record<string, pulumi.Input<string>> = {};
    if (secrets.hfToken) data.HF_TOKEN = secrets.hfToken;
    if (secrets.wandbApiKey) data.WANDB_API_KEY = secrets.wandbApiKey;
    return data;
}

/** .dockerconfigjson for pulling the built images. */
export function dockerConfigJson(server: string, username: string, password: pulumi.Input<string>): pulumi.Output<string> {
    return pulumi.secret(pulumi.output(password).apply((p) =>
        JSON.stringify({ auths: { [server]: { username, password: p, auth: Buffer.from(`${username}:${p}`).toString("base64") } } }),
    ));
}

export class Pipeline extends pulumi.ComponentResource {
    public readonly namespace: string;
    public readonly claims: SharedVolumes["claims"];
    public readonly teacherUrl?: string = undefined;
    /** Job names per stage, for `kubectl get jobs`. */
    public readonly jobs: pulumi.Output<string>[] = [];

    constructor(name: string, args: PipelineArgs, opts?: pulumi.ComponentResourceOptions) {
        super("cot-vr:index:Pipeline", name, {}, opts);
        const s = args.settings;
        // Secret whatever the caller passed: a plain string here would land in state in clear text.
        const secrets: PipelineSecrets = Object.fromEntries(
            Object.entries(args.secrets).filter(([, v]) => v !== undefined).map(([k, v]) => [k, pulumi.secret(v)]),
        );
        const provider = new k8s.Provider(`${name}-k8s`, {
            kubeconfig: s.cluster.kubeconfig,
            context: s.cluster.context,
            enableServerSideApply: true,
            // A destroyed stack keeps its namespace and claims; the next `up` must take them back
            // instead of failing with AlreadyExists (provider >= 4.29). It also lets a retried create
            // after a hard-killed `up` adopt the Job it had already created under the same name.
            upsertExistingObjects: true,
        }, { parent: this });
        const o = (extra?: pulumi.CustomResourceOptions): pulumi.ComponentResourceOptions => ({ parent: this, providers: { kubernetes: provider }, ...extra });

        // Namespace: created ones are kept on destroy, since deleting a namespace deletes its volumes.
        let ns: pulumi.Input<string> = s.cluster.namespace;
        if (s.cluster.createNamespace) {
            const nsRes = new k8s.core.v1.Namespace(`${name}-ns`, {
                metadata: { name: s.cluster.namespace, labels: labels(s.run, "namespace") },
            }, { parent: this, provider, retainOnDelete: s.storage.retainOnDestroy });
            ns = nsRes.metadata.name;
        }
        this.namespace = s.cluster.namespace;

        const volumes = new SharedVolumes(`${name}-volumes`, { settings: s, namespace: ns }, o());
        this.claims = volumes.claims;

        const secret = new k8s.core.v1.Secret(`${name}-secrets`, {
            metadata: { name: `${s.run}-secrets`, namespace: ns, labels: labels(s.run, "secrets") },
            type: "Opaque",
            stringData: secretData(secrets),
        }, { parent: this, provider });

        let images: ImageRefs = configuredImages(s);
        const pullSecrets: pulumi.Input<string>[] = [...s.cluster.imagePullSecrets];
        if (s.images.build && s.images.registry && secrets.registryPassword) {
            images = new ProjectImages(`${name}-images`, { settings: s, registryPassword: secrets.registryPassword }, { parent: this });
            const reg = s.images.registry;
            const pull = new k8s.core.v1.Secret(`${name}-registry`, {
                metadata: { name: `${s.run}-registry`, namespace: ns, labels: labels(s.run, "secrets") },
                type: "kubernetes.io/dockerconfigjson",
                stringData: { ".dockerconfigjson": dockerConfigJson(reg.server, reg.username, secrets.registryPassword) },
            }, { parent: this, provider });
            pullSecrets.push(pull.metadata.name);
        }

        const ctx: StageContext = {
            settings: s,
            namespace: ns,
            claims: volumes.claims,
            secretName: secret.metadata.name,
            images: images.refs,
            imageIds: images.ids,
            imagePullSecrets: pullSecrets,
        };
        // Stages in DAG order (Map insertion order is topological); each waits for its graph edges.
        const nodes = new Map<string, pulumi.Resource>();
        const after = (id: string) => o({ dependsOn: graph.get(id)!.map((d) => nodes.get(d)!) });
        const graph = stageGraph(s);
        const jobs: k8s.batch.v1.Job[] = [];
        const reads: ModelRead[] = [];
        for (const id of graph.keys()) {
            const [kind, arg] = id.split(":");
            switch (kind) {
                case "download": {
                    const size = arg as ModelSize;
                    const d = new ModelDownload(`${name}-download-${size}`, { ctx, size }, after(id));
                    nodes.set(id, d.job);
                    jobs.push(d.job);
                    break;
                }
                case "teacher": {
                    const t = new Teacher(`${name}-teacher`, ctx, after(id));
                    this.teacherUrl = t.apiBase;
                    nodes.set(id, t.service);
                    break;
                }
                case "generate": {
                    const g = new CotGeneration(`${name}-generate`, ctx, after(id));
                    nodes.set(id, g.job);
                    jobs.push(g.job);
                    break;
                }
                case "train": {
                    const f = new FineTune(`${name}-train-${arg}`, { ctx, variant: arg, settings: s.train.variants[arg] }, after(id));
                    nodes.set(id, f.job);
                    jobs.push(f.job);
                    break;
                }
                case "sample":
                case "evaluate": {
                    const list = kind === "sample" ? s.samples : s.evaluations;
                    const model = list.find((r) => r.name === arg)!;
                    const r = new ModelRead(`${name}-${kind === "sample" ? "sample" : "eval"}-${arg}`, { ctx, stage: kind, model }, after(id));
                    nodes.set(id, r.job);
                    jobs.push(r.job);
                    reads.push(r);
                    break;
                }
                case "report": {
                    const rep = new Report(`${name}-report`, { ctx, inputs: reads }, after(id));
                    nodes.set(id, rep.job);
                    break;
                }
            }
        }

        this.jobs = jobs.map((j) => j.metadata.name);
        this.registerOutputs({ namespace: this.namespace, claims: this.claims, teacherUrl: this.teacherUrl, jobs: this.jobs });
    }
}
