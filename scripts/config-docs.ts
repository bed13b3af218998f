// Writes the README's config table and config/stack.schema.json from the zod schema (config/schema.ts):
// key paths and descriptions (`.meta`) from the schema object, types and defaults from its JSON Schema.
// `npm run docs` rewrites both; unit tests fail when either disagrees with the schema.
import * as fs from "fs";
import * as path from "path";
import { z } from "zod";
import { PROJECT } from "../contract";
import { configSchema } from "../config/schema";

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

/** The JSON Schema of a stack file's `config:` values (keys without the `cot-vr:` prefix), for editors
 * and other tools; the program itself validates with the zod schema. */
export function stackJsonSchema(): string {
    const { $schema, ...schema } = z.toJSONSchema(configSchema, { io: "input", unrepresentable: "any" });
    const title = `${PROJECT} stack config`;
    const description = `The ${PROJECT}:<key> values of stacks/Pulumi.<stack>.yaml, keys without the prefix. Generated from config/schema.ts by npm run docs.`;
    return `${JSON.stringify({ $schema, title, description, ...schema }, null, 2)}\n`;
}

if (require.main === module) {
    fs.writeFileSync(README, readmeWithTable(fs.readFileSync(README, "utf8")));
    fs.writeFileSync(JSON_SCHEMA, stackJsonSchema());
    console.log(`config table written to ${path.relative(process.cwd(), README)}, JSON Schema to ${path.relative(process.cwd(), JSON_SCHEMA)}`);
}
