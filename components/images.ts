// Images the Jobs run. With images.build the program builds images/<name> with @pulumi/docker,
// pushes it and runs the pushed digest, so a changed image re-runs exactly the stages that use it.
// Otherwise the references come from config.
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import * as docker from "@pulumi/docker";
import { Settings } from "../config";

export const IMAGES_DIR = path.join(__dirname, "..", "images");
export const BUILT_IMAGES = ["trainer", "datagen"] as const;
export type BuiltImage = (typeof BUILT_IMAGES)[number];

/** sha256 over the relative paths and bytes of every file under the folders (sorted, so stable). */
export function sourcesHash(dirs: string[]): string {
    const h = crypto.createHash("sha256");
    const walk = (d: string) => {
        for (const e of fs.readdirSync(d, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
            const p = path.join(d, e.name);
            if (e.isDirectory()) {
                if (e.name !== "__pycache__") walk(p);
            } else if (e.isFile()) {
                h.update(path.relative(IMAGES_DIR, p)).update("\0").update(fs.readFileSync(p)).update("\0");
            }
        }
    };
    dirs.forEach(walk);
    return h.digest("hex").slice(0, 12);
}

/** What an image is built from: its own folder and the programs the images share. */
export function imageSources(name: BuiltImage): string[] {
    return [path.join(IMAGES_DIR, name), path.join(IMAGES_DIR, "common")];
}

/** `<repository>/cot-vr-<name>:<content hash>`: the tag changes exactly when its sources do. */
export function builtImageName(s: Settings, name: BuiltImage): string {
    return `${s.images.registry!.repository}/cot-vr-${name}:${sourcesHash(imageSources(name))}`;
}

export interface ImageRefs {
    refs: { trainer: pulumi.Input<string>; datagen: pulumi.Input<string>; vllm: pulumi.Input<string> };
    ids: { trainer: string; datagen: string; vllm: string };
}

export class ProjectImages extends pulumi.ComponentResource implements ImageRefs {
    public readonly refs: ImageRefs["refs"];
    public readonly ids: ImageRefs["ids"];

    constructor(name: string, args: { settings: Settings; registryPassword: pulumi.Input<string> }, opts?: pulumi.ComponentResourceOptions) {
        super("cot-vr:images:ProjectImages", name, {}, opts);
        const s = args.settings;
        const reg = s.images.registry!;
        const build = (n: BuiltImage) => {
            const imageName = builtImageName(s, n);
            const img = new docker.Image(`${name}-${n}`, {
                imageName,
                // Context images/: the Dockerfiles copy images/common too.
                build: { context: IMAGES_DIR, dockerfile: path.join(IMAGES_DIR, n, "Dockerfile"), platform: "linux/amd64" },
                registry: { server: reg.server, username: reg.username, password: args.registryPassword },
            }, { parent: this });
            // The digest pins what was pushed; a tag could be moved under a running Job.
            return { ref: img.repoDigest.apply((d) => d || imageName), id: imageName };
        };
        const trainer = build("trainer");
        const datagen = build("datagen");
        this.refs = { trainer: trainer.ref, datagen: datagen.ref, vllm: s.images.vllm };
        this.ids = { trainer: trainer.id, datagen: datagen.id, vllm: s.images.vllm };
        this.registerOutputs({ trainer: trainer.ref, datagen: datagen.ref });
    }
}

/** Image references from config (images.build false). */
export function configuredImages(s: Settings): ImageRefs {
    const ids = { trainer: s.images.trainer, datagen: s.images.datagen, vllm: s.images.vllm };
    return { refs: ids, ids };
}
