// Figures (not a test) for test/e2e/bench-gpu.sh: the blog stack in one `pulumi up` with the blog's
// stage times, this design (the generation holds the teacher) next to the old behaviour
// (`teacher.keep: true`, the teacher serves until a later update), measured in the same run.
import { BlogRun, ganttText, runBlogFlow } from "./blogflow";
import { KUBECONFIG, requireCluster } from "./helpers";
import { applyStageDurations } from "../../sim/stages";

async function main() {
    requireCluster();
    const secondsPerHour = Number(process.env.COT_E2E_HOUR_SECONDS ?? 1);
    const parallel = Number(process.env.COT_E2E_PARALLEL ?? 64);
    const runs: [string, BlogRun][] = [];
    for (const [label, keep] of [["one update, generation holds the teacher", false], ["teacher.keep: true (old behaviour)", true]] as const) {
        const name = keep ? "blog-keep" : "blog-hold";
        runs.push([label, await runBlogFlow({ name, namespace: `cot-vr-bench-${name}`, keep, secondsPerHour, parallel })]);
    }
    await applyStageDurations(KUBECONFIG, []);
    const n = (x: number, d = 1) => x.toFixed(d).padStart(7);
    const lines = [
        "",
        `blog stack, one \`pulumi up --parallel ${parallel}\` each; 1 simulated hour = ${secondsPerHour} s; hours below are simulated`,
        `${"flow".padEnd(42)} ${"held".padStart(7)} ${"work".padStart(7)} ${"ratio".padStart(7)} ${"makespan".padStart(9)} ${"crit.path".padStart(9)} ${"ms/cp".padStart(7)}  GPU pods at return`,
    ];
    for (const [label, r] of runs) {
        const f = r.figures;
        const cp = r.critical.seconds / secondsPerHour;
        lines.push(`${label.padEnd(42)} ${n(f.held)} ${n(f.work)} ${n(f.ratio, 3)} ${n(f.makespan).padStart(9)} ${n(cp).padStart(9)} ${n(f.makespan / cp, 3)}  ${r.gpuPodsAtReturn.join(", ") || "none"}`);
    }
    const cp = runs[0][1].critical;
    lines.push(`critical path: ${cp.path.map((p) => `${p.id} ${(p.seconds / secondsPerHour).toFixed(2)}`).join(" -> ")} (h)`);
    for (const [label, r] of runs) lines.push("", `${label}: pulumi up ${r.up.seconds.toFixed(1)} s wall, at most ${r.maxConcurrent} pods at once`, ganttText(r));
    console.log(lines.join("\n"));
}

main().catch((e) => { console.error(e); process.exit(1); });
