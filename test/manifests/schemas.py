"""Standalone strict Kubernetes JSON schemas for kubeconform, from the PyPI package kubernetes-validate.

kubernetes-validate ships `<version>-local-strict/<kind>-<group>-<version>.json` (additionalProperties
false everywhere), but every file refers to one shared `/api/_definitions.json`, which kubeconform
resolves against the schema's `$id` (https://kubernetes.io/...): a network fetch. This writes each
top-level kind's schema with the definitions it reaches copied into its own `$defs`, under the file
names kubeconform's default template expects (`{{ .ResourceKind }}{{ .KindSuffix }}.json`).

    python schemas.py <kubernetes version, e.g. 1.34.0> <output dir>
"""
import json
import os
import re
import sys

import kubernetes_validate

EXTERNAL = "/api/_definitions.json#/$defs/"
REF = re.compile(r'"\$ref": "(?:/api/_definitions\.json)?#/\$defs/([^"]+)"')


def main(version: str, out: str) -> int:
    src = os.path.join(os.path.dirname(kubernetes_validate.__file__), "kubernetes-json-schema", f"v{version}-local-strict")
    if not os.path.isdir(src):
        print(f"kubernetes-validate {kubernetes_validate.__version__ if hasattr(kubernetes_validate, '__version__') else ''} "
              f"has no strict schemas for Kubernetes {version} ({src})", file=sys.stderr)
        return 1
    with open(os.path.join(src, "_definitions.json")) as f:
        defs = json.load(f)["$defs"]
    # Definitions each definition refers to directly (text scan: refs sit anywhere in the tree).
    direct = {name: set(REF.findall(json.dumps(d))) for name, d in defs.items()}
    os.makedirs(out, exist_ok=True)
    written = 0
    for fname in sorted(os.listdir(src)):
        if fname.startswith("_") or not fname.endswith(".json") or fname == "all.json":
            continue
        with open(os.path.join(src, fname)) as f:
            schema = json.load(f)
        if "x-kubernetes-group-version-kind" not in schema:
            continue  # a sub-object (PodSpec, ...), never a document's kind
        text = json.dumps(schema)
        todo, seen = list(REF.findall(text)), set()
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo.extend(direct[name])
        schema = json.loads(text.replace(EXTERNAL, "#/$defs/"))
        schema.pop("$id", None)  # refs resolve inside the file, never against kubernetes.io
        schema["$defs"] = {n: defs[n] for n in sorted(seen)}
        with open(os.path.join(out, fname), "w") as f:
            json.dump(schema, f, separators=(",", ":"))
        written += 1
    print(f"{written} standalone strict schemas for Kubernetes {version} in {out}", file=sys.stderr)
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
