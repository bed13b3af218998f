"""Judges checkov's findings on the rendered stacks against the skip list.

    python findings.py CHECKOV_JSON RENDER_ROOT --stacks a,b,c --skip skip-list.txt [--list]

RENDER_ROOT holds one folder per stack (what `npm run render -- --out RENDER_ROOT/<stack>` writes: one
object per file). A finding is (check id, object), the object named `<stack>/<Kind>/<stage>/<name>`,
where <stage> is the object's stage label (`-` if none). Each list line is

    CHECK_ID  PATTERN[,PATTERN...]  reason (required)

with shell-style patterns over that name. Exit status 1 when a finding matches no line (a new
finding), or when a pattern matches no finding (a stale entry: the check passes now, drop the line),
so the list stays exactly as long as it must be. --list prints every finding and its verdict.
"""
import argparse
import fnmatch
import functools
import json
import os
import sys
from dataclasses import dataclass, field

import yaml

# The run's vocabulary (label keys): images/common/cotvr_contract.py, the twin of contract.ts.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "images", "common"))
from cotvr_contract import LABEL_STAGE  # noqa: E402


@dataclass
class Entry:
    source: str  # file:line
    check: str
    patterns: list
    reason: str
    used: set = field(default_factory=set)  # indexes of patterns that matched a finding


def read_list(path: str) -> list:
    entries = []
    with open(path) as f:
        for n, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(None, 2)
            where = f"{os.path.basename(path)}:{n}"
            if len(parts) < 3 or not parts[0].startswith("CKV"):
                sys.exit(f"{where}: expected 'CHECK_ID PATTERN[,PATTERN...] reason', got: {raw.rstrip()}")
            entries.append(Entry(where, parts[0], parts[1].split(","), parts[2]))
    return entries


@functools.lru_cache(maxsize=None)  # a file has a finding per failed check: parse it once
def object_name(root: str, rel_path: str) -> str:
    """`<stack>/<Kind>/<stage>/<name>` of the object in a rendered file."""
    # checkov's file_path is `/` + the path relative to its working directory (run.sh runs it in root).
    path = os.path.join(root, rel_path.lstrip("/"))
    if not os.path.exists(path):
        path = os.path.abspath(rel_path.lstrip("/"))
    with open(path) as f:
        obj = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    meta = obj.get("metadata") or {}
    stack = os.path.relpath(path, os.path.abspath(root)).split(os.sep)[0]
    return f"{stack}/{obj['kind']}/{(meta.get('labels') or {}).get(LABEL_STAGE, '-')}/{meta.get('name', '-')}"


def checkov_reports(path: str) -> list:
    with open(path) as f:
        data = json.load(f)
    # One framework gives an object; several give a list. An empty scan gives a summary without results.
    return data if isinstance(data, list) else [data]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkov_json")
    ap.add_argument("render_root")
    ap.add_argument("--stacks", required=True, help="comma-separated stack folders to judge")
    ap.add_argument("--skip", required=True)
    ap.add_argument("--list", action="store_true", help="print every finding with its verdict")
    a = ap.parse_args()

    stacks = set(a.stacks.split(","))
    skip = read_list(a.skip)
    findings = []  # (check, object, check name)
    for report in checkov_reports(a.checkov_json):
        if report.get("check_type", "kubernetes") != "kubernetes":
            continue
        for r in report.get("results", {}).get("failed_checks", []):
            obj = object_name(a.render_root, r["file_path"])
            if obj.split("/", 1)[0] in stacks:
                findings.append((r["check_id"], obj, r["check_name"]))
    findings = sorted(set(findings))

    new, skipped = [], 0
    for check, obj, name in findings:
        verdict = None
        for e in skip:
            if e.check != check:
                continue
            hits = [i for i, p in enumerate(e.patterns) if fnmatch.fnmatchcase(obj, p)]
            if hits:
                e.used.update(hits)
                verdict = verdict or f"skip ({e.source})"
        if verdict is None:
            new.append((check, obj, name))
        else:
            skipped += 1
        if a.list:
            print(f"{check:12} {obj:60} {verdict or 'NEW'}  # {name}")

    stale = [(e, p) for e in skip for i, p in enumerate(e.patterns) if i not in e.used]
    for check, obj, name in new:
        print(f"NEW finding: {check} on {obj}: {name}")
    for e, p in stale:
        print(f"STALE entry {e.source}: {e.check} {p} matches no finding any more: remove it")
    print(f"checkov: {len(findings)} findings on stacks {','.join(sorted(stacks))}: "
          f"{skipped} in the skip list, {len(new)} new; {len(stale)} stale entries")
    return 1 if new or stale else 0


if __name__ == "__main__":
    sys.exit(main())
