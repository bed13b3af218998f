// `npm run render -- --stack <name> --out <dir>` or `--config <Pulumi.<stack>.yaml> --out <dir>`:
// writes every Kubernetes object the stack would create, one YAML document per object, without a
// cluster, credentials or the Pulumi service. Secret values are redacted. A bad config exits non-zero
// with the same message as `pulumi up`, and writes nothing.
import * as fs from "fs";
import * as path from "path";
import { Option } from "commander";
import * as YAML from "yaml";
import { PROJECT } from "../config";
import { CLI_EXIT, CliError, command, runCli, unknownStack } from "./cli";
import { previewNotes } from "./estimate";
import { kubernetesObjects, runPipeline } from "./mockrun";
import { readStackFile, REDACTED, stackFilePath, stackSettings } from "../config/stackfile";

/** Replaces Secret values, and any occurrence of a known secret value anywhere, with the placeholder. */
export function redact(obj: Record<string, any>, secretValues: string[]): Record<string, any> {
    const o = structuredClone(obj);
    if (o.kind === "Secret") {
        for (const f of ["data", "stringData"]) {
            if (o[f]) o[f] = Object.fromEntries(Object.keys(o[f]).map((k) => [k, REDACTED]));
        }
    }
    const scrub = (v: any): any => {
        if (typeof v === "string") return secretValues.reduce((s, x) => (x && x !== REDACTED ? s.split(x).join(REDACTED) : s), v);
        if (Array.isArray(v)) return v.map(scrub);
        if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, scrub(x)]));
        return v;
    };
    return scrub(o);
}

/** Drops undefined fields so the YAML shows only what is sent. */
function clean(v: any): any {
    if (Array.isArray(v)) return v.map(clean);
    if (v && typeof v === "object") {
        return Object.fromEntries(Object.entries(v).filter(([, x]) => x !== undefined).map(([k, x]) => [k, clean(x)]));
    }
    return v;
}

export function fileName(i: number, obj: Record<string, any>): string {
    return `${String(i + 1).padStart(3, "0")}-${String(obj.kind).toLowerCase()}-${obj.metadata?.name ?? "unnamed"}.yaml`;
}

/** The stack file `--stack` or `--config` names; an unknown stack lists the ones there are. */
function stackFileOf(opts: { stack?: string; config?: string }): string {
    if (opts.config) {
        if (!fs.existsSync(opts.config)) throw new CliError(`no stack file ${opts.config}`, CLI_EXIT.usage);
        return opts.config;
    }
    const file = stackFilePath(opts.stack!);
    if (!fs.existsSync(file)) throw unknownStack(opts.stack!);
    return file;
}

export async function main(argv: string[]): Promise<number> {
    const cmd = command("render", "Write every Kubernetes object a stack would create, one YAML file per object, without a cluster, credentials or the Pulumi service. Secret values are redacted; a bad config exits 1 with the same message as `pulumi up` and writes nothing.", [
        "npm run render -- --stack smoke --out render/smoke",
        "npm run render -- --config my/Pulumi.mine.yaml --out render/mine",
    ])
        .addOption(new Option("--stack <name>", "a shipped stack (stacks/Pulumi.<name>.yaml)").conflicts("config"))
        .addOption(new Option("--config <file>", "a stack file elsewhere (Pulumi.<stack>.yaml)"))
        .requiredOption("--out <dir>", "where to write the objects");
    const opts = cmd.parse(argv, { from: "user" }).opts<{ stack?: string; config?: string; out: string }>();
    if (!opts.stack && !opts.config) cmd.error("error: give --stack <name> or --config <file>");
    const file = stackFileOf(opts);
    const stackFile = readStackFile(file);
    const result = stackSettings(stackFile, { placeholderSecrets: true });
    for (const p of result.placeholders) {
        console.error(`note: ${p} is not set in ${path.basename(file)}; rendered as ${REDACTED}. pulumi up requires it (pulumi config set --secret ${p} ...).`);
    }
    const st = result.settings;
    try {
        const notes = previewNotes(st);
        for (const w of notes.warnings) console.error(`warning: ${w}`);
        for (const i of notes.info) console.error(`note: ${i}`);
    } catch (e) {
        console.error(`warning: no estimate for this stack (${e instanceof Error ? e.message : e})`);
    }
    // Defaults that depend on the model are shown, so a stack never trains with values it did not expect.
    for (const d of st.defaulted) console.error(`note: ${PROJECT}:${d}`);
    // A shipped stack file holds no secret values: what is set renders as the placeholder.
    const secretOf = (k: string) => (stackFile.secretKeys.includes(`${PROJECT}:${k}`) || result.placeholders.includes(`${PROJECT}:${k}`) ? REDACTED : undefined);
    const secrets = { hfToken: secretOf("hfToken"), wandbApiKey: secretOf("wandbApiKey"), registryPassword: secretOf("registryPassword"), notifyWebhook: secretOf("notifyWebhook") };
    const objects = kubernetesObjects(await runPipeline(st, secrets));
    const secretValues = stackFile.secretKeys.map((k) => stackFile.config[k]);
    fs.mkdirSync(opts.out, { recursive: true });
    objects.forEach((obj, i) => {
        const doc = YAML.stringify(clean(redact(obj, secretValues)), { lineWidth: 0 });
        fs.writeFileSync(path.join(opts.out, fileName(i, obj)), doc);
    });
    console.log(`${objects.length} objects of stack ${stackFile.stack} written to ${opts.out}`);
    return 0;
}

if (require.main === module) runCli(main);
