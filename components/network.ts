// NetworkPolicies of a run (cluster.networkPolicy): every pod of the run is denied by default; DNS is
// open to all; the teacher accepts traffic only from the generation; HTTPS goes out only from the
// pods that download (Hugging Face models and datasets, W&B); the API server is reachable only from
// the pods that call it (the generation and the teacher's watchdog scale the teacher, the report reads
// Job times). With a notification webhook, the stages without HTTPS or API egress may reach port 443 too.
import * as k8s from "@pulumi/kubernetes";
import { Settings } from "../config";
import { EGRESS, STAGE_NAMES, StageName } from "../contract";
import { labels, LABELS, teacherSelector } from "./naming";

type PolicyArgs = k8s.networking.v1.NetworkPolicyArgs;

/** The API server's ports: its Service (443) and where it listens on the control plane (6443). */
const API_PORTS = [443, 6443];

const tcp = (port: number) => ({ protocol: "TCP", port });

export function networkPolicies(s: Settings, namespace: k8s.types.input.meta.v1.ObjectMeta["namespace"]): Record<string, PolicyArgs> {
    const run = { [LABELS.run]: s.run };
    const stages = (list: readonly StageName[]) => ({ matchLabels: run, matchExpressions: [{ key: LABELS.stage, operator: "In", values: [...list] }] });
    const meta = (name: string) => ({ name: `${s.run}-${name}`, namespace, labels: labels(s.run, "network") });
    // Stages running this project's programs that no egress rule below lets reach port 443 (the teacher runs vLLM).
    const notifyOnly = STAGE_NAMES.filter((n) => n !== "teacher" && !EGRESS.https.includes(n) && !EGRESS.api.includes(n));
    const notify: Record<string, PolicyArgs> = s.notify && notifyOnly.length > 0 ? {
        "notify-egress": {
            metadata: meta("notify-egress"),
            spec: { podSelector: stages(notifyOnly), policyTypes: ["Egress"], egress: [{ ports: [tcp(443)] }] },
        },
    } : {};
    return {
        "default-deny": {
            metadata: meta("default-deny"),
            spec: {
                podSelector: { matchLabels: run },
                policyTypes: ["Ingress", "Egress"],
                egress: [{ ports: [{ protocol: "UDP", port: 53 }, tcp(53)] }],
            },
        },
        "teacher-from-generate": {
            metadata: meta("teacher-from-generate"),
            spec: {
                podSelector: { matchLabels: teacherSelector(s.run) },
                policyTypes: ["Ingress"],
                ingress: [{ from: [{ podSelector: { matchLabels: { ...run, [LABELS.stage]: "generate" } } }], ports: [tcp(s.teacher.port)] }],
            },
        },
        "generate-to-teacher": {
            metadata: meta("generate-to-teacher"),
            spec: {
                podSelector: { matchLabels: { ...run, [LABELS.stage]: "generate" } },
                policyTypes: ["Egress"],
                egress: [{ to: [{ podSelector: { matchLabels: teacherSelector(s.run) } }], ports: [tcp(s.teacher.port)] }],
            },
        },
        "https-egress": {
            metadata: meta("https-egress"),
            spec: { podSelector: stages(EGRESS.https), policyTypes: ["Egress"], egress: [{ ports: [tcp(443)] }] },
        },
        "api-egress": {
            metadata: meta("api-egress"),
            spec: { podSelector: stages(EGRESS.api), policyTypes: ["Egress"], egress: [{ ports: API_PORTS.map(tcp) }] },
        },
        ...notify,
    };
}
