// Generates the README's config table and config/stack.schema.json from the zod schema
// (config/schema.ts): key paths and descriptions (`.meta`) from the schema object, types and defaults
// from its JSON Schema; and the estimate columns of the README's Stacks table (makespan, GPU-hours,
// `--parallel` of every shipped stack) from the estimator (scripts/estimate.ts). `npm run docs` shows
// what is stale, `--write` rewrites it, `--check` fails on it (CI); unit tests fail when a file
// disagrees with the schema or the estimator.
import * as fs from "fs";
import * as path from "path";
import { Command, Option } from "commander";
import { z } from "zod";
import { PROJECT, SECRET_KEYS } from "../contract";
import { KNOWN_NAMESPACES } from "../config/configmap";
import { configSchema } from "../config/schema";
import { readStackFile, STACK_FILE_KEYS, stackFilePath, STACKS_DIR, stackSettings } from "../config/stackfile";
import { CLI_EXIT, command, parseCommand, runCli } from "./cli";
import { estimateStages, fmtDuration, plan, requiredParallel, stageGraph } from "./estimate";

const ROOT = path.join(__dirname, "..");
export const README = path.join(ROOT, "README.md");
export const JSON_SCHEMA = path.join(ROOT, "config", "stack.schema.json");
const BEGIN = "<!-- config-table:begin (npm run docs) -->";
const END = "<!-- config-table:end -->";

/** The schema inside the wrappers that only add a default or allow absence. */
function unwrap(s: z.ZodType): z.ZodType {
    const def = (s as z.core.$ZodType)._zod.def as { type: string; innerType?: z.ZodType };
    return ["default", "prefault", "optional", "nullable"].includes(def.type) && def.innerType ? unwrap(def.innerType) : s;
}

function jsonType(j: any): string {
    if (!j) return "";
    if (j.enum) return j.enum.map((v: unknown) => JSON.stringify(v)).join(" | ");
    if (j.anyOf) return j.anyOf.map(jsonType).join(" | ");
    if (j.type === "array") return `${jsonType(j.items)}[]`;
    if (j.type === "object") return j.additionalProperties && j.additionalProperties !== false ? `map of ${jsonType(j.additionalProperties)}` : "object";
    return j.type ?? "any";
}

function cell(s: string): string {
    return s.replace(/\|/g, "\\|").replace(/\n/g, " ");
}

/** One row per key: [key, type, default, meaning]. Sections are walked, not listed; a map of
 * sections (train.variants) gets a row and its entries' keys as `<name>`. */
export function configRows(): string[][] {
    const json = z.toJSONSchema(configSchema, { io: "input", unrepresentable: "any" }) as any;
    const rows: string[][] = [];
    const walk = (obj: z.ZodObject, j: any, prefix: string) => {
        for (const [name, s] of Object.entries(obj.shape as Record<string, z.ZodType>)) {
            const key = prefix ? `${prefix}.${name}` : name;
            const pj = j?.properties?.[name];
            const doc = z.globalRegistry.get(s)?.description ?? "";
            const inner = unwrap(s);
            if (inner instanceof z.ZodObject) walk(inner, pj, key);
            else if (inner instanceof z.ZodRecord && unwrap(inner.valueType as z.ZodType) instanceof z.ZodObject) {
                rows.push([`${PROJECT}:${key}`, "map", "", doc]);
                walk(unwrap(inner.valueType as z.ZodType) as z.ZodObject, pj.additionalProperties, `${key}.<name>`);
            } else {
                // A default the schema cannot state (it depends on other keys) is the description's `@default` text.
                const docDefault = /@default (.*)$/.exec(doc)?.[1] ?? "";
                const def = pj && "default" in pj ? `\`${JSON.stringify(pj.default)}\`` : docDefault;
                rows.push([`${PROJECT}:${key}`, jsonType(pj), def, doc.replace(/@default .*$/, "").trim()]);
            }
        }
    };
    walk(configSchema, json, "");
    return rows;
}

export function configTable(): string {
    const lines = ["| key | type | default | meaning |", "|---|---|---|---|"];
    for (const [k, t, d, doc] of configRows()) lines.push(`| \`${k}\` | ${cell(t)} | ${cell(d)} | ${cell(doc)} |`);
    return `${BEGIN}\n${lines.join("\n")}\n${END}`;
}

/** The README with its config table replaced by the current one. */
export function readmeWithTable(readme: string): string {
    const i = readme.indexOf(BEGIN);
    const j = readme.indexOf(END);
    if (i < 0 || j < 0) throw new Error(`README.md has no ${BEGIN} ... ${END} section`);
    return readme.slice(0, i) + configTable() + readme.slice(j + END.length);
}

// ---------------------------------------------------------------------------------------------------
// The Stacks table: what each shipped stack runs (written by hand) and its estimates (generated)

const STACKS_BEGIN = "<!-- stacks-table:begin (npm run docs) -->";
const STACKS_END = "<!-- stacks-table:end -->";
const STACKS_HEADER = ["| stack | what it runs | estimated makespan | estimated GPU-hours | `pulumi up --parallel` |", "|---|---|---|---|---|"];
/** What a row for a stack that has no description yet says, until someone writes one. */
export const UNDESCRIBED = "(describe this stack)";

/** The shipped stacks: stacks/Pulumi.<name>.yaml. */
export function shippedStacks(): string[] {
    return fs.readdirSync(STACKS_DIR).map((f) => /^Pulumi\.(.+)\.yaml$/.exec(f)?.[1]).filter((s): s is string => Boolean(s)).sort();
}

/** The estimator's figures of a shipped stack, as the rehearsal and `pulumi preview` print them. */
export function stackEstimate(stack: string): { makespan: string; gpuHours: string; parallel: number } {
    const { settings } = stackSettings(readStackFile(stackFilePath(stack)), { placeholderSecrets: true });
    const graph = stageGraph(settings);
    const est = estimateStages(settings);
    const p = plan(graph, est);
    return { makespan: fmtDuration(p.makespan), gpuHours: p.gpuHours.toFixed(1), parallel: requiredParallel(graph, est).parallel };
}

/** The cells of a Markdown table row, split at unescaped pipes. */
function rowCells(line: string): string[] {
    return line.trim().replace(/^\|/, "").replace(/\|$/, "").split(/(?<!\\)\|/).map((c) => c.trim());
}

/**
 * The README with the Stacks table's estimate columns as the estimator has them: one row per shipped
 * stack, in the table's order (new stacks last, with a placeholder description), rows of stacks that no
 * longer exist dropped; the "what it runs" cells are kept as written.
 */
export function readmeWithStacks(readme: string): string {
    const i = readme.indexOf(STACKS_BEGIN);
    const j = readme.indexOf(STACKS_END);
    if (i < 0 || j < 0) throw new Error(`README.md has no ${STACKS_BEGIN} ... ${STACKS_END} section`);
    const described = new Map<string, string>();
    for (const line of readme.slice(i + STACKS_BEGIN.length, j).split("\n")) {
        const cells = rowCells(line);
        const m = /^`([^`]+)`$/.exec(cells[0] ?? "");
        if (line.trim().startsWith("|") && m) described.set(m[1], cells[1] ?? "");
    }
    const stacks = shippedStacks();
    const order = [...[...described.keys()].filter((s) => stacks.includes(s)), ...stacks.filter((s) => !described.has(s))];
    const rows = order.map((s) => {
        const e = stackEstimate(s);
        return `| \`${s}\` | ${described.get(s) || UNDESCRIBED} | ${e.makespan} | ${e.gpuHours} | \`--parallel ${e.parallel}\` |`;
    });
    return readme.slice(0, i) + [STACKS_BEGIN, ...STACKS_HEADER, ...rows, STACKS_END].join("\n") + readme.slice(j + STACKS_END.length);
}

/** The JSON Schema of a whole stack file as YAML editors see it: the top-level keys Pulumi reads, and
 * under `config:` every `cot-vr:<key>` (secrets as Pulumi writes them, `{secure: ...}`) beside the
 * other namespaces' keys, which are not described here. The program itself validates with the zod schema. */
export function stackJsonSchema(): string {
    const { $schema, properties, ...rest } = z.toJSONSchema(configSchema, { io: "input", unrepresentable: "any" }) as any;
    if (rest.required?.length) throw new Error(`required top-level keys are not expected: ${rest.required}`);
    const secure = (description: string) => ({
        description: `${description} Set with \`pulumi config set --secret\`, which writes it encrypted.`,
        type: "object",
        properties: { secure: { type: "string", minLength: 1 } },
        required: ["secure"],
        additionalProperties: false,
    });
    const config: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(properties as Record<string, any>)) {
        config[`${PROJECT}:${k}`] = (SECRET_KEYS as readonly string[]).includes(k) ? secure(v.description ?? "") : v;
    }
    const others = KNOWN_NAMESPACES.filter((n) => n !== PROJECT);
    const topLevel: Record<string, unknown> = {
        config: {
            description: `Settings: this project's as ${PROJECT}:<key> (README, Configuration), and the ${others.join(", ")} namespaces' own.`,
            type: "object",
            properties: config,
            patternProperties: { [`^(${others.join("|")}):.+$`]: {} },
            additionalProperties: false,
        },
        secretsprovider: { description: "Secrets provider of the stack (pulumi stack init --secrets-provider).", type: "string" },
        encryptedkey: { description: "Data key of a cloud secrets provider (written by Pulumi).", type: "string" },
        encryptionsalt: { description: "Salt of the passphrase secrets provider (written by Pulumi).", type: "string" },
        environment: {
            description: "Pulumi ESC environments the stack imports.",
            anyOf: [{ type: "array", items: { type: "string" } }, { type: "object" }],
        },
    };
    const missing = STACK_FILE_KEYS.filter((k) => !(k in topLevel));
    if (missing.length) throw new Error(`stack file keys without a schema: ${missing.join(", ")}`);
    const schema = {
        $schema,
        title: `${PROJECT} stack file`,
        description: `A stacks/Pulumi.<stack>.yaml of the ${PROJECT} project. Generated from config/schema.ts by npm run docs -- --write.`,
        type: "object",
        properties: topLevel,
        additionalProperties: false,
    };
    return `${JSON.stringify(schema, null, 2)}\n`;
}

interface Target {
    file: string;
    /** The file as it should be, from its current text. */
    want(current: string): string;
}

const TARGETS: Target[] = [
    { file: README, want: (r) => readmeWithStacks(readmeWithTable(r)) },
    { file: JSON_SCHEMA, want: () => stackJsonSchema() },
];

/** Lines removed and added between two texts (a longest-common-subsequence diff), as `-`/`+` lines with
 * their line numbers; at most `max` lines. */
export function lineDiff(a: string, b: string, max = 40): string[] {
    const x = a.split("\n");
    const y = b.split("\n");
    // Trim the common head and tail, so the table only covers the changed region.
    let head = 0;
    while (head < x.length && head < y.length && x[head] === y[head]) head++;
    let tail = 0;
    while (tail < x.length - head && tail < y.length - head && x[x.length - 1 - tail] === y[y.length - 1 - tail]) tail++;
    const xs = x.slice(head, x.length - tail);
    const ys = y.slice(head, y.length - tail);
    const n = xs.length;
    const m = ys.length;
    const lcs = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
    for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) {
        lcs[i][j] = xs[i] === ys[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
    }
    const out: string[] = [];
    let i = 0;
    let j = 0;
    while (i < n || j < m) {
        if (i < n && j < m && xs[i] === ys[j]) { i++; j++; }
        else if (i < n && (j === m || lcs[i + 1][j] >= lcs[i][j + 1])) { out.push(`-${head + i + 1}: ${xs[i]}`); i++; }
        else { out.push(`+${head + j + 1}: ${ys[j]}`); j++; }
    }
    return out.length > max ? [...out.slice(0, max), `... ${out.length - max} more lines`] : out;
}

/** The command line (scripts/cli.ts conventions): options, --help with its example. */
export function docsCommand(): Command {
    return command("docs", "Generates the README's config table and config/stack.schema.json from config/schema.ts, and the estimate columns of the README's Stacks table (makespan, GPU-hours, --parallel) from scripts/estimate.ts. Without an option it shows what is out of date and what would change, and writes nothing. Exit codes: 0 up to date (or written), 1 out of date with --check, 2 bad options.", [
        "npm run docs -- --write    # after changing a key's description in config/schema.ts, a stack file or the estimator",
        "npm run docs -- --check    # in CI",
    ])
        .usage("[--write | --check]")
        .addOption(new Option("-w, --write", "rewrite the out-of-date files").conflicts("check"))
        .addOption(new Option("-c, --check", "exit 1 if any file is out of date, naming it; write nothing (CI)"));
}

/** The CLI; returns the exit code. */
export function main(argv: string[], log: (s: string) => void = console.log, err: (s: string) => void = console.error): number {
    const parsed = parseCommand<{ write?: boolean; check?: boolean }>(docsCommand(), argv);
    if (parsed.kind === "help") {
        log(parsed.text);
        return CLI_EXIT.ok;
    }
    if (parsed.kind === "error") {
        err(parsed.message);
        return CLI_EXIT.usage;
    }
    const values = parsed.opts;
    const rel = (f: string) => path.relative(process.cwd(), f) || f;
    const stale = TARGETS.flatMap((t) => {
        const current = fs.existsSync(t.file) ? fs.readFileSync(t.file, "utf8") : "";
        const want = t.want(current);
        return current === want ? [] : [{ ...t, current, want }];
    });
    if (stale.length === 0) {
        log(`up to date: ${TARGETS.map((t) => rel(t.file)).join(", ")}`);
        return CLI_EXIT.ok;
    }
    if (values.check) {
        for (const t of stale) err(`stale: ${rel(t.file)} does not match config/schema.ts${t.file === README ? " and the estimator (scripts/estimate.ts)" : ""}`);
        err("run `npm run docs -- --write` and commit the result");
        return CLI_EXIT.failed;
    }
    if (values.write) {
        for (const t of stale) {
            fs.writeFileSync(t.file, t.want);
            log(`written: ${rel(t.file)}`);
        }
        return CLI_EXIT.ok;
    }
    for (const t of stale) {
        log(`${rel(t.file)} would change:`);
        for (const l of lineDiff(t.current, t.want)) log(`  ${l}`);
    }
    log("nothing written; apply with `npm run docs -- --write`");
    return CLI_EXIT.ok;
}

if (require.main === module) runCli(async (argv) => main(argv));
