// Reads the stack's config from the Pulumi runtime (the only place that does) and hands back typed
// settings and, beside them, the secret values wrapped as Pulumi secrets. Only the program imports
// this file: the CLIs read stack files (stackfile.ts) without loading the Pulumi SDK.
import * as fs from "fs";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import * as YAML from "yaml";
import { PROJECT } from "../contract";
import type { PipelineSecrets } from "../components/pipeline";
import { settingsFromConfigMap } from "./configmap";
import { Settings } from "./derive";
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
            notifyWebhook: cfg.getSecret("notifyWebhook"),
        },
    };
}
