// Shared test helpers: settings from a config object, the pipeline's objects under mocks.
import { parseSettings, SECRET_KEYS, Settings } from "../../config";
import type { PipelineSecrets } from "../../components/pipeline";
import { kubernetesObjects, Registered, runPipeline } from "../../scripts/mockrun";
import { LABELS } from "../../contract";

export const TOKEN = "hf_test_secret_token_value";

/** The secret values given with each settings object: settings never carry them, the Pipeline gets them beside. */
const secretsOf = new WeakMap<Settings, PipelineSecrets>();

/** Settings from raw `cot-vr:*` values (the token set as a secret unless given). */
export function settings(raw: Record<string, unknown> = {}, stack = "blog"): Settings {
    const withToken: Record<string, unknown> = { hfToken: TOKEN, ...raw };
    const keys = SECRET_KEYS.filter((k) => withToken[k] !== undefined);
    const s = parseSettings(withToken, { stack, secretKeys: keys.map((k) => `cot-vr:${k}`) });
    secretsOf.set(s, Object.fromEntries(keys.map((k) => [k, withToken[k] as string])));
    return s;
}

export interface Rendered {
    reg: Registered[];
    objects: Record<string, any>[];
    byKind(kind: string): Record<string, any>[];
    job(stage: string, variant?: string): Record<string, any>;
    /** The ConfigMap a pod spec mounts at /etc/cotvr. */
    configOf(obj: Record<string, any>): Record<string, string>;
}

export async function render(s: Settings): Promise<Rendered> {
    const reg = await runPipeline(s, secretsOf.get(s) ?? {});
    const objects = kubernetesObjects(reg);
    const byKind = (kind: string) => objects.filter((o) => o.kind === kind);
    const job = (stage: string, variant?: string) => {
        const found = byKind("Job").filter((j) => j.metadata.labels[LABELS.stage] === stage && (variant === undefined || j.metadata.labels[LABELS.variant] === variant));
        if (found.length !== 1) throw new Error(`expected one ${stage}/${variant} Job, found ${found.length}`);
        return found[0];
    };
    const configOf = (obj: Record<string, any>) => {
        const spec = obj.spec.template.spec;
        const vol = spec.volumes.find((v: any) => v.name === "config");
        const cm = byKind("ConfigMap").find((c) => c.metadata.name === vol.configMap.name);
        if (!cm) throw new Error(`no ConfigMap ${vol.configMap.name}`);
        return cm.data;
    };
    return { reg, objects, byKind, job, configOf };
}

export function container(obj: Record<string, any>): Record<string, any> {
    return obj.spec.template.spec.containers[0];
}

/** Value following a flag in an args list. */
export function argOf(args: string[], flag: string): string | undefined {
    const i = args.indexOf(flag);
    return i >= 0 ? args[i + 1] : undefined;
}
