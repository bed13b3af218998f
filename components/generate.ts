// Chain-of-thought dataset generation: synthetic-data-kit's `vqa_add_reasoning` over ChartQA, asking
// the teacher. The wrapper publishes the dataset only when every row passed the check. Unless the
// stack keeps the teacher, the generation holds it: it scales the teacher Deployment to teacher.replicas
// (1 by default) before its
// first request and back to 0 when it ends, however it ends, through a Role limited to that
// Deployment's scale subresource.
import * as pulumi from "@pulumi/pulumi";
import * as k8s from "@pulumi/kubernetes";
import { Settings } from "../config";
import { apiAccount } from "./account";
import { RenderedNode } from "./graph";
import { jobArgs, StageArgs, StageJob } from "./job";
import { jobName, labels, shortHash, teacherName } from "./naming";
import { configFile, datasetDir, programCommand, teacherRecord } from "./paths";
import { hfEnv, StageContext, storageVolumes } from "./pod";

const CONFIG_KEY = "sdk.yaml";

/** The ServiceAccount, Role and RoleBinding name of the generation (it scales the teacher). */
export function generateAccountName(s: Settings): string {
    return `${s.run}-generate`;
}

export function generateArgs(s: Settings, datasetHash: string): string[] {
    const g = s.generate;
    const holdTeacher = s.teacher.keep
        ? []
        : [
            "--teacher-deployment", teacherName(s.run),
            "--teacher-namespace", s.cluster.namespace,
            "--teacher-record", teacherRecord(s),
            ...(s.teacher.replicas > 1 ? ["--teacher-replicas", String(s.teacher.replicas)] : []),
        ];
    return [
        "--config", configFile(CONFIG_KEY),
        "--source", g.source,
        "--out", datasetDir(s),
        "--config-hash", datasetHash,
        ...(g.limit ? ["--limit", String(g.limit)] : []),
        // The teacher loads 90B weights before it answers: wait as long as its stage timeout allows.
        "--teacher-timeout", String(s.timing.teacher.timeout),
        ...holdTeacher,
    ];
}

/** Scaling the teacher is all the generation may do with the API. */
export function generateRoleRules(s: Settings): k8s.types.input.rbac.v1.PolicyRule[] {
    return [{ apiGroups: ["apps"], resources: ["deployments/scale"], resourceNames: [teacherName(s.run)], verbs: ["get", "patch"] }];
}

export function generateJobArgs(ctx: StageContext, node: RenderedNode<"generate">, configMapName: pulumi.Input<string>, serviceAccountName?: pulumi.Input<string>): k8s.batch.v1.JobArgs {
    const s = ctx.settings;
    const hash = shortHash(node.identity, ctx.imageIds.datagen);
    const { volumes, volumeMounts } = storageVolumes(ctx, { data: "rw", ...(s.teacher.keep ? {} : { results: "rw" as const }) }, { configMap: configMapName, hfToken: true });
    return jobArgs(ctx, {
        name: jobName(s.run, "generate", "cot", hash),
        stage: "generate",
        labels: labels(s.run, "generate", "cot", hash),
        container: {
            image: ctx.images.datagen,
            command: programCommand("generate_cot.py"),
            args: generateArgs(s, node.identity),
            env: hfEnv(s),
            resources: { requests: { cpu: s.generate.cpu, memory: s.generate.memory }, limits: { memory: s.generate.memory } },
            volumeMounts,
        },
        volumes,
        gpu: false,
        serviceAccountName,
    });
}

export class Generate extends StageJob {
    constructor(name: string, args: StageArgs<RenderedNode<"generate">>, opts?: pulumi.ComponentResourceOptions) {
        const { ctx, node } = args;
        const s = ctx.settings;
        super("cot-vr:stages:Generate", name, args, (parent) => {
            let account: pulumi.Input<string> | undefined;
            const extraDependsOn: pulumi.Resource[] = [];
            if (!s.teacher.keep) {
                const a = apiAccount(parent, name, ctx, { name: generateAccountName(s), labels: labels(s.run, "generate"), rules: generateRoleRules(s) });
                extraDependsOn.push(a.binding);
                account = a.name;
            }
            return {
                stage: "generate",
                config: { labels: labels(s.run, "generate", "cot"), data: { [CONFIG_KEY]: node.recipe } },
                job: (cm) => generateJobArgs(ctx, node, cm!, account),
                extraDependsOn,
            };
        }, { ...opts, aliases: [{ type: "cot-vr:stages:CotGeneration" }] });
    }
}
