// Reads the stack's config from the Pulumi runtime (the only place that does) and hands back typed
// settings and, beside them, the secret values wrapped as Pulumi secrets.
import * as pulumi from "@pulumi/pulumi";
import { PROJECT, Settings, settingsFromConfigMap } from "./config";
import { PipelineSecrets } from "./components/pipeline";

export function loadSettings(): { settings: Settings; secrets: PipelineSecrets } {
    const all = pulumi.runtime.allConfig();
    // isConfigSecret is exported by the runtime but not in its typings (marked internal).
    const isSecret = (pulumi.runtime as unknown as { isConfigSecret(k: string): boolean }).isConfigSecret;
    const secretKeys = Object.keys(all).filter((k) => isSecret(k));
    // Validation needs only to know a secret is set: its value is read once, below, as a Pulumi secret.
    const config = Object.fromEntries(Object.entries(all).map(([k, v]) => [k, secretKeys.includes(k) ? "<secret>" : v]));
    const stack = pulumi.getStack();
    const settings = settingsFromConfigMap(config, { stack, secretKeys, source: `stacks/Pulumi.${stack}.yaml` });
    const cfg = new pulumi.Config(PROJECT);
    return {
        settings,
        secrets: {
            hfToken: cfg.getSecret("hfToken"),
            wandbApiKey: cfg.getSecret("wandbApiKey"),
            registryPassword: cfg.getSecret("registryPassword"),
        },
    };
}
