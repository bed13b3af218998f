// Loads the YAML templates in manifests/ and renders them with overrides. Templates stay the
// upstream files (torchtune 0.6.1 configs, synthetic-data-kit config) so a diff against upstream is easy.
import * as fs from "fs";
import * as path from "path";
import * as YAML from "yaml";

export const MANIFESTS_DIR = path.join(__dirname, "..", "manifests");

export function readManifest(rel: string): string {
    return fs.readFileSync(path.join(MANIFESTS_DIR, rel), "utf8");
}

const parsed = new Map<string, YAML.Document>();

/** A template as a fresh YAML document (comments kept), ready for `setPath`. Each file is read and
 * parsed once per process; every render works on a clone. */
export function loadTemplate(rel: string): YAML.Document {
    let doc = parsed.get(rel);
    if (!doc) {
        doc = YAML.parseDocument(readManifest(rel));
        parsed.set(rel, doc);
    }
    return doc.clone();
}

/** Sets `a.b.c` (dot path) in a document; `undefined` deletes the key. */
export function setPath(doc: YAML.Document, dotted: string, value: unknown): void {
    const keys = dotted.split(".");
    if (value === undefined) {
        doc.deleteIn(keys);
        return;
    }
    doc.setIn(keys, doc.createNode(value));
}

/** Applies overrides and returns the YAML text. Strings stay quoted where they must (e.g. "00005"). */
export function renderTemplate(rel: string, overrides: Record<string, unknown>): string {
    const doc = loadTemplate(rel);
    for (const [k, v] of Object.entries(overrides)) setPath(doc, k, v);
    return doc.toString({ lineWidth: 0 });
}
