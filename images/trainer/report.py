#!/usr/bin/env python3
"""Build the experiment report: exact_match per variant (the blog's Figure 2), the headline
ratio (tuned 11B / base 90B; the blog claims 2.3x) and the GPU time of every stage.

Inputs: the spec the Pulumi program renders (`/etc/cotvr/report.json`:
`{run, namespace, jobSelector, gpuResource, tasks, metric, variants: [{name, size, tuned}],
headline: {numerator, denominator} | null}`), one evaluate.py JSON per variant in
`--eval-dir` (`<variant>.json`), and the run's Jobs read from the Kubernetes API with the
pod's service account token over plain HTTPS (no client library).

Outputs in `--out`: report.json, report.md, exact_match.png, gpu_timeline.png (the GPU Jobs and the
teacher's serving intervals from `--teacher-record`, as a Gantt chart) (each written tmp + rename);
the Markdown is also printed to stdout. With `--headline-configmap NAME`, the headline record (metric
per model, ratio, GPU-hours, cost) is patched into that ConfigMap's `headline.json` (the Pulumi program
creates it empty and reads it back into the stack outputs); with the notification webhook set
(cotvr_common.notify), the same numbers are posted.

Exit codes: 0 ok, 1 the headline ConfigMap could not be written (retried by the Job), 2 bad
arguments, 3 missing input (spec or an expected eval JSON), 5 malformed metrics.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import math
import sys
import urllib.error
import urllib.parse
from pathlib import Path
from typing import Any, Mapping, Sequence

_HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(p) for p in (_HERE, _HERE.parent / "common") if (p / "cotvr_common.py").is_file()]
from cotvr_common import (  # noqa: E402
    EXIT_BAD_ARGS,
    EXIT_FAILED,
    EXIT_MISSING_INPUT,
    EXIT_NO_METRICS,
    EXIT_OK,
    CotvrError,
    KubeApi,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    LABEL_RUN,
    LABEL_STAGE,
    LABEL_VARIANT,
    load_json_file,
    log,
    notify,
    run_main,
    selector,
    utc_now,
)

STAGE_LABEL = LABEL_STAGE
VARIANT_LABEL = LABEL_VARIANT
METRIC_COLUMNS = ("exact_match", "relaxed_accuracy", "anywhere_accuracy")
# Key of the headline record in the headline ConfigMap (components/report.ts HEADLINE_KEY).
HEADLINE_KEY = "headline.json"


# ---------------------------------------------------------------- spec and metrics


def load_spec(path: Path) -> dict[str, Any]:
    spec = load_json_file(path, "report spec", EXIT_BAD_ARGS)
    if not isinstance(spec, dict):
        raise CotvrError(f"report spec {path} must be a JSON object", EXIT_BAD_ARGS)
    variants = spec.get("variants")
    if not isinstance(variants, list) or not variants:
        raise CotvrError(f"report spec {path} lists no variants", EXIT_BAD_ARGS)
    for v in variants:
        if not isinstance(v, dict) or not isinstance(v.get("name"), str):
            raise CotvrError(f"report spec {path}: every variant needs a name: {v!r}", EXIT_BAD_ARGS)
    spec.setdefault("metric", "exact_match")
    spec.setdefault("tasks", ["chartqa"])
    return spec


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        return None
    return float(value)


def load_eval(path: Path, task: str, metric: str) -> dict[str, Any]:
    """One evaluate.py JSON, checked: raises CotvrError(3) if absent, (5) if malformed."""
    if not path.is_file():
        raise CotvrError(f"evaluation result missing: {path}", EXIT_MISSING_INPUT)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise CotvrError(f"{path} is not valid JSON: {err}", EXIT_NO_METRICS) from err
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, dict) or not isinstance(results.get(task), dict):
        raise CotvrError(f"{path} has no results for task '{task}'", EXIT_NO_METRICS)
    values = results[task]
    if _num(values.get(metric)) is None:
        raise CotvrError(f"{path}: results.{task}.{metric} is missing or not a number: {values.get(metric)!r}", EXIT_NO_METRICS)
    return data


# ---------------------------------------------------------------- Kubernetes Jobs


def _parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
    except ValueError:
        return None


def _parse_quantity(value: Any) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return 0.0


def fetch_jobs(kube: KubeApi, namespace: str, selector: str) -> list[dict[str, Any]]:
    query = urllib.parse.urlencode({"labelSelector": selector}) if selector else ""
    body = kube.request("GET", f"/apis/batch/v1/namespaces/{urllib.parse.quote(namespace)}/jobs" + (f"?{query}" if query else ""))
    items = (body or {}).get("items", [])
    return [item for item in items if isinstance(item, dict)]


def job_timings(jobs: Sequence[Mapping[str, Any]], gpu_resource: str, now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Per Job: stage, variant, start, completion, wall seconds, GPUs, GPU hours."""
    now = now or dt.datetime.now(dt.timezone.utc)
    rows = []
    for job in jobs:
        meta = job.get("metadata") or {}
        labels = meta.get("labels") or {}
        status = job.get("status") or {}
        spec = ((job.get("spec") or {}).get("template") or {}).get("spec") or {}
        gpus = 0.0
        for container in spec.get("containers") or []:
            resources = container.get("resources") or {}
            amount = (resources.get("limits") or {}).get(gpu_resource) or (resources.get("requests") or {}).get(gpu_resource)
            gpus += _parse_quantity(amount) if amount is not None else 0.0
        start = _parse_time(status.get("startTime"))
        end = _parse_time(status.get("completionTime"))
        state = "complete" if end else ("failed" if status.get("failed") and not status.get("active") else "running")
        if end is None and state == "failed":
            # A failed Job has no completionTime; its Failed condition carries the time.
            for cond in status.get("conditions") or []:
                if cond.get("type") == "Failed" and cond.get("status") == "True":
                    end = _parse_time(cond.get("lastTransitionTime"))
        seconds = None
        if start is not None:
            seconds = max(0.0, ((end or now) - start).total_seconds())
        rows.append(
            {
                "job": meta.get("name"),
                "stage": labels.get(STAGE_LABEL, "unknown"),
                "variant": labels.get(VARIANT_LABEL),
                "status": state,
                "start": status.get("startTime"),
                "completion": status.get("completionTime"),
                "seconds": seconds,
                "gpus": gpus,
                "gpu_hours": round(seconds * gpus / 3600.0, 3) if seconds is not None else None,
            }
        )
    rows.sort(key=lambda r: (r["start"] or "", r["job"] or ""))
    return rows


def teacher_rows(record: Path, gpus: float, now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """The teacher's serving intervals from the generation's scale events (teacher_scale.py): each
    scale to >= 1 replica opens one, the next scale to 0 closes it; one still open runs to now.
    `gpus` is one pod's: an interval holds gpus x the replicas it was scaled to."""
    now = now or dt.datetime.now(dt.timezone.utc)
    if not record.is_file():
        return []
    rows: list[dict[str, Any]] = []
    opened: str | None = None
    replicas = 1

    def close(start: str, end: str | None) -> None:
        t0, t1 = _parse_time(start), _parse_time(end) if end else now
        seconds = max(0.0, (t1 - t0).total_seconds()) if t0 and t1 else None
        rows.append({
            "job": "teacher", "stage": "teacher", "variant": None, "status": "complete" if end else "running",
            "start": start, "completion": end, "seconds": seconds, "gpus": gpus * replicas,
            "gpu_hours": round(seconds * gpus * replicas / 3600.0, 3) if seconds is not None else None,
        })

    for line in record.read_text(encoding="utf-8").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a torn last line of a killed pod
        if not isinstance(event, dict) or event.get("event") != "scaled":
            continue
        if int(event.get("replicas") or 0) >= 1 and opened is None:
            opened, replicas = str(event.get("at")), int(event.get("replicas"))
        elif int(event.get("replicas") or 0) == 0 and opened is not None:
            close(opened, str(event.get("at")))
            opened = None
    if opened is not None:
        close(opened, None)
    return rows


def stage_totals(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    totals: dict[str, dict[str, float]] = {}
    for row in rows:
        entry = totals.setdefault(row["stage"], {"seconds": 0.0, "gpu_hours": 0.0, "jobs": 0})
        entry["jobs"] += 1
        entry["seconds"] += row["seconds"] or 0.0
        entry["gpu_hours"] = round(entry["gpu_hours"] + (row["gpu_hours"] or 0.0), 3)
    return totals


# ---------------------------------------------------------------- rendering


def _fmt(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _hours(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds / 3600.0:.2f}"


def render_markdown(report: Mapping[str, Any]) -> str:
    task, metric = report["task"], report["metric"]
    lines = [f"# Report: run `{report['run']}` ({task}, {metric})", ""]
    lines.append(f"| variant | size | tuned | {' | '.join(METRIC_COLUMNS)} | samples |")
    lines.append("|---|---|---|" + "---:|" * (len(METRIC_COLUMNS) + 1))
    for row in report["variants"]:
        cells = []
        for name in METRIC_COLUMNS:
            value, err = row["metrics"].get(name), row["metrics"].get(f"{name}_stderr")
            cells.append(_fmt(value) + (f" ± {err:.4f}" if err is not None and value is not None else ""))
        lines.append(
            f"| {row['name']} | {row.get('size') or ''} | {'yes' if row.get('tuned') else 'no'} | "
            + " | ".join(cells)
            + f" | {row.get('samples') if row.get('samples') is not None else 'n/a'} |"
        )
    headline = report.get("headline")
    lines.append("")
    if headline and headline.get("ratio") is not None:
        lines.append(
            f"**Headline:** {headline['numerator']} / {headline['denominator']} {metric} = "
            f"{headline['numerator_value']:.4f} / {headline['denominator_value']:.4f} = **{headline['ratio']:.2f}x** "
            "(the blog reports 2.3x)"
        )
    elif headline:
        lines.append(f"**Headline:** {headline['numerator']} / {headline['denominator']}: n/a ({headline.get('note')})")
    if report.get("stages"):
        lines += ["", "| stage | jobs | wall hours | GPU hours |", "|---|---:|---:|---:|"]
        for stage, total in report["stages"].items():
            lines.append(f"| {stage} | {int(total['jobs'])} | {_hours(total['seconds'])} | {total['gpu_hours']:.2f} |")
        lines.append(f"| **total** | | | **{report['total_gpu_hours']:.2f}** |")
        if report.get("cost"):
            lines.append(f"\nGPU cost: **{report['cost']['amount']:.2f} {report['cost']['currency']}** "
                         f"({report['total_gpu_hours']:.2f} GPU-hours at the stack's cluster.gpuHourPrice)")
    for warning in report.get("warnings", []):
        lines.append(f"\n> warning: {warning}")
    return "\n".join(lines) + "\n"


STAGE_COLOURS = {"teacher": "#9467bd", "train": "#d62728", "sample": "#2ca02c", "evaluate": "#1f77b4", "benchmark": "#ff7f0e"}


def render_timeline(report: Mapping[str, Any]) -> bytes | None:
    """A Gantt chart of the run's GPU time: one row per GPU Job (and the teacher's serving
    intervals), coloured by stage. None when no GPU time is known."""
    rows = [r for r in report.get("jobs") or [] if r.get("gpus") and r.get("start") and r.get("seconds") is not None]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = min(_parse_time(r["start"]) for r in rows)
    fig, ax = plt.subplots(figsize=(10.0, 0.45 * len(rows) + 1.5), dpi=120)
    for i, r in enumerate(rows):
        start_h = (_parse_time(r["start"]) - t0).total_seconds() / 3600.0
        ax.broken_barh([(start_h, r["seconds"] / 3600.0)], (i - 0.4, 0.8), color=STAGE_COLOURS.get(r["stage"], "#7f7f7f"))
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{r['stage']} {r.get('variant') or ''} ({r['gpus']:g} GPU)".strip() for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("hours since the first GPU pod started")
    total = report.get("total_gpu_hours")
    ax.set_title(f"GPU timeline of run {report['run']}" + (f": {total:.1f} GPU-hours" if total is not None else ""))
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def render_chart(report: Mapping[str, Any]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [row["name"] for row in report["variants"]]
    values = [row["metrics"].get(report["metric"]) or 0.0 for row in report["variants"]]
    errors = [row["metrics"].get(f"{report['metric']}_stderr") or 0.0 for row in report["variants"]]
    colors = ["#d62728" if row.get("tuned") else "#7f7f7f" for row in report["variants"]]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.6 * len(names)), 4.0), dpi=120)
    bars = ax.bar(names, values, yerr=errors, color=colors, capsize=4)
    for bar, value in zip(bars, values):
        ax.annotate(f"{value:.3f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=9)
    ax.set_ylabel(f"{report['metric']} ({report['task']})")
    ax.set_ylim(0, max(1e-6, max(values) * 1.25 if values else 1.0))
    ax.set_title(f"ChartQA {report['metric']} per model (grey: base, red: fine-tuned)")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


# ---------------------------------------------------------------- main


def build_report(spec: Mapping[str, Any], eval_dir: Path, run: str, jobs: Sequence[Mapping[str, Any]] | None, warnings: list[str],
                 teacher: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    task = str(spec["tasks"][0])
    metric = str(spec["metric"])
    rows = []
    for variant in spec["variants"]:
        data = load_eval(eval_dir / f"{variant['name']}.json", task, metric)
        values = data["results"][task]
        metrics = {k: _num(v) for k, v in values.items()}
        samples = (data.get("n_samples") or {}).get(task)
        if isinstance(samples, dict):
            samples = samples.get("effective", samples.get("original"))
        rows.append(
            {
                "name": variant["name"],
                "size": variant.get("size"),
                "tuned": bool(variant.get("tuned")),
                "metrics": metrics,
                "samples": samples,
                "limit": data.get("limit"),
                "checkpoint_dir": data.get("checkpoint_dir"),
                "evaluated_at": data.get("evaluated_at"),
            }
        )
    limits = {row["limit"] for row in rows}
    if len(limits) > 1:
        warnings.append(f"variants were evaluated with different limits {sorted(map(str, limits))}: not comparable")

    headline = None
    pair = spec.get("headline")
    if isinstance(pair, Mapping) and pair.get("numerator") and pair.get("denominator"):
        by_name = {row["name"]: row for row in rows}
        num, den = by_name.get(pair["numerator"]), by_name.get(pair["denominator"])
        headline = {"numerator": pair["numerator"], "denominator": pair["denominator"], "ratio": None}
        if num is None or den is None:
            headline["note"] = "variant not evaluated"
        else:
            headline["numerator_value"] = num["metrics"][metric]
            headline["denominator_value"] = den["metrics"][metric]
            if den["metrics"][metric]:
                headline["ratio"] = round(num["metrics"][metric] / den["metrics"][metric], 4)
            else:
                headline["note"] = f"{pair['denominator']} scored 0"

    report: dict[str, Any] = {
        "run": run,
        "namespace": spec.get("namespace"),
        "task": task,
        "metric": metric,
        "generated_at": utc_now(),
        "variants": rows,
        "headline": headline,
        "jobs": [],
        "stages": {},
        "total_gpu_hours": None,
        "warnings": warnings,
    }
    if jobs is not None:
        # The teacher's serving time is GPU time too (a Deployment, not a Job: recorded by the generation).
        timings = sorted([*job_timings(jobs, str(spec.get("gpuResource") or "amd.com/gpu")), *teacher],
                         key=lambda r: (r["start"] or "", r["job"] or ""))
        report["jobs"] = timings
        report["stages"] = stage_totals(timings)
        report["total_gpu_hours"] = round(sum(t["gpu_hours"] for t in report["stages"].values()), 3)
        price = spec.get("gpuHourPrice")
        if isinstance(price, Mapping) and price.get("amount") is not None:
            report["cost"] = {"amount": round(report["total_gpu_hours"] * float(price["amount"]), 2), "currency": price.get("currency")}
    return report


# ---------------------------------------------------------------- headline record


def headline_record(report: Mapping[str, Any]) -> dict[str, Any]:
    """The numbers a user wants first (components/report.ts HeadlineRecord): metric per model, the
    headline ratio, GPU-hours and cost. Small: it goes to a ConfigMap and a chat message."""
    metric = report["metric"]
    head = report.get("headline")
    return {
        "run": report["run"],
        "task": report["task"],
        "metric": metric,
        "scores": {row["name"]: row["metrics"].get(metric) for row in report["variants"]},
        "headline": {k: head.get(k) for k in ("numerator", "denominator", "ratio")} if head else None,
        "gpuHours": report.get("total_gpu_hours"),
        "cost": report.get("cost"),
        "generatedAt": report["generated_at"],
    }


def headline_text(rec: Mapping[str, Any]) -> str:
    """One message: `cot-vr run blog: chartqa exact_match base-11b 0.1000, ...; lora-11b / base-90b = 2.30x; ...`."""
    scores = ", ".join(f"{name} {_fmt(value)}" for name, value in rec["scores"].items())
    parts = [f"cot-vr run {rec['run']} report: {rec['task']} {rec['metric']} {scores}"]
    head = rec.get("headline")
    if head:
        ratio = head.get("ratio")
        parts.append(f"{head['numerator']} / {head['denominator']} = " + (f"{ratio:.2f}x (the blog: 2.3x)" if ratio is not None else "n/a"))
    if rec.get("gpuHours") is not None:
        cost = rec.get("cost")
        parts.append(f"{rec['gpuHours']:.2f} GPU-hours" + (f", {cost['amount']:.2f} {cost['currency']}" if cost else ""))
    return "; ".join(parts)


def write_headline_configmap(kube: KubeApi, namespace: str, name: str, rec: Mapping[str, Any]) -> None:
    """Merge-patch the record into the ConfigMap the Pulumi program created (the report's Role may
    patch that one ConfigMap, nothing else)."""
    path = f"/api/v1/namespaces/{urllib.parse.quote(namespace)}/configmaps/{urllib.parse.quote(name)}"
    body = {"data": {HEADLINE_KEY: json.dumps(rec, sort_keys=True)}}
    kube.request("PATCH", path, body, content_type="application/merge-patch+json")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="report.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--eval-dir", required=True, type=Path)
    parser.add_argument("--spec", required=True, type=Path, help="report spec JSON rendered by the Pulumi program")
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--run", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--api", default=None, help="Kubernetes API URL (default: in-cluster)")
    parser.add_argument("--token-file", type=Path, default=None)
    parser.add_argument("--ca-file", default=None)
    parser.add_argument("--no-jobs", action="store_true", help="skip reading Jobs (no GPU time in the report)")
    parser.add_argument("--teacher-record", type=Path, default=None, help="the generation's teacher scale events (its GPU time)")
    parser.add_argument("--headline-configmap", default=None, help="ConfigMap (in --namespace) to patch with the headline record")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    spec = load_spec(args.spec)
    if not args.eval_dir.is_dir():
        raise CotvrError(f"evaluation folder missing: {args.eval_dir}", EXIT_MISSING_INPUT)
    warnings: list[str] = []

    jobs: list[dict[str, Any]] | None = None
    found = KubeApi.in_cluster()
    api = args.api or (found.api if found else None)
    token = args.token_file.read_text(encoding="utf-8").strip() if args.token_file else (found.token if found else None)
    ca_file = args.ca_file or (found.ca_file if found else None)
    kube = KubeApi(api, token, ca_file) if api else None
    if not args.no_jobs:
        job_selector = str(spec.get("jobSelector") or selector({LABEL_RUN: args.run}))
        if kube is None:
            warnings.append("not running in a cluster and no --api given: GPU time not reported")
        else:
            try:
                jobs = fetch_jobs(kube, args.namespace, job_selector)
                log(f"read {len(jobs)} Jobs ({job_selector}) from {api}")
            except (urllib.error.URLError, OSError, ValueError) as err:
                warnings.append(f"could not read Jobs from {api}: {err}; GPU time not reported")
    for warning in warnings:
        log(f"warning: {warning}")

    teacher = teacher_rows(args.teacher_record, float(spec.get("teacherGpus") or 1)) if args.teacher_record else []
    report = build_report(spec, args.eval_dir, args.run, jobs, warnings, teacher)
    markdown = render_markdown(report)
    png = render_chart(report)
    timeline = render_timeline(report)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(args.out / "exact_match.png", png)
    if timeline is not None:
        atomic_write_bytes(args.out / "gpu_timeline.png", timeline)
    atomic_write_text(args.out / "report.md", markdown)
    atomic_write_json(args.out / "report.json", report)  # last: its presence means the set is complete
    print(markdown, flush=True)
    record = headline_record(report)
    if args.headline_configmap:
        # The stack outputs read this ConfigMap: a failed write must not leave the last run's numbers there
        # unnoticed, so it fails the Job (exit 1: retried) instead of warning.
        if kube is None:
            raise CotvrError(f"cannot write ConfigMap {args.headline_configmap}: not running in a cluster and no --api given", EXIT_FAILED)
        try:
            write_headline_configmap(kube, args.namespace, args.headline_configmap, record)
        except (urllib.error.URLError, OSError, ValueError) as err:
            raise CotvrError(f"cannot write ConfigMap {args.namespace}/{args.headline_configmap}: {err} "
                             f"(the report files are written in {args.out})", EXIT_FAILED) from err
        log(f"headline record written to ConfigMap {args.namespace}/{args.headline_configmap}")
    text = headline_text(record)
    notify(text, [{"type": "section", "text": {"type": "mrkdwn", "text": text}}])
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(run_main("report.py", main))
