// The whole experiment as one component: provider, namespace, secrets, volumes, and the enabled
// stages wired into the DAG with `dependsOn`:
//   downloads -> teacher -> generation -> fine-tunes -> tuned samples/evaluations -> report
//   downloads -> base samples/evaluations -> report
// A stage whose input came from an earlier update finds it on the volume (its program checks the
// completion marker and fails at once if it is missing).
import * as pulumi from "@pulumi/pulumi";
import * as k8s from "@pulumi/kubernetes";
import { ModelRef, Settings } from "../config";
import { CotGeneration } from "./cotDataset";
import { ModelDownloads } from "./download";
import { ModelRead } from "./evaluate";
import { FineTune } from "./finetune";
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
    public readonly teacherUrl?: string;
    /** Job names per stage, for `kubectl get jobs`. */
    public readonly jobs: pulumi.Output<string>[] = [];

    constructor(name: string, args: PipelineArgs, opts?: pulumi.ComponentResourceOptions) {
        super("cot-vr:index:Pipeline", name, {}, opts);
        const s = args.settings;
        const provider = new k8s.Provider(`${name}-k8s`, {
            kubeconfig: s.cluster.kubeconfig,
            context: s.cluster.context,
            enableServerSideApply: true,
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
            stringData: secretData(args.secrets),
        }, { parent: this, provider });

        let images: ImageRefs = configuredImages(s);
        const pullSecrets: pulumi.Input<string>[] = [...s.cluster.imagePullSecrets];
        if (s.images.build && s.images.registry && args.secrets.registryPassword) {
            images = new ProjectImages(`${name}-images`, { settings: s, registryPassword: args.secrets.registryPassword }, { parent: this });
            const reg = s.images.registry;
            const pull = new k8s.core.v1.Secret(`${name}-registry`, {
                metadata: { name: `${s.run}-registry`, namespace: ns, labels: labels(s.run, "secrets") },
                type: "kubernetes.io/dockerconfigjson",
                stringData: { ".dockerconfigjson": dockerConfigJson(reg.server, reg.username, args.secrets.registryPassword) },
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
        const st = s.stages;
        const after = (...deps: (pulumi.Resource | undefined)[]) => o({ dependsOn: deps.filter((d): d is pulumi.Resource => d !== undefined) });

        const downloads = st.download ? new ModelDownloads(`${name}-download`, ctx, o()) : undefined;
        const dl = (size: "11b" | "90b") => downloads?.jobs[size];

        const teacher = st.teacher ? new Teacher(`${name}-teacher`, ctx, after(dl("90b"))) : undefined;
        this.teacherUrl = teacher?.apiBase;

        const generation = st.generate ? new CotGeneration(`${name}-generate`, ctx, after(teacher)) : undefined;

        const fineTunes: Record<string, FineTune> = {};
        for (const [variant, v] of s.trainings) {
            fineTunes[variant] = new FineTune(`${name}-train-${variant}`, { ctx, variant, settings: v }, after(generation?.job, dl(v.model)));
        }

        // Base models need only their download; tuned ones wait for their fine-tune if it runs in this update.
        const producer = (ref: ModelRef) => (ref.trainVariant ? fineTunes[ref.trainVariant]?.job : dl(ref.size));
        const samples = s.samples.map((ref) =>
            new ModelRead(`${name}-sample-${ref.name}`, { ctx, stage: "sample", model: ref }, after(producer(ref))));
        const evaluations = s.evaluations.map((ref) =>
            new ModelRead(`${name}-eval-${ref.name}`, { ctx, stage: "evaluate", model: ref }, after(producer(ref))));

        if (st.report) {
            new Report(`${name}-report`, { ctx, inputs: [...evaluations, ...samples] }, o());
        }

        const all = [
            ...Object.values(downloads?.jobs ?? {}),
            generation?.job,
            ...Object.values(fineTunes).map((f) => f.job),
            ...samples.map((x) => x.job),
            ...evaluations.map((x) => x.job),
        ].filter((j): j is k8s.batch.v1.Job => j !== undefined);
        this.jobs = all.map((j) => j.metadata.name);
        this.registerOutputs({ namespace: this.namespace, claims: this.claims, teacherUrl: this.teacherUrl, jobs: this.jobs });
    }
}
