// Where one `pulumi preview` spends its time, from the engine's own log (`--logtostderr -v=5`, JSON
// lines with timestamps): reads the log on stdin, the command's start (epoch seconds) as argv[2] and
// its end as argv[3]; prints the phases in seconds:
//   engine   CLI start -> the program's Stack registered (CLI, language host, node, SDK runner)
//   program  -> the program's first resource after the Stack (its imports and construction)
//   graph    -> the last resource answered (checks, provider dry-runs, the DAG's waits)
//   exit     -> the command returned
import * as readline from "node:readline";

const [start, end] = process.argv.slice(2).map(Number);
let stack, first, last;
for await (const line of readline.createInterface({ input: process.stdin })) {
    if (!line.startsWith("{")) continue;
    let e;
    try { e = JSON.parse(line); } catch { continue; }
    const t = Date.parse(e.time) / 1000;
    if (e.msg?.startsWith("ResourceMonitor.RegisterResource received: t=pulumi:pulumi:Stack")) stack ??= t;
    else if (e.msg?.startsWith("ResourceMonitor.RegisterResource received:") && stack !== undefined) first ??= t;
    if (e.msg?.startsWith("ResourceMonitor.RegisterResource operation finished:")) last = t;
}
if (stack === undefined || first === undefined || last === undefined) {
    console.error("preview-phases: no resource registrations in the log");
    process.exit(1);
}
const f = (x) => x.toFixed(2);
console.log(`engine ${f(stack - start)}s, program ${f(first - stack)}s, graph ${f(last - first)}s, exit ${f(end - last)}s`);
