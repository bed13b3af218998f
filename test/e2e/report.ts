// The report's one effect on the API that `pulumi up` reads back (kwok runs no containers): while the
// run's report pod is Running, the real images/trainer/report.py write_headline_configmap patches the
// record into the ConfigMap <run>-report, with a token of the report's ServiceAccount (through its
// Role), as the real report does before it exits. The e2e tier only: a rehearsal makes up no scores.
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { LABELS, selector } from "../../contract";
import { accountApiArgs } from "../../sim/teacher";
import { loadKubeConfig, watchPods } from "../../sim/watch";
import { ROOT } from "./helpers";

const TRAINER = path.join(ROOT, "images", "trainer");
const WRITE = [
    "import json, sys",
    `sys.path.insert(0, ${JSON.stringify(TRAINER)})`,
    "import report",
    "from pathlib import Path",
    "from cotvr_common import KubeApi",
    "api, token_file, ca, ns, name, rec = sys.argv[1:]",
    "report.write_headline_configmap(KubeApi(api, None, ca or None, token_file=Path(token_file)), ns, name, json.loads(rec))",
].join("\n");

export interface HeadlineWrites {
    /** One entry per report pod seen Running: python's exit code and output. */
    readonly writes: { pod: string; code: number | null; output: string }[];
    stop(): Promise<void>;
}

/** Writes `record` once per report pod of `run` that turns Running. */
export function writeHeadlineWhileReporting(kubeconfig: string, namespace: string, run: string, record: object): HeadlineWrites {
    const kc = loadKubeConfig(kubeconfig);
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "cot-vr-report-"));
    const writes: HeadlineWrites["writes"] = [];
    const seen = new Set<string>();
    const pending: Promise<void>[] = [];
    const w = watchPods(kc, namespace, selector({ [LABELS.run]: run, [LABELS.stage]: "report" }), (type, pod) => {
        if (type === "DELETED" || pod.status?.phase !== "Running" || seen.has(pod.metadata.uid)) return;
        seen.add(pod.metadata.uid);
        pending.push((async () => {
            const flags = await accountApiArgs(kc, tmp, namespace, `${run}-report`);
            const flag = (f: string) => flags[flags.indexOf(f) + 1] ?? "";
            const r = spawnSync("python3", ["-c", WRITE, flag("--api"), flag("--token-file"), flags.includes("--ca-file") ? flag("--ca-file") : "",
                namespace, `${run}-report`, JSON.stringify(record)], { encoding: "utf8" });
            writes.push({ pod: pod.metadata.name, code: r.status, output: `${r.stdout}${r.stderr}${r.error ?? ""}` });
        })().catch((e) => { writes.push({ pod: pod.metadata.name, code: -1, output: String(e?.body ? JSON.stringify(e.body) : e) }); }));
    });
    return {
        writes,
        stop: async () => {
            w.stop();
            await Promise.all(pending);
            fs.rmSync(tmp, { recursive: true, force: true });
        },
    };
}
