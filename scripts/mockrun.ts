// Runs the Pipeline component under Pulumi's mocks and records every resource it registers, with
// its inputs. The render command and the unit tests both use it: no cluster, credentials or service.
import * as pulumi from "@pulumi/pulumi";
import { Settings } from "../config";
import { shortHash } from "../components/naming";
import type { PipelineSecrets } from "../components/pipeline";

export interface Registered {
    readonly type: string;
    readonly name: string;
    readonly inputs: Record<string, any>;
    readonly provider?: string;
    readonly dependsOn?: string[];
    readonly ignoreChanges?: string[];
    /** A read of an existing object (`<Resource>.get`), not one the program creates. */
    readonly read?: string;
}

let recorded: Registered[] = [];
/** Resource options by resource name (Pulumi's mocks see inputs only). */
let options = new Map<string, { ignoreChanges?: string[]; dependsOn?: string[] }>();

/** What a secret value is recorded as: mocks see the value, the record never holds it. */
export const SECRET_PLACEHOLDER = "<redacted>";
const SECRET_SIG = "4dabf18193072939515e22adb298388d"; // Pulumi's wire marker of a secret value

/** Replaces every secret-wrapped value with the placeholder. */
function hideSecrets(v: any): any {
    if (Array.isArray(v)) return v.map(hideSecrets);
    if (v && typeof v === "object") {
        if (SECRET_SIG in v) {
            // A secret map (e.g. a Secret's stringData) keeps its keys, so what is set stays visible.
            const inner = v.value;
            return inner && typeof inner === "object" && !Array.isArray(inner)
                ? Object.fromEntries(Object.keys(inner).map((k) => [k, SECRET_PLACEHOLDER]))
                : SECRET_PLACEHOLDER;
        }
        return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, hideSecrets(x)]));
    }
    return v;
}
let mocksSet = false;

/** Sets Pulumi mocks once per process. The mock fills in what the API server would (auto names). */
export function ensureMocks(stack = "test"): void {
    if (mocksSet) return;
    mocksSet = true;
    pulumi.runtime.setMocks({
        newResource(args: pulumi.runtime.MockResourceArgs) {
            if (args.id !== undefined && args.id !== "") {
                // A read: the cluster is empty under mocks, so it finds nothing beyond what was asked.
                recorded.push({ type: args.type, name: args.name, inputs: {}, provider: args.provider, read: args.id, ...options.get(args.name) });
                return { id: args.id, state: {} };
            }
            const state = hideSecrets(args.inputs);
            if (args.type.startsWith("kubernetes:") && args.type !== "pulumi:providers:kubernetes") {
                // Auto-naming: Pulumi appends a random suffix; a content hash keeps renders stable.
                const md = { ...(state.metadata ?? {}) };
                if (!md.name) md.name = `${args.name}-${shortHash(args.inputs).slice(0, 7)}`;
                state.metadata = md;
            }
            recorded.push({ type: args.type, name: args.name, inputs: state, provider: args.provider, ...options.get(args.name) });
            return { id: `${args.name}-id`, state };
        },
        call(args: pulumi.runtime.MockCallArgs) {
            return args.inputs;
        },
    }, "cot-vr", stack, false);
}

/** Records the options that matter to the tests (who waits for whom, what `up` ignores). */
const recordOptions: pulumi.ResourceTransformation = (a) => {
    const deps = a.opts.dependsOn;
    const list = (Array.isArray(deps) ? deps : deps ? [deps] : []) as unknown as pulumi.Resource[];
    const names = list.map((r) => (r as unknown as { __name?: string }).__name).filter((n): n is string => Boolean(n));
    options.set(a.name, { ignoreChanges: a.opts.ignoreChanges, dependsOn: names.length ? names : undefined });
    return undefined;
};

/** Waits until every registration the program started has been answered. */
async function settle(): Promise<void> {
    const wait = (pulumi.runtime as unknown as { waitForRPCs(): Promise<void> }).waitForRPCs;
    await wait();
    await new Promise((r) => setTimeout(r, 0));
    await wait();
}

/** Builds the pipeline for `settings` and returns what it registered, in registration order. */
export async function runPipeline(settings: Settings, secrets: PipelineSecrets = {}): Promise<Registered[]> {
    ensureMocks(settings.stack);
    recorded = [];
    // Imported here so mocks are set before any resource module is loaded.
    const { Pipeline } = await import("../components/pipeline");
    options = new Map();
    new Pipeline("cot-vr", { settings, secrets }, { transformations: [recordOptions] });
    await settle();
    const out = recorded;
    recorded = [];
    return out;
}

/** Kubernetes objects among the registered resources, as the API server would receive them. */
export function kubernetesObjects(reg: Registered[]): Record<string, any>[] {
    return reg
        .filter((r) => r.type.startsWith("kubernetes:") && r.type !== "pulumi:providers:kubernetes" && r.read === undefined)
        .map((r) => {
            const { apiVersion, kind, metadata, ...rest } = r.inputs;
            return { apiVersion, kind, metadata, ...rest };
        });
}
