// Writes the README's config table from config.ts: key paths and doc comments from the source,
// types and defaults from the zod schema. `npm run docs` rewrites the README section; a unit test
// fails when the README and the schema disagree.
import * as fs from "fs";
import * as path from "path";
import * as ts from "typescript";
import { z } from "zod";
import { configSchema, PROJECT } from "../config";

const ROOT = path.join(__dirname, "..");
export const README = path.join(ROOT, "README.md");
const BEGIN = "<!-- config-table:begin (npm run docs) -->";
const END = "<!-- config-table:end -->";

interface Prop { doc: string; init: ts.Expression }

function docOf(node: ts.Node, sf: ts.SourceFile): string {
    const ranges = ts.getLeadingCommentRanges(sf.text, node.getFullStart()) ?? [];
    const last = ranges.filter((r) => sf.text.slice(r.pos, r.end).startsWith("/**")).pop();
    if (!last) return "";
    return sf.text.slice(last.pos + 3, last.end - 2).split("\n").map((l) => l.replace(/^\s*\*?\s?/, "")).join(" ").replace(/\s+/g, " ").trim();
}

/** The object literal of the outermost z.strictObject call in an expression, if its chain starts there. */
function strictObjectLiteral(e: ts.Node): ts.ObjectLiteralExpression | undefined {
    let n: ts.Node = e;
    if (ts.isArrowFunction(n)) n = n.body;
    while (ts.isCallExpression(n) && ts.isPropertyAccessExpression(n.expression)) {
        const callee = n.expression;
        if (callee.name.text === "strictObject" && ts.isIdentifier(callee.expression) && callee.expression.text === "z") {
            const arg = n.arguments[0];
            return arg && ts.isObjectLiteralExpression(arg) ? arg : undefined;
        }
        n = callee.expression;
    }
    return undefined;
}

function props(obj: ts.ObjectLiteralExpression, sf: ts.SourceFile): Map<string, Prop> {
    const m = new Map<string, Prop>();
    for (const p of obj.properties) {
        if (!ts.isPropertyAssignment(p)) continue;
        const name = ts.isStringLiteral(p.name) ? p.name.text : p.name.getText(sf);
        m.set(name, { doc: docOf(p, sf), init: p.initializer });
    }
    return m;
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

export function configRows(): string[][] {
    const file = path.join(ROOT, "config.ts");
    const sf = ts.createSourceFile(file, fs.readFileSync(file, "utf8"), ts.ScriptTarget.ES2022, true);
    const schemas = new Map<string, ts.ObjectLiteralExpression>();
    sf.forEachChild(function visit(n) {
        if (ts.isVariableDeclaration(n) && ts.isIdentifier(n.name) && n.initializer) {
            const lit = strictObjectLiteral(n.initializer);
            if (lit) schemas.set(n.name.text, lit);
        }
        n.forEachChild(visit);
    });
    const json = z.toJSONSchema(configSchema, { io: "input", unrepresentable: "any" }) as any;
    const rows: string[][] = [];
    const walk = (obj: ts.ObjectLiteralExpression, j: any, prefix: string) => {
        for (const [name, p] of props(obj, sf)) {
            const key = prefix ? `${prefix}.${name}` : name;
            const pj = j?.properties?.[name];
            // Nested section: a named schema or an inline z.strictObject.
            const ref = /\b([a-zA-Z]+Schema)\b/.exec(p.init.getText(sf))?.[1];
            const inline = strictObjectLiteral(p.init);
            const isRecord = pj?.additionalProperties && pj.additionalProperties !== false && !pj.properties;
            if (inline) walk(inline, pj, key);
            else if (ref && schemas.has(ref) && isRecord) {
                rows.push([`${PROJECT}:${key}`, "map", "", p.doc]);
                walk(schemas.get(ref)!, pj.additionalProperties, `${key}.<name>`);
            } else if (ref && schemas.has(ref)) walk(schemas.get(ref)!, pj, key);
            else {
                // A default the schema cannot state (it depends on other keys) is the doc's `@default` text.
                const docDefault = /@default (.*)$/.exec(p.doc)?.[1] ?? "";
                const def = pj && "default" in pj ? `\`${JSON.stringify(pj.default)}\`` : docDefault;
                rows.push([`${PROJECT}:${key}`, jsonType(pj), def, p.doc.replace(/@default .*$/, "").trim()]);
            }
        }
    };
    walk(schemas.get("configSchema")!, json, "");
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

if (require.main === module) {
    fs.writeFileSync(README, readmeWithTable(fs.readFileSync(README, "utf8")));
    console.log(`config table written to ${path.relative(process.cwd(), README)}`);
}
