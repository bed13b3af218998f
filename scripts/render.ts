// `npm run render -- --stack <name> --out <dir>` or `--config <Pulumi.<stack>.yaml> --out <dir>`:
// writes every Kubernetes object the stack would create, one YAML document per object, without a
// cluster, credentials or the Pulumi service. Secret values are redacted. A bad config exits non-zero
// with the same message as `pulumi up`, and writes nothing.
import * as fs from "fs";
import * as path from "path";
import { parseArgs } from "util";
import * as YAML from "yaml";
import { ConfigError, PROJECT } from "../config";
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

async function main(): Promise<number> {
    const { values } = parseArgs({
        options: { stack: { type: "string" }, config: { type: "string" }, out: { type: "string" } },
        strict: true,
    });
    if (!values.out || (!values.stack && !values.config) || (values.stack && values.config)) {
        console.error("usage: npm run render -- (--stack <name> | --config <path/to/Pulumi.<stack>.yaml>) --out <dir>");
        return 2;
    }
    const file = values.config ?? stackFilePath(values.stack!);
    if (!fs.existsSync(file)) {
        console.error(`no stack file ${file}`);
        return 2;
    }
    let stackFile;
    let result;
    try {
        stackFile = readStackFile(file);
        result = stackSettings(stackFile, { placeholderSecrets: true });
    } catch (e) {
        if (e instanceof ConfigError) {
            console.error(e.message);
            return 1;
        }
        throw e;
    }
    for (const p of result.placeholders) {
        console.error(`note: ${p} is not set in ${path.basename(file)}; rendered as ${REDACTED}. pulumi up requires it (pulumi config set --secret ${p} ...).`);
    }
    const st = result.settings;
    // Defaults that depend on the model are shown, so a stack never trains with values it did not expect.
    for (const d of st.defaulted) console.error(`note: ${PROJECT}:${d}`);
    // A shipped stack file holds no secret values: what is set renders as the placeholder.
    const secretOf = (k: string) => (stackFile.secretKeys.includes(`${PROJECT}:${k}`) || result.placeholders.includes(`${PROJECT}:${k}`) ? REDACTED : undefined);
    const secrets = { hfToken: secretOf("hfToken"), wandbApiKey: secretOf("wandbApiKey"), registryPassword: secretOf("registryPassword"), notifyWebhook: secretOf("notifyWebhook") };
    const objects = kubernetesObjects(await runPipeline(st, secrets));
    const secretValues = stackFile.secretKeys.map((k) => stackFile.config[k]);
    fs.mkdirSync(values.out, { recursive: true });
    objects.forEach((obj, i) => {
        const doc = YAML.stringify(clean(redact(obj, secretValues)), { lineWidth: 0 });
        fs.writeFileSync(path.join(values.out!, fileName(i, obj)), doc);
    });
    console.log(`${objects.length} objects of stack ${stackFile.stack} written to ${values.out}`);
    return 0;
}

if (require.main === module) {
    main().then((code) => process.exit(code), (e) => {
        console.error(e instanceof Error ? e.message : e);
        process.exit(1);
    });
}
