// The stack output `report`: the report's headline numbers, read from the ConfigMap `<run>-report` at
// the end of each `pulumi up` through @kubernetes/client-node, inside an apply on the report Job (whose
// outputs resolve once the provider has awaited it). No resource is registered for the read: a read
// resource (`ConfigMap.get`) is refreshed like any other, and showed a diff on every `pulumi refresh`
// once the report had written its record. So every `up` recomputes the output, `refresh` never touches
// it, and `preview` reads nothing and leaves it unknown. A read that fails gives a pending output
// with the reason, never a failed update.
import * as pulumi from "@pulumi/pulumi";
import type * as K8s from "@kubernetes/client-node";
import { Settings } from "../config";
import { headlineConfigMapName, pendingReport, ReportObservation, reportOutput, ReportOutput } from "../components/report";
import { CliError, unreachableCluster } from "./cli";
import { KubeTarget, loadKubeConfig } from "./kubeconfig";

/** How long the read may take: a cluster that hangs must not hold up the end of `pulumi up`. */
export const READ_TIMEOUT_MS = 30_000;

/** Where the report's results are, and the cluster the provider talks to. */
export interface ReportTarget extends KubeTarget {
    readonly stack: string;
    readonly namespace: string;
    readonly job: string;
    readonly configMap: string;
}

export function reportTarget(s: Settings, job: string): ReportTarget {
    return {
        stack: s.stack, namespace: s.cluster.namespace, job, configMap: headlineConfigMapName(s),
        kubeconfig: s.cluster.kubeconfig, context: s.cluster.context,
    };
}

/** The HTTP status of a client-node ApiException. */
function httpStatus(e: unknown): number | undefined {
    const c = (e as { code?: unknown })?.code;
    return typeof c === "number" ? c : undefined;
}

type JobLike = { status?: { conditions?: { type: string; status: string }[] } };
const condition = (j: JobLike, type: string) => (j.status?.conditions ?? []).some((c) => c.type === type && c.status === "True");

/** The report Job's state and the ConfigMap's data, as the API server has them (null: not found). */
export async function observeReport(t: ReportTarget): Promise<ReportObservation> {
    // Loaded here, not at the top: an ES module, which only a real `up` needs.
    const k8s = await import("@kubernetes/client-node");
    const kc = loadKubeConfig(k8s, t);
    const orNull = (e: unknown) => (httpStatus(e) === 404 ? null : Promise.reject(e));
    const job: JobLike | null = await kc.makeApiClient(k8s.BatchV1Api).readNamespacedJob({ name: t.job, namespace: t.namespace }).catch(orNull);
    const cm: K8s.V1ConfigMap | null = await kc.makeApiClient(k8s.CoreV1Api).readNamespacedConfigMap({ name: t.configMap, namespace: t.namespace }).catch(orNull);
    return {
        job: job === null ? null : condition(job, "Complete") ? "complete" : condition(job, "Failed") ? "failed" : "running",
        data: cm === null ? null : cm.data ?? {},
    };
}

/**
 * Why a read failed, in words that never carry a credential: an HTTP status, a network error code or
 * one of our own messages; anything else by its name only (a kubeconfig given as contents could
 * appear in a parser's message). `npm run status` reads the same cluster and prints the whole error.
 */
export function readFailure(e: unknown, stack: string): string {
    const status = httpStatus(e);
    if (status === 401 || status === 403) return `the API server refused the read (${status}): the kubeconfig's user needs get on jobs and configmaps`;
    if (status !== undefined) return `the API server answered ${status}`;
    const unreachable = unreachableCluster(e);
    if (unreachable) return unreachable.message;
    if (e instanceof CliError) return e.message;
    const name = e instanceof Error ? e.name : typeof e;
    return `${name} (npm run status -- --stack ${stack} reads the same cluster and prints it)`;
}

class ReadTimeout extends CliError {}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new ReadTimeout(`no answer from the API server within ${ms / 1000}s`)), ms);
        timer.unref();
    });
    return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/**
 * The stack output `report`. `job` is the report's Job resource and `jobName` its name; without them
 * (stages.report off) the output says so. `observe` is the cluster read (tests replace it).
 */
export function reportStackOutput(
    s: Settings,
    job: pulumi.CustomResource | undefined,
    jobName: string | undefined,
    observe: (t: ReportTarget) => Promise<ReportObservation> = observeReport,
    timeoutMs = READ_TIMEOUT_MS,
): pulumi.Output<ReportOutput> {
    if (!job || !jobName) return pulumi.output(pendingReport("stages.report is off in this stack"));
    const t = reportTarget(s, jobName);
    // The Job's id resolves after the provider has awaited the Job (or submitted it, with timing.report.await false).
    return job.id.apply(async (): Promise<ReportOutput> => {
        // Unknown in a preview: it reads nothing, and shows no change from the value the last `up` left.
        if (pulumi.runtime.isDryRun()) return pulumi.unknown as unknown as ReportOutput;
        try {
            return reportOutput(await withTimeout(observe(t), timeoutMs), t);
        } catch (e) {
            const reason = `could not read the report: ${readFailure(e, s.stack)}`;
            pulumi.log.warn(`stack output report: ${reason}`);
            return { status: "pending", job: jobName, reason };
        }
    });
}
