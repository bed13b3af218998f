// Reads a `stacks/Pulumi.<stack>.yaml` the way the Pulumi CLI hands it to the program: a flat map of
// "project:key" -> string (structured values as JSON), plus the keys that are secrets. `pulumi up`
// reads the same files through config/pulumi.ts; render, status and rehearse read them here.
import * as fs from "fs";
import * as path from "path";
import * as YAML from "yaml";
import { PROJECT, SECRET_KEYS } from "../contract";
import { ConfigError, Settings } from "./derive";
import { settingsFromConfigMap } from "./configmap";

export const STACKS_DIR = path.join(__dirname, "..", "stacks");
/** What a secret renders as; the real value never leaves Pulumi's encrypted config. */
export const REDACTED = "<redacted>";

/** Top-level keys Pulumi reads in a stack file; anything else (e.g. settings outside `config:`) is ignored by it. */
export const STACK_FILE_KEYS = ["config", "secretsprovider", "encryptedkey", "encryptionsalt", "environment"];

/** Problems of a parsed `Pulumi.<stack>.yaml` beside its config keys. */
export function stackFileProblems(doc: unknown): string[] {
    if (doc === null || doc === undefined) return [];
    if (typeof doc !== "object" || Array.isArray(doc)) return ["the stack file must be a YAML mapping with a `config:` section"];
    return Object.keys(doc)
        .filter((k) => !STACK_FILE_KEYS.includes(k))
        .map((k) => `${k}: top-level key of the stack file that Pulumi does not read (allowed: ${STACK_FILE_KEYS.join(", ")}); settings go under config: as ${PROJECT}:<key>`);
}

export interface StackFile {
    readonly stack: string;
    readonly file: string;
    readonly config: Record<string, string>;
    readonly secretKeys: string[];
    /** Required secrets the file does not carry (set per user with `pulumi config set --secret`). */
    readonly unsetSecrets: string[];
}

export function stackFilePath(stack: string): string {
    return path.join(STACKS_DIR, `Pulumi.${stack}.yaml`);
}

export function readStackFile(file: string): StackFile {
    const base = path.basename(file);
    const m = /^Pulumi\.(.+)\.ya?ml$/.exec(base);
    if (!m) throw new Error(`${file}: expected a file named Pulumi.<stack>.yaml`);
    const doc = YAML.parse(fs.readFileSync(file, "utf8")) ?? {};
    const topLevel = stackFileProblems(doc);
    if (topLevel.length > 0) throw new ConfigError(topLevel, path.relative(process.cwd(), file) || file);
    const raw = (doc.config ?? {}) as Record<string, unknown>;
    const config: Record<string, string> = {};
    const secretKeys: string[] = [];
    for (const [k, v] of Object.entries(raw)) {
        const key = k.includes(":") ? k : `${PROJECT}:${k}`;
        if (v && typeof v === "object" && !Array.isArray(v) && "secure" in v) {
            config[key] = REDACTED;
            secretKeys.push(key);
        } else {
            config[key] = typeof v === "string" ? v : JSON.stringify(v);
        }
    }
    const unsetSecrets = SECRET_KEYS.map((s) => `${PROJECT}:${s}`).filter((k) => !(k in config));
    return { stack: m[1], file, config, secretKeys, unsetSecrets };
}

/**
 * Settings of a stack file, with the same errors `pulumi up` gives. Secrets are per user and never in a
 * shipped stack file: with `placeholderSecrets`, a required secret that is the only problem gets a
 * placeholder (and `pulumi up` still requires it).
 */
export function stackSettings(f: StackFile, opts: { placeholderSecrets: boolean }): { settings: Settings; placeholders: string[] } {
    const source = path.relative(process.cwd(), f.file) || f.file;
    const parse = (config: Record<string, string>, secretKeys: string[]) =>
        settingsFromConfigMap(config, { stack: f.stack, secretKeys, source });
    try {
        return { settings: parse(f.config, f.secretKeys), placeholders: [] };
    } catch (e) {
        if (!(e instanceof ConfigError) || !opts.placeholderSecrets) throw e;
        const about = (k: string) => (p: string) => p.startsWith(`${k}:`);
        const missing = f.unsetSecrets.filter((k) => e.problems.some(about(k)));
        if (missing.length === 0 || e.problems.some((p) => !missing.some((k) => about(k)(p)))) throw e;
        const config = { ...f.config };
        for (const k of missing) config[k] = REDACTED;
        const settings = parse(config, [...f.secretKeys, ...missing]);
        return { settings, placeholders: missing };
    }
}
