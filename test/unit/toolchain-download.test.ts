// sim/toolchain.sh's download path against a local HTTP server on 127.0.0.1 that serves small fake
// binaries under the official layouts (tarballs where the real ones are tarballs) with their checksum
// files. Every run gets its own empty COT_E2E_CACHE and a fake `go` (it logs and writes a stub where
// `-o`/GOBIN points), so the build fallback is observable in a second; ~/.cache/cot-vr-e2e is never
// touched and nothing leaves loopback.
import { execFile, execFileSync } from "child_process";
import * as crypto from "crypto";
import * as fs from "fs";
import * as http from "http";
import * as os from "os";
import * as path from "path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const ROOT = path.resolve(__dirname, "../..");
const SCRIPT = path.join(ROOT, "sim/toolchain.sh");
const lock = JSON.parse(fs.readFileSync(path.join(ROOT, "package-lock.json"), "utf8"));
const PULUMI = lock.packages["node_modules/@pulumi/pulumi"].version as string;
const PROVIDER = lock.packages["node_modules/@pulumi/kubernetes"].version as string;
const versionsEnv = fs.readFileSync(path.join(ROOT, "sim/versions.env"), "utf8");
const envDefault = (k: string) => versionsEnv.match(new RegExp(`^${k}=(\\S+)`, "m"))![1];
const KUBE = envDefault("KUBE_VERSION_DEFAULT");
const ETCD = envDefault("ETCD_VERSION_DEFAULT");
const KWOK = envDefault("KWOK_VERSION_DEFAULT");
const ARCH = process.arch === "arm64" ? "arm64" : "amd64";
const PULUMI_ARCH = process.arch === "arm64" ? "arm64" : "x64";
const KUBE_BINS = ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"];

const sha256 = (f: string) => crypto.createHash("sha256").update(fs.readFileSync(f)).digest("hex");
const script = (name: string) => `#!/bin/sh\necho "fake ${name} $*"\n`;

let tmp = "";
let www = "";
let server: http.Server;
let base = "";
let requests: string[] = [];
let goLog = "";
let fakeBin = "";
let kwokPin = "";

function put(rel: string, body: string | Buffer): string {
    const f = path.join(www, rel);
    fs.mkdirSync(path.dirname(f), { recursive: true });
    fs.writeFileSync(f, body, { mode: 0o755 });
    return f;
}

/** A .tar.gz at rel holding files (path in the tarball -> content). */
function tarball(rel: string, files: Record<string, string>): string {
    const stage = fs.mkdtempSync(path.join(tmp, "stage-"));
    for (const [p, c] of Object.entries(files)) {
        fs.mkdirSync(path.dirname(path.join(stage, p)), { recursive: true });
        fs.writeFileSync(path.join(stage, p), c, { mode: 0o755 });
    }
    const out = path.join(www, rel);
    fs.mkdirSync(path.dirname(out), { recursive: true });
    execFileSync("tar", ["-czf", out, "-C", stage, ...Object.keys(files)]);
    return out;
}

const pulumiTgz = `pulumi-v${PULUMI}-linux-${PULUMI_ARCH}.tar.gz`;
const providerRel = `github/pulumi/pulumi-kubernetes/releases/download/v${PROVIDER}`;
const providerTgz = `pulumi-resource-kubernetes-v${PROVIDER}-linux-${ARCH}.tar.gz`;
const etcdRel = `github/etcd-io/etcd/releases/download/${ETCD}`;
const etcdName = `etcd-${ETCD}-linux-${ARCH}`;

function etcdTarball(content: string): string {
    return tarball(`${etcdRel}/${etcdName}.tar.gz`, { [`${etcdName}/etcd`]: content, [`${etcdName}/etcdctl`]: script("etcdctl") });
}

function serveOfficialLayout(): void {
    const p = tarball(`pulumi/releases/sdk/${pulumiTgz}`, {
        "pulumi/pulumi": script("pulumi"), "pulumi/pulumi-language-nodejs": script("pulumi-language-nodejs"),
        "pulumi/pulumi-language-python": script("pulumi-language-python"),
    });
    put(`pulumi/releases/sdk/pulumi-${PULUMI}-checksums.txt`,
        `${"0".repeat(64)}  pulumi-v${PULUMI}-darwin-x64.tar.gz\n${sha256(p)}  ${pulumiTgz}\n`);
    const k = tarball(`${providerRel}/${providerTgz}`, { "pulumi-resource-kubernetes": script("provider"), "README.md": "readme\n" });
    put(`${providerRel}/pulumi-kubernetes_${PROVIDER}_checksums.txt`, `${sha256(k)}  ${providerTgz}\n`);
    const e = etcdTarball(script("etcd"));
    put(`${etcdRel}/SHA256SUMS`, `${sha256(e)}  ${etcdName}.tar.gz\n`);
    for (const b of KUBE_BINS) {
        const f = put(`k8s/${KUBE}/bin/linux/${ARCH}/${b}`, script(b));
        put(`k8s/${KUBE}/bin/linux/${ARCH}/${b}.sha256`, sha256(f)); // the hash alone, as dl.k8s.io has it
    }
    kwokPin = sha256(put(`github/kubernetes-sigs/kwok/releases/download/${KWOK}/kwok-linux-${ARCH}`, script("kwok")));
}

interface Run { code: number; stdout: string; stderr: string }

function toolchain(cache: string, args: string[], env: Record<string, string | undefined> = {}, pathPrefix: string[] = []): Promise<Run> {
    const full: NodeJS.ProcessEnv = {
        PATH: [...pathPrefix, fakeBin, path.dirname(process.execPath), "/usr/bin", "/bin"].join(":"),
        HOME: path.join(tmp, "home"), PULUMI_HOME: path.join(tmp, "pulumi-home"), COT_E2E_CACHE: cache,
        COT_SIM_PULUMI_BASE: `${base}/pulumi`, COT_SIM_GITHUB_BASE: `${base}/github`, COT_SIM_K8S_BASE: `${base}/k8s`,
        COT_SIM_CONNECT_TIMEOUT: "2", COT_SIM_MAX_TIME: "10", FAKE_GO_LOG: goLog, GOPROXY: "off", LANG: "C",
        [`SHA256_kwok_${KWOK.replace(/[^A-Za-z0-9]/g, "_")}_linux_${ARCH}`]: kwokPin,
    };
    for (const [k, v] of Object.entries(env)) if (v === undefined) delete full[k]; else full[k] = v;
    return new Promise((resolve) => {
        execFile("bash", [SCRIPT, ...args], { env: full, encoding: "utf8" }, (err, stdout, stderr) =>
            resolve({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, stdout, stderr }));
    });
}

const newCache = () => fs.mkdtempSync(path.join(tmp, "cache-"));
const goCalls = () => (fs.existsSync(goLog) ? fs.readFileSync(goLog, "utf8") : "");
const read = (f: string) => fs.readFileSync(f, "utf8");

describe.skipIf(process.platform !== "linux" || !["x64", "arm64"].includes(process.arch))("sim/toolchain.sh downloads", () => {
    beforeAll(async () => {
        tmp = fs.mkdtempSync(path.join(os.tmpdir(), "cot-toolchain-dl-"));
        www = path.join(tmp, "www");
        goLog = path.join(tmp, "go.log");
        fakeBin = path.join(tmp, "fakebin");
        fs.mkdirSync(fakeBin);
        fs.mkdirSync(path.join(tmp, "home"));
        // fake go: logs, succeeds, writes a stub where `go build -o X` or `GOBIN=... go install pkg@v` would
        fs.writeFileSync(path.join(fakeBin, "go"), `#!/bin/bash
echo "go $*" >>"$FAKE_GO_LOG"
prev=""; for a in "$@"; do [[ "$prev" == -o ]] && printf '#!/bin/sh\\necho built by fake go\\n' >"$a" && chmod +x "$a"; prev="$a"; done
if [[ "$1" == install && -n "\${GOBIN:-}" ]]; then last="\${@: -1}"; last="\${last%@*}"; printf '#!/bin/sh\\necho built by fake go\\n' >"$GOBIN/\${last##*/}"; chmod +x "$GOBIN/\${last##*/}"; fi
exit 0
`, { mode: 0o755 });
        serveOfficialLayout();
        server = http.createServer((req, res) => {
            requests.push(req.url ?? "");
            const f = path.join(www, decodeURIComponent((req.url ?? "/").split("?")[0]));
            if (!f.startsWith(www + path.sep) || !fs.existsSync(f) || !fs.statSync(f).isFile()) { res.writeHead(404).end("not found"); return; }
            res.writeHead(200, { "content-type": "application/octet-stream" }).end(fs.readFileSync(f));
        });
        await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
        base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    });
    afterAll(async () => {
        await new Promise<void>((r) => server.close(() => r()));
        fs.rmSync(tmp, { recursive: true, force: true });
    });

    const cacheAll = { dir: "" };

    it("always: installs every tool from the official layout, checked, marked .ok, provider labelled as the release", async () => {
        const cache = newCache();
        cacheAll.dir = cache;
        const r = await toolchain(cache, ["--env"], { COT_SIM_DOWNLOAD: "always" });
        expect(r.stderr).not.toMatch(/refused|ERROR/);
        expect(r.code).toBe(0);
        const dirs = {
            pulumi: `pulumi-${PULUMI}`, langhost: `pulumi-language-nodejs-${PULUMI}-release`, provider: `pulumi-resource-kubernetes-${PROVIDER}`,
            etcd: `etcd-${ETCD}`, kwok: `kwok-${KWOK}`, kube: `kubernetes-${KUBE}`,
        };
        for (const d of Object.values(dirs)) {
            expect(fs.existsSync(path.join(cache, d, ".ok")), d).toBe(true);
            expect(read(path.join(cache, d, ".source")).trim()).toBe("release");
            expect(r.stdout).toContain(path.join(cache, d, "bin"));
        }
        // the built provider's label never appears: the downloaded one is the real release
        expect(fs.readdirSync(cache).filter((f) => f.startsWith("pulumi-resource-kubernetes-"))).toEqual([dirs.provider, `${dirs.provider}.lock`]);
        const bin = (d: string, b: string) => execFileSync(path.join(cache, d, "bin", b), ["x"], { encoding: "utf8" }).trim();
        expect(bin(dirs.pulumi, "pulumi")).toBe("fake pulumi x");
        expect(bin(dirs.pulumi, "pulumi-language-nodejs")).toBe("fake pulumi-language-nodejs x"); // linked beside pulumi
        expect(fs.readlinkSync(path.join(cache, dirs.pulumi, "bin/pulumi-language-nodejs"))).toBe(path.join(cache, dirs.langhost, "bin/pulumi-language-nodejs"));
        expect(bin(dirs.provider, "pulumi-resource-kubernetes")).toBe("fake provider x");
        expect(bin(dirs.etcd, "etcd")).toBe("fake etcd x");
        expect(bin(dirs.kwok, "kwok")).toBe("fake kwok x");
        for (const b of KUBE_BINS) expect(bin(dirs.kube, b)).toBe(`fake ${b} x`);
        expect(r.stderr).toMatch(new RegExp(`verified ${pulumiTgz.replace(/\./g, "\\.")} \\(sha256 published\\)`));
        expect(r.stderr).toMatch(/verified kwok-linux-\w+ \(sha256 pinned\)/);
        expect(requests.filter((u) => u.endsWith(pulumiTgz))).toHaveLength(1); // one tarball for pulumi and its language host
        expect(fs.readdirSync(cache).filter((f) => f.startsWith(".download"))).toEqual([]);
        expect(goCalls()).toBe("");
    });

    it("auto with every tool cached: no curl at all (a fake curl on PATH would fail loudly)", async () => {
        const mark = path.join(tmp, "curl-called");
        const curlBin = path.join(tmp, "curlbin");
        fs.mkdirSync(curlBin, { recursive: true });
        fs.writeFileSync(path.join(curlBin, "curl"), `#!/bin/sh\necho "curl must not run: $*" >&2\ntouch ${mark}\nexit 97\n`, { mode: 0o755 });
        const before = requests.length;
        const r = await toolchain(cacheAll.dir, ["--env"], { COT_SIM_DOWNLOAD: undefined }, [curlBin]);
        expect(r.code).toBe(0);
        expect(fs.existsSync(mark)).toBe(false);
        expect(requests.length).toBe(before);
        expect(r.stdout).toContain(path.join(cacheAll.dir, `pulumi-resource-kubernetes-${PROVIDER}`, "bin"));
        expect(r.stderr).toBe("");
    });

    it("always: a checksum mismatch refuses the file (deleted, no .ok, nonzero exit)", async () => {
        const good = fs.readFileSync(path.join(www, etcdRel, `${etcdName}.tar.gz`));
        etcdTarball(script("etcd-tampered"));
        try {
            const cache = newCache();
            const r = await toolchain(cache, ["--only", "etcd"], { COT_SIM_DOWNLOAD: "always" });
            expect(r.code).not.toBe(0);
            expect(r.stderr).toMatch(new RegExp(`refused ${etcdName}\\.tar\\.gz: sha256 [0-9a-f]{64} does not match the published [0-9a-f]{64}`));
            expect(r.stderr).toMatch(/ERROR: etcd: COT_SIM_DOWNLOAD=always and the download failed/);
            expect(fs.existsSync(path.join(cache, `etcd-${ETCD}`, ".ok"))).toBe(false);
            expect(fs.existsSync(path.join(cache, `etcd-${ETCD}`, "bin"))).toBe(false);
            expect(goCalls()).toBe("");
        } finally {
            fs.writeFileSync(path.join(www, etcdRel, `${etcdName}.tar.gz`), good);
        }
    });

    it("always: a pin in versions.env that differs refuses a file even when it matches the published sum", async () => {
        const cache = newCache();
        const r = await toolchain(cache, ["--only", "etcd"], { COT_SIM_DOWNLOAD: "1", [`SHA256_${etcdName.replace(/[^A-Za-z0-9]/g, "_")}_tar_gz`]: "f".repeat(64) });
        expect(r.code).not.toBe(0);
        expect(r.stderr).toMatch(new RegExp(`refused ${etcdName}\\.tar\\.gz: sha256 [0-9a-f]{64} does not match the pinned f{64} / the published`));
        expect(fs.existsSync(path.join(cache, `etcd-${ETCD}`, ".ok"))).toBe(false);
    });

    it("always: no published checksum and no pin refuses the file (kwok)", async () => {
        const cache = newCache();
        const r = await toolchain(cache, ["--only", "kwok"], { COT_SIM_DOWNLOAD: "always", [`SHA256_kwok_${KWOK.replace(/[^A-Za-z0-9]/g, "_")}_linux_${ARCH}`]: "" });
        expect(r.code).not.toBe(0);
        expect(r.stderr).toMatch(new RegExp(`refused kwok-linux-${ARCH}: no published checksum and no SHA256_kwok_\\w+ in versions.env`));
        expect(fs.existsSync(path.join(cache, `kwok-${KWOK}`, ".ok"))).toBe(false);
    });

    it("auto: a checksum mismatch falls back to building (the fake go), logged", async () => {
        const good = fs.readFileSync(path.join(www, etcdRel, `${etcdName}.tar.gz`));
        etcdTarball(script("etcd-tampered"));
        fs.rmSync(goLog, { force: true });
        try {
            const cache = newCache();
            const r = await toolchain(cache, ["--only", "etcd"], {});
            expect(r.code).toBe(0);
            expect(r.stderr).toMatch(new RegExp(`refused ${etcdName}\\.tar\\.gz`));
            expect(r.stderr).toMatch(/etcd: download failed, falling back to building from the Go module proxy/);
            const d = path.join(cache, `etcd-${ETCD}`);
            expect(read(path.join(d, ".source")).trim()).toBe("build");
            expect(read(path.join(d, "bin/etcd"))).toContain("built by fake go");
            expect(goCalls()).toMatch(/go build .*-o .*etcd/);
        } finally {
            fs.writeFileSync(path.join(www, etcdRel, `${etcdName}.tar.gz`), good);
        }
    });

    it("auto without network: builds, and tries no further download after the first cannot connect", async () => {
        const closed = http.createServer();
        await new Promise<void>((r) => closed.listen(0, "127.0.0.1", () => r()));
        const port = (closed.address() as { port: number }).port;
        await new Promise<void>((r) => closed.close(() => r()));
        const dead = `http://127.0.0.1:${port}`;
        fs.rmSync(goLog, { force: true });
        const cache = newCache();
        const r = await toolchain(cache, ["--only", "etcd,kwok"], { COT_SIM_GITHUB_BASE: dead, COT_SIM_PULUMI_BASE: dead, COT_SIM_K8S_BASE: dead });
        expect(r.code).toBe(0);
        expect(r.stderr).toMatch(/download failed \(curl exit 7\)/);
        expect(r.stderr).toMatch(/kwok: not downloading \(an earlier download found no network\)/);
        for (const d of [`etcd-${ETCD}`, `kwok-${KWOK}`]) expect(read(path.join(cache, d, ".source")).trim()).toBe("build");
    });

    it("never: builds without a single request", async () => {
        const before = requests.length;
        fs.rmSync(goLog, { force: true });
        const cache = newCache();
        const r = await toolchain(cache, ["--only", "etcd"], { COT_SIM_DOWNLOAD: "0" });
        expect(r.code).toBe(0);
        expect(requests.length).toBe(before);
        expect(goCalls()).toMatch(/go build/);
        expect(r.stderr).not.toMatch(/download/);
    });

    it("rejects an unknown COT_SIM_DOWNLOAD", async () => {
        const r = await toolchain(newCache(), ["--only", "etcd"], { COT_SIM_DOWNLOAD: "maybe" });
        expect(r.code).not.toBe(0);
        expect(r.stderr).toMatch(/COT_SIM_DOWNLOAD=maybe: use auto, always \(1\) or never \(0\)/);
    });
});
