// The whole experiment as one component: provider, namespace, secrets, volumes, and the enabled
// stages wired into the DAG, one component per graph node from STAGE_COMPONENTS (components/README.md
// draws the floor plan and says how to add a stage):
//   downloads -> teacher -> generation -> fine-tunes -> tuned samples/evaluations -> report
//   downloads -> base samples/evaluations -> report
// A stage whose input came from an earlier update finds it on the volume (its program checks the
// completion marker and fails at once if it is missing).
import * as pulumi from "@pulumi/pulumi";
import * as k8s from "@pulumi/kubernetes";
import { Settings, StageName } from "../config";
import { SECRET_DATA_KEYS, secretNames, stageLabels, STAGES } from "../contract";
import { Benchmark } from "./benchmark";
import { Download } from "./download";
import { Evaluate } from "./evaluate";
import { Generate } from "./generate";
import { NodeId, renderedGraph, RenderedNode } from "./graph";
import { stageIdentities } from "./identity";
import { configuredImages, ImageRefs, ProjectImages } from "./images";
import { StageArgs, StageComponent, StageJob } from "./job";
import { labels, teacherApiBase } from "./naming";
import { networkPolicies } from "./network";
import { StageContext } from "./pod";
import { renderRecipes } from "./recipes";
import { Report } from "./report";
import { Sample } from "./sample";
import { SharedVolumes } from "./storage";
import { Teacher } from "./teacher";
import { Train } from "./train";

/** Secret values, read beside the settings (config/pulumi.ts); stages only ever see the Secret's name. */
export interface PipelineSecrets {
    readonly hfToken?: pulumi.Input<string>;
    readonly wandbApiKey?: pulumi.Input<string>;
    readonly registryPassword?: pulumi.Input<string>;
    readonly notifyWebhook?: pulumi.Input<string>;
}

export interface PipelineArgs {
    readonly settings: Settings;
    /** Secret values (marked secret here whatever the caller passed). */
    readonly secrets: PipelineSecrets;
}

/** Kubernetes Secret data: the keys the pods read. Values stay Pulumi secrets. */
export function secretData(secrets: PipelineSecrets): Record<string, pulumi.Input<string>> {
    const data: Record<string, pulumi.Input<string>> = {};
    if (secrets.hfToken) data[SECRET_DATA_KEYS.hfToken] = secrets.hfToken;
    if (secrets.wandbApiKey) data[SECRET_DATA_KEYS.wandbApiKey] = secrets.wandbApiKey;
    if (secrets.notifyWebhook) data[SECRET_DATA_KEYS.notifyWebhook] = secrets.notifyWebhook;
    return data;
}

/** .dockerconfigjson for pulling the built images. */
export function dockerConfigJson(server: string, username: string, password: pulumi.Input<string>): pulumi.Output<string> {
    return pulumi.secret(pulumi.output(password).apply((p) =>
        JSON.stringify({ auths: { [server]: { username, password: p, auth: Buffer.from(`${username}:${p}`).toString("base64") } } }),
    ));
}

/** The component class of stage K's nodes. */
export type StageClass<K extends StageName> = new (name: string, args: StageArgs<RenderedNode<K>>, opts?: pulumi.ComponentResourceOptions) => StageComponent;

/** The component of each stage's nodes: a row per stage of contract.ts's STAGES. */
export const STAGE_COMPONENTS: { readonly [K in StageName]: StageClass<K> } = {
    download: Download,
    teacher: Teacher,
    generate: Generate,
    train: Train,
    sample: Sample,
    evaluate: Evaluate,
    report: Report,
    benchmark: Benchmark,
};

/**
 * `<pipeline>-<jobWord>[-<variant>]`: a stage component's name. The generation's fixed variant is not
 * in it: these names are in every URN, so they stay as the first release chose them.
 */
export function stageComponentName(name: string, node: RenderedNode): string {
    const variant = STAGES[node.kind].fixedVariant === undefined ? stageLabels(node).variant : undefined;
    return [name, STAGES[node.kind].jobWord, variant].filter(Boolean).join("-");
}

export class Pipeline extends pulumi.ComponentResource {
    public readonly namespace: string;
    public readonly claims: SharedVolumes["claims"];
    public readonly teacherUrl?: string;
    /** Job name per stage node ("train:lora-11b" -> "blog-train-lora-11b-47eb7410"). */
    public readonly jobs: Record<string, string> = {};
    /** The stage component of each Job, by Job name: what `pulumi up` says about a Job is shown under
     * it (not under the Job, whose URN resolves only once the provider has awaited it). */
    public readonly jobComponents = new Map<string, pulumi.Resource>();
    /** The report's Job (stages.report on): its outputs resolve once the provider has awaited it. */
    public readonly reportJob?: k8s.batch.v1.Job;

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

        // Namespace: kept on destroy unless storage.retainOnDestroy is false, since deleting a namespace
        // deletes its volumes; a stack borrowing claims may not own one it would delete (config/derive.ts).
        let ns: pulumi.Input<string> = s.cluster.namespace;
        if (s.cluster.createNamespace) {
            const nsRes = new k8s.core.v1.Namespace(`${name}-ns`, {
                metadata: { name: s.cluster.namespace, labels: labels(s.run, "namespace") },
            }, { parent: this, provider, retainOnDelete: s.storage.retainOnDestroy });
            ns = nsRes.metadata.name;
        }
        this.namespace = s.cluster.namespace;
        this.teacherUrl = s.stages.teacher ? teacherApiBase(s.run, s.cluster.namespace, s.teacher.port) : undefined;

        const volumes = new SharedVolumes(`${name}-volumes`, { settings: s, namespace: ns }, { parent: this, providers: { kubernetes: provider } });
        this.claims = volumes.claims;

        const secret = new k8s.core.v1.Secret(`${name}-secrets`, {
            metadata: { name: secretNames(s.run).tokens, namespace: ns, labels: labels(s.run, "secrets") },
            type: "Opaque",
            stringData: secretData(secrets),
        }, { parent: this, provider });

        let images: ImageRefs = configuredImages(s);
        const pullSecrets: pulumi.Input<string>[] = [...s.cluster.imagePullSecrets];
        if (s.images.build && s.images.registry && secrets.registryPassword) {
            images = new ProjectImages(`${name}-images`, { settings: s, registryPassword: secrets.registryPassword }, { parent: this });
            const reg = s.images.registry;
            const pull = new k8s.core.v1.Secret(`${name}-registry`, {
                metadata: { name: secretNames(s.run).registry, namespace: ns, labels: labels(s.run, "secrets") },
                type: "kubernetes.io/dockerconfigjson",
                stringData: { ".dockerconfigjson": dockerConfigJson(reg.server, reg.username, secrets.registryPassword) },
            }, { parent: this, provider });
            pullSecrets.push(pull.metadata.name);
        }

        if (s.cluster.networkPolicy) {
            for (const [role, policy] of Object.entries(networkPolicies(s, ns))) {
                new k8s.networking.v1.NetworkPolicy(`${name}-netpol-${role}`, policy, { parent: this, provider });
            }
        }

        // Every config rendered once, every identity computed once, for all stages of this update;
        // each graph node carries its own.
        const recipes = renderRecipes(s);
        const ctx: StageContext = {
            settings: s,
            namespace: ns,
            claims: volumes.claims,
            secretName: secret.metadata.name,
            images: images.refs,
            imageIds: images.ids,
            imagePullSecrets: pullSecrets,
        };

        // Stages in DAG order; each one's workload waits for its graph edges.
        const built = new Map<NodeId, StageComponent>();
        for (const node of renderedGraph(s, recipes, stageIdentities(s, recipes, images.ids))) {
            const Stage = STAGE_COMPONENTS[node.kind] as StageClass<StageName>;
            const upstream = node.deps.map((d) => built.get(d)!);
            const stage = new Stage(stageComponentName(name, node), { node, ctx, upstream }, { parent: this, providers: { kubernetes: provider } });
            built.set(node.id, stage);
            if (stage.jobName) this.jobs[node.id] = stage.jobName;
            if (stage instanceof StageJob) this.jobComponents.set(stage.jobName, stage);
            if (stage instanceof Report) this.reportJob = stage.job;
        }
        this.registerOutputs({ namespace: this.namespace, claims: this.claims, teacherUrl: this.teacherUrl, jobs: this.jobs });
    }
}
