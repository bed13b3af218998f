// `npm run report -- --stack <name>`: prints a stack's run from the cluster: each Job's state and
// run time, then the report table the report Job printed. Needs kubectl and access to the cluster.
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { parseArgs } from "util";
import { readStackFile, stackFilePath, stackSettings } from "./stackfile";

interface JobItem {
    metadata: { name: string; labels: Record<string, string> };
    status: { startTime?: string; completionTime?: string; succeeded?: number; failed?: number; active?: number; conditions?: { type: string; status: string }[] };
}

export function jobState(j: JobItem): string {
    const cond = (t: string) => j.status.conditions?.some((c) => c.type === t && c.status === "True");
    if (cond("Complete")) return "complete";
    if (cond("Failed")) return "failed";
    if (j.status.active) return "running";
    return "pending";
}

export function hours(j: JobItem, now = Date.now()): string {
    if (!j.status.startTime) return "-";
    const end = j.status.completionTime ? Date.parse(j.status.completionTime) : now;
    return ((end - Date.parse(j.status.startTime)) / 3.6e6).toFixed(2);
}

export function jobTable(items: JobItem[]): string {
    const rows = items.map((j) => [j.metadata.labels["cot-vr/stage"], j.metadata.labels["cot-vr/variant"] ?? "", jobState(j), hours(j), j.metadata.name]);
    return ["| stage | variant | state | hours | job |", "|---|---|---|---|---|", ...rows.map((r) => `| ${r.join(" | ")} |`)].join("\n");
}

function main(): number {
    const { values } = parseArgs({ options: { stack: { type: "string" }, config: { type: "string" } } });
    const file = values.config ?? (values.stack ? stackFilePath(values.stack) : undefined);
    if (!file) {
        console.error("usage: npm run report -- (--stack <name> | --config <Pulumi.<stack>.yaml>)");
        return 2;
    }
    const { settings: s } = stackSettings(readStackFile(file), { placeholderSecrets: true });
    const kubectlArgs: string[] = [];
    if (s.cluster.kubeconfig) {
        // kubeconfig may be a path or the file's contents.
        let kc = s.cluster.kubeconfig;
        if (!fs.existsSync(kc)) {
            kc = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "kc-")), "config");
            fs.writeFileSync(kc, s.cluster.kubeconfig, { mode: 0o600 });
        }
        kubectlArgs.push("--kubeconfig", kc);
    }
    if (s.cluster.context) kubectlArgs.push("--context", s.cluster.context);
    kubectlArgs.push("-n", s.cluster.namespace);
    const kubectl = (...a: string[]) => execFileSync("kubectl", [...kubectlArgs, ...a], { encoding: "utf8" });

    const jobs = JSON.parse(kubectl("get", "jobs", "-l", `cot-vr/run=${s.run}`, "-o", "json")).items as JobItem[];
    console.log(`# run ${s.run} (namespace ${s.cluster.namespace})\n\n${jobTable(jobs)}\n`);
    const report = jobs.find((j) => j.metadata.labels["cot-vr/stage"] === "report");
    if (!report) {
        console.log("No report Job in the cluster: enable stages.report (with the evaluations) and run pulumi up.");
        return 0;
    }
    if (jobState(report) !== "complete") {
        console.log(`Report Job ${report.metadata.name} is ${jobState(report)}.`);
        return jobState(report) === "failed" ? 1 : 0;
    }
    console.log(kubectl("logs", `job/${report.metadata.name}`));
    return 0;
}

if (require.main === module) {
    try {
        process.exit(main());
    } catch (e) {
        console.error(e instanceof Error ? e.message : e);
        process.exit(1);
    }
}
