// The flat config map both readers hand over ("project:key" -> string, structured values as JSON):
// the Pulumi runtime's (pulumi.ts) and a stack file's read directly (stackfile.ts). Decoded and
// parsed here, so `pulumi up` and the CLIs give the same errors.
import { PROJECT, SECRET_KEYS } from "../contract";
import { ConfigError, parseSettings, Settings } from "./derive";

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
