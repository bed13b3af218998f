// `npm run fetch`: arguments, the reader pod (hardened, the results claim read-only), which files come
// home, error mapping; and the whole copy through @kubernetes/client-node against an in-process stand-in
// API server that answers the list/create/read/delete calls and the pod `exec` WebSocket (channel.k8s.io).
import * as fs from "fs";
import * as http from "http";
import * as os from "os";
import * as path from "path";
import * as k8s from "@kubernetes/client-node";
import * as YAML from "yaml";
import { afterEach, describe, expect, it } from "vitest";
import { LABELS, selector } from "../../contract";
import {
    FETCH_EXIT, FetchError, fetchTarget, mapError, parseFetchArgs, podProblem, readerPod, selectFiles,
} from "../../scripts/fetch-core";
import { settings } from "./helpers";
import { stubKubeconfig } from "./stub-kubeconfig";

// A WebSocket server for the exec stand-in: `ws` comes with @kubernetes/client-node (its own transport).
const { WebSocketServer } = require("ws") as { WebSocketServer: new (o: object) => any };

const stackFile = (s: string) => `/stacks/Pulumi.${s}.yaml`;

describe("arguments", () => {
    it("takes a stack or a stack file, an out dir (default ./results/<stack>) and a timeout", () => {
        expect(parseFetchArgs(["--stack", "blog"], stackFile)).toEqual({ kind: "run", opts: { args: { file: "/stacks/Pulumi.blog.yaml", stack: "blog", out: path.join("results", "blog"), timeoutSeconds: 180 } } });
        expect(parseFetchArgs(["--config", "/x/Pulumi.sweep.yaml", "--out", "/tmp/r", "--timeout", "30"], stackFile))
            .toEqual({ kind: "run", opts: { args: { file: "/x/Pulumi.sweep.yaml", stack: "sweep", out: "/tmp/r", timeoutSeconds: 30 } } });
        for (const h of ["--help", "-h"]) expect(parseFetchArgs([h], stackFile).kind).toBe("help");
    });
    it("refuses what it cannot use, with commander's one-line error", () => {
        const cases: [string[], RegExp][] = [
            [[], /^error: give --stack <name> or --config <file>/],
            [["--stack", "a", "--config", "b"], /^error: option '--stack <name>' cannot be used with option '--config <file>'/],
            [["--stack", "a", "--timeout", "0"], /^error: option '--timeout <s>' argument '0' is invalid\. must be a number above 0/],
            [["--stack", "a", "--bogus"], /^error: unknown option '--bogus'/],
            [["--stack"], /^error: option '--stack <name>' argument missing/],
            [["--stack", "a", "extra"], /^error: too many arguments/],
        ];
        for (const [argv, msg] of cases) {
            const p = parseFetchArgs(argv, stackFile);
            expect(p.kind, argv.join(" ")).toBe("error");
            expect(p.kind === "error" && p.message, argv.join(" ")).toMatch(msg);
            expect(p.kind === "error" && p.message).toMatch(/\(--help for usage\)$/);
        }
    });
    it("prints usage, options, exit codes and examples", () => {
        const p = parseFetchArgs(["--help"], stackFile);
        // commander wraps the description at 80 columns
        const text = (p.kind === "help" ? p.text : "").replace(/\s+/g, " ");
        expect(text).toMatch(/^Usage: npm run fetch -- \[options\]/);
        for (const s of ["--stack <name>", "--config <file>", "--out <dir>", "--timeout <s>", "(default: 180)", "Exit codes: 0 copied, 1 failed, 2 bad options, 3 the cluster cannot be reached, 4 no report yet", "Examples:", "npm run fetch -- --stack blog"]) expect(text).toContain(s);
    });
});

describe("the reader pod", () => {
    const t = fetchTarget(settings());
    it("reads the stack: namespace, run, the results claim (or the existing one), the pods' user", () => {
        expect(t).toMatchObject({ namespace: "cot-vr", run: "blog", claim: "blog-results", resultsDir: "/results/blog", reportDir: "report", runAsUser: 10001, configuredImage: "cot-vr-trainer:0.1.0" });
        expect(fetchTarget(settings({ storage: { results: { existingClaim: "shared-results" } } })).claim).toBe("shared-results");
    });
    it("is hardened and mounts the claim read-only", () => {
        const p = readerPod(t, "blog-fetch-abc123", "img:1", ["pull"]);
        const c = p.spec.containers[0];
        expect(p.metadata).toMatchObject({ name: "blog-fetch-abc123", namespace: "cot-vr" });
        expect(p.metadata.labels[LABELS.run]).toBe("blog");
        expect(p.spec).toMatchObject({ restartPolicy: "Never", automountServiceAccountToken: false, activeDeadlineSeconds: expect.any(Number), imagePullSecrets: [{ name: "pull" }] });
        expect(p.spec.securityContext).toEqual({ runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001, seccompProfile: { type: "RuntimeDefault" } });
        expect(c.securityContext).toEqual({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ["ALL"] } });
        expect(c.volumeMounts).toEqual([{ name: "results", mountPath: "/results", readOnly: true }]);
        expect(p.spec.volumes).toEqual([{ name: "results", persistentVolumeClaim: { claimName: "blog-results", readOnly: true } }]);
        expect(c.resources.limits.memory).toBeDefined();
        expect(JSON.stringify(p)).not.toMatch(/gpu|hostPath|privileged/i);
    });
});

describe("the files", () => {
    const t = { resultsDir: "/results/blog", reportDir: "report" };
    it("brings the report, every PNG, the evaluation JSONs, samples and benchmarks; not temp files, markers or other folders", () => {
        const listing = [
            "2048 report/report.md", "9000 report/report.json", "50000 report/exact_match.png", "60000 report/gpu_timeline.png",
            "10 report/.report.md.abc.tmp", "700 eval/base-11b.json", "700 eval/lora-11b.json", "300 samples/lora-11b.json",
            "90000 samples/lora-11b.json.png", "100 samples/.complete.json", "200 bench/lora-11b.json", "500 gpu-time/teacher.jsonl", "garbage",
        ].join("\n");
        expect(selectFiles(listing, t).map((f) => f.path)).toEqual([
            "report/exact_match.png", "report/gpu_timeline.png", "report/report.json", "report/report.md",
            "eval/base-11b.json", "eval/lora-11b.json", "samples/lora-11b.json", "samples/lora-11b.json.png", "bench/lora-11b.json",
        ]);
    });
    it("fails with noReport without report.md", () => {
        const e = (() => { try { selectFiles("700 eval/base-11b.json\n", t); } catch (x) { return x as FetchError; } })()!;
        expect(e.code).toBe(FETCH_EXIT.noReport);
        expect(e.message).toMatch(/report\.md.*run pulumi up/);
    });
});

describe("errors", () => {
    const t = { namespace: "cot-vr", claim: "blog-results" };
    it("tells an unreachable cluster (exit 4) from a refusal (exit 1) and a missing deployment (exit 3)", () => {
        const refused = Object.assign(new TypeError("fetch failed"), { cause: Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:1"), { code: "ECONNREFUSED" }) });
        expect(mapError(refused, t, "https://k8s:6443")).toMatchObject({ code: FETCH_EXIT.unreachable, message: expect.stringMatching(/cannot reach the cluster at https:\/\/k8s:6443 \(ECONNREFUSED\)/) });
        expect(mapError(new Error("getaddrinfo ENOTFOUND k8s.example"), t).code).toBe(FETCH_EXIT.unreachable);
        expect(mapError(new k8s.ApiException(403, "forbidden", JSON.stringify({ message: "pods is forbidden" }), {}), t))
            .toMatchObject({ code: FETCH_EXIT.failed, message: expect.stringContaining("pods/exec in namespace cot-vr (pods is forbidden)") });
        expect(mapError(new k8s.ApiException(401, "", "", {}), t).code).toBe(FETCH_EXIT.failed);
        expect(mapError(new k8s.ApiException(404, "", JSON.stringify({ message: 'namespaces "cot-vr" not found' }), {}), t).code).toBe(FETCH_EXIT.noReport);
        expect(mapError(new Error("no cluster to read: set cot-vr:cluster.kubeconfig"), t).code).toBe(FETCH_EXIT.unreachable);
    });
    it("says why the reader pod cannot start", () => {
        const pending = (message: string) => ({ status: { phase: "Pending", conditions: [{ type: "PodScheduled", status: "False", reason: "Unschedulable", message }] } });
        expect(podProblem(pending('persistentvolumeclaim "blog-results" not found'), t)!.code).toBe(FETCH_EXIT.noReport);
        expect(podProblem(pending("0/3 nodes are available"), t)).toBeUndefined();
        expect(podProblem({ status: { phase: "Pending", containerStatuses: [{ state: { waiting: { reason: "ImagePullBackOff", message: "not found" } } }] } }, t)!.message).toMatch(/ImagePullBackOff.*images\.trainer/);
        expect(podProblem({ status: { phase: "Running" } }, t)).toBeUndefined();
    });
});

// ---------------------------------------------------------------------------------------------------
// The API path

interface Stand {
    kubeconfig: string;
    created: any[];
    deleted: string[];
    commands: string[][];
    close(): Promise<void>;
}

/** Answers the calls fetch makes. `files`: the results folder (relative paths), null: it does not exist. */
async function standIn(files: Record<string, Buffer> | null, o: { claimMissing?: boolean } = {}): Promise<Stand> {
    const created: any[] = [];
    const deleted: string[] = [];
    const commands: string[][] = [];
    const json = (res: http.ServerResponse, code: number, body: unknown) => {
        res.statusCode = code;
        res.setHeader("content-type", "application/json");
        res.end(JSON.stringify(body));
    };
    const server = http.createServer((req, res) => {
        const u = new URL(req.url!, "http://x");
        let body = "";
        req.on("data", (c) => (body += c));
        req.on("end", () => {
            if (req.method === "GET" && u.pathname === "/apis/batch/v1/namespaces/cot-vr/jobs") {
                expect(u.searchParams.get("labelSelector")).toBe(selector({ [LABELS.run]: "blog", [LABELS.stage]: "report" }));
                return json(res, 200, { apiVersion: "batch/v1", kind: "JobList", metadata: {}, items: [{
                    metadata: { name: "blog-report-ed96fe62", creationTimestamp: "2026-05-04T10:00:00Z" },
                    spec: { template: { spec: { containers: [{ name: "main", image: "registry.example/cot-vr-trainer@sha256:" + "a".repeat(64) }], imagePullSecrets: [{ name: "blog-registry" }] } } },
                }] });
            }
            if (req.method === "POST" && u.pathname === "/api/v1/namespaces/cot-vr/pods") {
                const pod = JSON.parse(body);
                created.push(pod);
                return json(res, 201, pod);
            }
            const m = /^\/api\/v1\/namespaces\/cot-vr\/pods\/([^/]+)$/.exec(u.pathname);
            if (m && req.method === "GET") {
                const status = o.claimMissing
                    ? { phase: "Pending", conditions: [{ type: "PodScheduled", status: "False", reason: "Unschedulable", message: 'persistentvolumeclaim "blog-results" not found' }] }
                    : { phase: "Running" };
                return json(res, 200, { ...created.find((p) => p.metadata.name === m[1]), status });
            }
            if (m && req.method === "DELETE") {
                deleted.push(m[1]);
                return json(res, 200, { kind: "Status", apiVersion: "v1", status: "Success" });
            }
            json(res, 404, { kind: "Status", apiVersion: "v1", status: "Failure", reason: "NotFound", code: 404 });
        });
    });
    const wss = new WebSocketServer({ noServer: true, handleProtocols: (p: Set<string>) => (p.has("v4.channel.k8s.io") ? "v4.channel.k8s.io" : false) });
    server.on("upgrade", (req, socket, head) => {
        const u = new URL(req.url!, "http://x");
        if (!/^\/api\/v1\/namespaces\/cot-vr\/pods\/[^/]+\/exec$/.test(u.pathname) || u.searchParams.get("container") !== "main") return socket.destroy();
        wss.handleUpgrade(req, socket, head, (ws: any) => {
            const cmd = u.searchParams.getAll("command");
            commands.push(cmd);
            const frame = (ch: number, data: Buffer) => ws.send(Buffer.concat([Buffer.from([ch]), data]));
            const finish = (code: number) => {
                frame(3, Buffer.from(JSON.stringify(code === 0 ? { metadata: {}, status: "Success" }
                    : { metadata: {}, status: "Failure", reason: "NonZeroExitCode", details: { causes: [{ reason: "ExitCode", message: String(code) }] } })));
                ws.close();
            };
            if (cmd[0] === "find") {
                if (!files) {
                    frame(2, Buffer.from("find: '/results/blog': No such file or directory\n"));
                    return finish(1);
                }
                frame(1, Buffer.from(Object.entries(files).map(([p, b]) => `${b.length} ${p}\n`).join("")));
                return finish(0);
            }
            const rel = cmd[1]?.replace("/results/blog/", "");
            if (cmd[0] === "cat" && files?.[rel] !== undefined) {
                // in chunks, as the kubelet streams it
                for (let i = 0; i < files[rel].length; i += 16384) frame(1, files[rel].subarray(i, i + 16384));
                return finish(0);
            }
            frame(2, Buffer.from(`cat: ${cmd[1]}: No such file or directory\n`));
            finish(1);
        });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as { port: number }).port;
    return {
        kubeconfig: stubKubeconfig(`http://127.0.0.1:${port}`),
        created, deleted, commands,
        close: () => new Promise<void>((r) => { wss.close(); server.closeAllConnections(); server.close(() => r()); }),
    };
}

/** The smoke stack renamed to run "blog" and pointed at `kubeconfig`, as a stack file. */
function stackFileFor(dir: string, kubeconfig: string): string {
    const file = path.join(dir, "Pulumi.stub.yaml");
    const doc = YAML.parse(fs.readFileSync(path.join(__dirname, "../../stacks/Pulumi.smoke.yaml"), "utf8"));
    doc.config["cot-vr:run"] = "blog";
    doc.config["cot-vr:cluster"] = { ...(doc.config["cot-vr:cluster"] ?? {}), namespace: "cot-vr", kubeconfig, context: "stub" };
    fs.writeFileSync(file, YAML.stringify(doc));
    return file;
}

const PNG = Buffer.from(Array.from({ length: 70000 }, (_, i) => (i * 7 + 3) % 256));
const FILES: Record<string, Buffer> = {
    "report/report.md": Buffer.from("# Report: run `blog`\n| lora-11b | 0.3450 |\n"),
    "report/report.json": Buffer.from("{}\n"),
    "report/exact_match.png": PNG,
    "report/.report.md.x.tmp": Buffer.from("partial"),
    "eval/lora-11b.json": Buffer.from('{"variant": "lora-11b"}\n'),
    "samples/lora-11b.json": Buffer.from('{"answer": "7"}\n'),
    "gpu-time/teacher.jsonl": Buffer.from("{}\n"),
};

describe("the copy through the API", () => {
    const cleanups: (() => Promise<void> | void)[] = [];
    afterEach(async () => {
        for (const c of cleanups.splice(0)) await c();
    });
    const tmp = () => {
        const d = fs.mkdtempSync(path.join(os.tmpdir(), "fetch-"));
        cleanups.push(() => fs.rmSync(d, { recursive: true, force: true }));
        return d;
    };
    const cli = async (argv: string[]) => {
        const { main } = await import("../../scripts/fetch");
        const out: string[] = [];
        const err: string[] = [];
        const code = await main(argv, (l) => out.push(l), (l) => err.push(l));
        return { code, out, err };
    };

    it("copies the files byte for byte with a line per file, with the report Job's image, then deletes the pod", async () => {
        const api = await standIn(FILES);
        cleanups.push(() => api.close());
        const dir = tmp();
        const out = path.join(dir, "results");
        const r = await cli(["--config", stackFileFor(dir, api.kubeconfig), "--out", out]);
        expect(r.err).toEqual([]);
        expect(r.code).toBe(FETCH_EXIT.ok);
        for (const p of ["report/report.md", "report/report.json", "report/exact_match.png", "eval/lora-11b.json", "samples/lora-11b.json"]) {
            expect(fs.readFileSync(path.join(out, p)).equals(FILES[p]), p).toBe(true);
        }
        expect(fs.existsSync(path.join(out, "report/.report.md.x.tmp"))).toBe(false);
        expect(fs.existsSync(path.join(out, "gpu-time"))).toBe(false);
        expect(r.out.filter((l) => l.startsWith("  "))).toEqual([
            "  report/exact_match.png (70.0 kB)", "  report/report.json (3 B)", "  report/report.md (43 B)", "  eval/lora-11b.json (24 B)", "  samples/lora-11b.json (16 B)",
        ]);
        expect(r.out.at(-1)).toBe(`5 files of run blog in ${out}`);
        const [pod] = api.created;
        expect(pod.spec.containers[0].image).toBe("registry.example/cot-vr-trainer@sha256:" + "a".repeat(64));
        expect(pod.spec.imagePullSecrets).toEqual([{ name: "blog-registry" }]);
        expect(pod.spec.volumes[0].persistentVolumeClaim).toEqual({ claimName: "blog-results", readOnly: true });
        expect(api.deleted).toEqual([pod.metadata.name]);
        expect(api.commands[0]).toEqual(["find", "/results/blog", "-mindepth", "2", "-maxdepth", "2", "-type", "f", "-printf", "%s %P\\n"]);
    });

    it("no report.md yet: exit 3 with one line naming the fix, and the pod is deleted", async () => {
        const api = await standIn({ "eval/lora-11b.json": FILES["eval/lora-11b.json"] });
        cleanups.push(() => api.close());
        const dir = tmp();
        const r = await cli(["--config", stackFileFor(dir, api.kubeconfig), "--out", path.join(dir, "o")]);
        expect(r.code).toBe(FETCH_EXIT.noReport);
        expect(r.err).toHaveLength(1);
        expect(r.err[0]).toMatch(/^fetch: no \/results\/blog\/report\/report\.md yet: .*run pulumi up/);
        expect(api.deleted).toHaveLength(1);
        expect(fs.existsSync(path.join(dir, "o"))).toBe(false);
    });

    it("no results folder or no claim: exit 3, pod deleted", async () => {
        for (const [files, o, msg] of [[null, {}, /no \/results\/blog on claim blog-results/], [FILES, { claimMissing: true }, /results claim blog-results does not exist/]] as const) {
            const api = await standIn(files as Record<string, Buffer> | null, o);
            cleanups.push(() => api.close());
            const dir = tmp();
            const r = await cli(["--config", stackFileFor(dir, api.kubeconfig), "--out", path.join(dir, "o")]);
            expect(r.code).toBe(FETCH_EXIT.noReport);
            expect(r.err[0]).toMatch(msg);
            expect(api.deleted).toHaveLength(1);
        }
    });

    it("an unreachable cluster: exit 4, distinct from a missing report", async () => {
        const closed = http.createServer();
        await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
        const port = (closed.address() as { port: number }).port;
        await new Promise<void>((r) => closed.close(() => r()));
        const dir = tmp();
        const r = await cli(["--config", stackFileFor(dir, stubKubeconfig(`http://127.0.0.1:${port}`)), "--out", path.join(dir, "o")]);
        expect(r.code).toBe(FETCH_EXIT.unreachable);
        expect(r.err).toEqual([expect.stringMatching(new RegExp(`^fetch: cannot reach the cluster at http://127.0.0.1:${port} \\(ECONNREFUSED\\)`))]);
    });

    it("usage errors exit 2; --help prints the usage", async () => {
        const none = await cli([]);
        expect(none.code).toBe(FETCH_EXIT.usage);
        expect(none.err).toEqual(["error: give --stack <name> or --config <file>\n(--help for usage)"]);
        expect((await cli(["--stack", "nope"])).err[0]).toMatch(/^no stack "nope": the stacks are /);
        const h = await cli(["--help"]);
        expect(h.code).toBe(0);
        expect(h.out.join("\n")).toMatch(/^Usage: npm run fetch -- \[options\][\s\S]*Examples:/);
    });
});
