// The cluster a stack's commands read, chosen as the program's Kubernetes provider chooses it
// (components/pipeline.ts): cot-vr:cluster.kubeconfig (a path or the file's contents) and
// cluster.context, else the ambient kubeconfig. status, fetch and `pulumi up`'s headline read use it.
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import type * as K8s from "@kubernetes/client-node";
import { CLI_EXIT, CliError } from "./cli";

export interface KubeTarget {
    readonly kubeconfig?: string;
    readonly context?: string;
}

/**
 * The KubeConfig of a stack. `k8s` is @kubernetes/client-node, passed in: it is an ES module, which
 * the Pulumi program loads only when it reads the cluster (scripts/headline.ts).
 */
export function loadKubeConfig(k8s: typeof K8s, t: KubeTarget): K8s.KubeConfig {
    const kc = new k8s.KubeConfig();
    const ambient = process.env.KUBECONFIG || fs.existsSync(path.join(os.homedir(), ".kube", "config")) || process.env.KUBERNETES_SERVICE_HOST;
    // Without any, client-node would fall back to http://localhost:8080: say what is missing instead.
    if (!t.kubeconfig && !ambient) throw new CliError("no cluster to read: set cot-vr:cluster.kubeconfig (and cluster.context) in the stack, or KUBECONFIG", CLI_EXIT.unreachable);
    try {
        if (!t.kubeconfig) kc.loadFromDefault();
        else if (fs.existsSync(t.kubeconfig)) kc.loadFromFile(t.kubeconfig);
        else kc.loadFromString(t.kubeconfig);
    } catch (e) {
        const file = (e as { path?: string }).path;
        if ((e as { code?: string }).code === "ENOENT") throw new CliError(`no kubeconfig at ${file}: fix KUBECONFIG or cot-vr:cluster.kubeconfig`, CLI_EXIT.unreachable);
        throw e;
    }
    if (t.context) kc.setCurrentContext(t.context);
    return kc;
}
