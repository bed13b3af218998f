// The real node itself (sim/node.sh): what the pipeline's pods rely on, checked with a busybox image
// before any of the project's images run. Registration as an MI300X node, GPU accounting by the
// scheduler and the kubelet, the pod network, Service DNS through CoreDNS, Services through
// kube-proxy, the API server from inside a pod, and the shipped pods' security context.
import * as fs from "fs";
import * as path from "path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kubectl, kubectlJson, must, run, WORK } from "../e2e/helpers";

const NODE = process.env.COT_PODS_NODE ?? "mi300x-0";
const NS = "node-check";
const BUSYBOX = "localhost/busybox:static";

function applyYaml(text: string): void {
    const f = path.join(WORK, `apply-${Date.now()}.yaml`);
    fs.writeFileSync(f, text);
    must(kubectl("apply", "-f", f), "kubectl apply");
}

/** A pod of busybox tolerating the GPU taint, non-root, read-only root (the shipped pods' context). */
function pod(name: string, script: string, extra: { gpus?: number; labels?: Record<string, string> } = {}): string {
    return JSON.stringify({
        apiVersion: "v1", kind: "Pod",
        metadata: { name, namespace: NS, labels: extra.labels ?? {} },
        spec: {
            restartPolicy: "Never",
            tolerations: [{ key: "amd.com/gpu", operator: "Exists", effect: "NoSchedule" }],
            securityContext: { runAsNonRoot: true, runAsUser: 1000, runAsGroup: 1000, fsGroup: 1000, seccompProfile: { type: "RuntimeDefault" } },
            containers: [{
                name: "c", image: BUSYBOX, imagePullPolicy: "Never",
                command: ["/bin/busybox", "sh", "-c", script],
                securityContext: { readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } },
                resources: extra.gpus ? { limits: { "amd.com/gpu": extra.gpus } } : {},
                volumeMounts: [{ name: "tmp", mountPath: "/tmp" }],
            }],
            volumes: [{ name: "tmp", emptyDir: {} }],
        },
    });
}

function waitPhase(name: string, phases: string[], seconds = 120): any {
    const end = Date.now() + seconds * 1000;
    for (;;) {
        const p = kubectlJson("-n", NS, "get", "pod", name);
        if (phases.includes(p.status?.phase)) return p;
        if (Date.now() > end) throw new Error(`pod ${name} is ${p.status?.phase}, not ${phases}: ${JSON.stringify(p.status)}`);
        run("sleep", ["1"]);
    }
}

describe("the real node", () => {
    beforeAll(() => {
        const archive = path.join(WORK, "busybox.tar");
        must(run("bash", ["sim/node/image-from-binary.sh", "/bin/busybox", "/bin/busybox", BUSYBOX, archive]), "busybox image");
        must(run("ctr", ["-a", process.env.CONTAINERD_ADDRESS ?? "", "-n", "k8s.io", "images", "import", archive]), "ctr import");
        must(kubectl("create", "namespace", NS), "namespace");
    });
    afterAll(() => {
        kubectl("delete", "namespace", NS, "--wait=false");
    });

    it("registers as an MI300X node with its taint and 8 amd.com/gpu", () => {
        const n = kubectlJson("get", "node", NODE);
        expect(n.metadata.labels["amd.com/gpu.product-name"]).toBe("AMD_Instinct_MI300X_OAM");
        expect(n.spec.taints).toContainEqual({ key: "amd.com/gpu", value: "present", effect: "NoSchedule" });
        expect(n.status.allocatable["amd.com/gpu"]).toBe("8");
        expect(n.status.nodeInfo.containerRuntimeVersion).toMatch(/^containerd:\/\//);
        expect(n.status.conditions.find((c: any) => c.type === "Ready").status).toBe("True");
    });

    it("runs a server behind a Service, found by name through CoreDNS and reached through kube-proxy", () => {
        applyYaml(pod("web", "mkdir -p /tmp/www && echo hello-from-web > /tmp/www/index.html && exec /bin/busybox httpd -f -p 8080 -h /tmp/www", { gpus: 8, labels: { app: "web" } }));
        applyYaml(JSON.stringify({ apiVersion: "v1", kind: "Service", metadata: { name: "web", namespace: NS }, spec: { selector: { app: "web" }, ports: [{ port: 80, targetPort: 8080 }] } }));
        waitPhase("web", ["Running"]);
        applyYaml(pod("client", `wget -qO- http://web.${NS}.svc.cluster.local/ && wget -qO- http://web/ && ` +
            "wget -qO- --no-check-certificate https://kubernetes.default.svc/version && echo && id -u && touch /probe 2>/dev/null || echo read-only-root"));
        const p = waitPhase("client", ["Succeeded", "Failed"]);
        const log = must(kubectl("-n", NS, "logs", "client"), "logs").stdout;
        expect(p.status.phase, log).toBe("Succeeded");
        expect(log.match(/hello-from-web/g)?.length).toBe(2);
        expect(log).toContain('"gitVersion": "v1.34.4"');
        expect(log).toMatch(/^1000$/m);
        expect(log).toContain("read-only-root");
    });

    it("admits no pod beyond the node's 8 GPUs while they are all taken", () => {
        applyYaml(pod("one-more", "true", { gpus: 1 }));
        run("sleep", ["3"]);
        const p = kubectlJson("-n", NS, "get", "pod", "one-more");
        expect(p.status.phase).toBe("Pending");
        expect(JSON.stringify(p.status.conditions)).toContain("Insufficient amd.com/gpu");
        must(kubectl("-n", NS, "delete", "pod", "web", "--grace-period=1"), "delete web");
        expect(waitPhase("one-more", ["Succeeded"], 90).status.phase).toBe("Succeeded");
    });
});
