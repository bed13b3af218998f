// Reads the stack's config from the Pulumi runtime (the only place that does) and hands back typed
// settings and, beside them, the secret values wrapped as Pulumi secrets. The decoding of the flat
// "project:key" -> string map is shared with config/stackfile.ts, which reads stack files directly.
import * as fs from "fs";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import * as YAML from "yaml";
import { PROJECT, SECRET_KEYS } from "../contract";
import type { PipelineSecrets } from "../components/pipeline";
import { ConfigError, parseSettings, Settings } from "./derive";
import { stackFileProblems } from "./stackfile";

export function loadSettings(): { settings: Settings; secrets: PipelineSecrets } {
    const all = pulumi.runtime.allConfig();
    // isConfigSecret is exported by the runtime but not in its typings (marked internal).
    const isSecret = (pulumi.runtime as unknown as { isConfigSecret(k: string): boolean }).isConfigSecret;
    const secretKeys = Object.keys(all).filter((k) => isSecret(k));
    // Validation needs only to know a secret is set: its value is read once, below, as a Pulumi secret.
    const config = Object.fromEntries(Object.entries(all).map(([k, v]) => [k, secretKeys.includes(k) ? "<secret>" : v]));
    const stack = pulumi.getStack();
    // Pulumi hands over only the config map: what else the stack file holds is read here, so a
    // setting written outside `config:` is an error rather than ignored.
    const file = path.join(__dirname, "..", "stacks", `Pulumi.${stack}.yaml`);
    const extraProblems = fs.existsSync(file) ? stackFileProblems(YAML.parse(fs.readFileSync(file, "utf8"))) : [];
    const settings = settingsFromConfigMap(config, { stack, secretKeys, source: `stacks/Pulumi.${stack}.yaml`, extraProblems });
    const cfg = new pulumi.Config(PROJECT);
    return {
        settings,
        secrets: {
            hfToken: cfg.getSecret("hfToken"),
            wandbApiKey: cfg.getSecret("wandbApiKey"),
            registryPassword: cfg.getSecret("registryPassword"),
        },
    };
}

/** Decodes a Pulumi config value: structured values arrive as JSON strings. */
export function decodeConfigValue(v: string): unknown {
    try {
        return JSON.parse(v);
    } catch {
        return v;
    }
}

/** Config namespaces something reads: this project's, and the providers' and engine's own. */
export const KNOWN_NAMESPACES = [PROJECT, "kubernetes", "docker", "pulumi"];

/** Keys nothing would read: a near-miss of this project's namespace, or a namespace nobody reads. */
export function namespaceProblems(keys: string[]): string[] {
    const problems: string[] = [];
    for (const k of keys) {
        const ns = k.includes(":") ? k.slice(0, k.indexOf(":")) : "";
        if (KNOWN_NAMESPACES.includes(ns)) continue;
        const near = /^cot[-_.]?vr$/i.test(ns) || /^cot[-_.]?vr[.]/i.test(k);
        problems.push(near
            ? `${k}: unknown namespace "${ns || k}": this project's keys are "${PROJECT}:<key>" (e.g. ${PROJECT}:${k.replace(/^cot[-_.]?vr[.:]/i, "")})`
            : `${k}: no program reads the namespace "${ns}" (known: ${KNOWN_NAMESPACES.join(", ")}); remove the key or fix its namespace`);
    }
    return problems;
}

/**
 * Reads every `cot-vr:*` key of a flat Pulumi config map ("project:key" -> string) and parses it.
 * Keys of no namespace anything reads are errors too: they would be silently ignored.
 */
export function settingsFromConfigMap(
    all: Record<string, string>,
    opts: { stack: string; secretKeys: string[]; source?: string; extraProblems?: string[] },
): Settings {
    const early = [...(opts.extraProblems ?? []), ...namespaceProblems(Object.keys(all))];
    const raw: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(all)) {
        if (!k.startsWith(`${PROJECT}:`)) continue;
        const name = k.slice(PROJECT.length + 1);
        raw[name] = (SECRET_KEYS as readonly string[]).includes(name) ? v : decodeConfigValue(v);
    }
    let settings: Settings | undefined;
    let problems = early;
    try {
        settings = parseSettings(raw, opts);
    } catch (e) {
        if (!(e instanceof ConfigError)) throw e;
        problems = [...early, ...e.problems];
    }
    if (problems.length > 0 || !settings) throw new ConfigError(problems, opts.source);
    return settings;
}
