// Reads the stack's config from the Pulumi runtime (the only place that does) and hands back typed
// settings plus the secret values wrapped as Pulumi secrets.
import * as pulumi from "@pulumi/pulumi";
import { PROJECT, Settings, settingsFromConfigMap } from "./config";
import { PipelineSecrets } from "./components/pipeline";

export function loadSettings(): { settings: Settings; secrets: PipelineSecrets } {
    const all = pulumi.runtime.allConfig();
    // isConfigSecret is exported by the runtime but not in its typings (marked internal).
    const isSecret = (pulumi.runtime as unknown as { isConfigSecret(k: string): boolean }).isConfigSecret;
    const secretKeys = Object.keys(all).filter((k) => isSecret(k));
    const stack = pulumi.getStack();
    const settings = settingsFromConfigMap(all, { stack, secretKeys, source: `stacks/Pulumi.${stack}.yaml` });
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
