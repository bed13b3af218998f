// Shared test helpers: settings from a config object, the pipeline's objects under mocks.
import { parseSettings, Settings } from "../../config";
import { kubernetesObjects, Registered, runPipeline } from "../../scripts/mockrun";

export const TOKEN = "hf_test_secret_token_value";

/** Settings from raw `cot-vr:*` values (the token set as a secret unless given). */
export function settings(raw: Record<string, unknown> = {}, stack = "blog"): Settings {
    const withToken = { hfToken: TOKEN, ...raw };
    const secretKeys = Object.keys(withToken).filter((k) => ["hfToken", "wandbApiKey", "registryPassword"].includes(k)).map((k) => `cot-vr:${k}`);
    return parseSettings(withToken, { stack, secretKeys });
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
    const reg = await runPipeline(s, { hfToken: s.hfToken, wandbApiKey: s.wandbApiKey, registryPassword: s.registryPassword });
    const objects = kubernetesObjects(reg);
    const byKind = (kind: string) => objects.filter((o) => o.kind === kind);
    const job = (stage: string, variant?: string) => {
        const found = byKind("Job").filter((j) => j.metadata.labels["cot-vr/stage"] === stage && (variant === undefined || j.metadata.labels["cot-vr/variant"] === variant));
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
