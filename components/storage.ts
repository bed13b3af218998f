// The four shared volumes. Created claims are kept when the stack is destroyed (retainOnDelete)
// unless the stack opts out; an existing claim is used as is and never touched.
import * as pulumi from "@pulumi/pulumi";
import * as k8s from "@pulumi/kubernetes";
import { Settings } from "../config";
import { labels } from "./naming";
import { VOLUME_NAMES, VolumeName } from "./paths";
import { ClaimNames } from "./pod";

/** Claim name of a volume this stack creates: `<run>-<volume>`. */
export function claimName(s: Settings, v: VolumeName): string {
    return `${s.run}-${v}`;
}

export function pvcArgs(s: Settings, namespace: pulumi.Input<string>, v: VolumeName): k8s.core.v1.PersistentVolumeClaimArgs {
    const vol = s.storage[v];
    return {
        metadata: {
            name: claimName(s, v),
            namespace,
            labels: labels(s.run, "storage", v),
            annotations: {
                // The provider would otherwise wait (a fixed 5 minutes) for Bound, which never comes
                // under a WaitForFirstConsumer StorageClass until a pod mounts the claim.
                "pulumi.com/skipAwait": "true",
            },
        },
        spec: {
            accessModes: [vol.accessMode],
            storageClassName: s.storage.storageClass,
            resources: { requests: { storage: vol.size } },
        },
    };
}

export interface SharedVolumesArgs {
    readonly settings: Settings;
    readonly namespace: pulumi.Input<string>;
}

export class SharedVolumes extends pulumi.ComponentResource {
    /** Claim name per volume. */
    public readonly claims: ClaimNames;

    constructor(name: string, args: SharedVolumesArgs, opts?: pulumi.ComponentResourceOptions) {
        super("cot-vr:storage:SharedVolumes", name, {}, opts);
        const s = args.settings;
        const claims: Partial<ClaimNames> = {};
        for (const v of VOLUME_NAMES) {
            const existing = s.storage[v].existingClaim;
            if (existing) {
                claims[v] = existing;
                continue;
            }
            const pvc = new k8s.core.v1.PersistentVolumeClaim(`${name}-${v}`, pvcArgs(s, args.namespace, v), {
                parent: this,
                retainOnDelete: s.storage.retainOnDestroy,
            });
            claims[v] = pvc.metadata.name;
        }
        this.claims = claims as ClaimNames;
        this.registerOutputs({ claims: this.claims });
    }
}
