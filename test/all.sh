#!/usr/bin/env bash
# The README's test command (`npm test`): every tier, in order of speed.
#   1. type check + unit tests (vitest, Pulumi mocks)
#   2. manifests: kubeconform (strict, Kubernetes 1.34 schemas) and checkov on every shipped stack's render
#   3. images and upstream checks (pytest against torchtune, synthetic-data-kit, lm-eval from PyPI)
#   4. end-to-end: real Pulumi engine + Kubernetes provider against a local control plane with kwok MI300X nodes
#   5. pods: the programs in real containers (the project's images, CPU twins) on a real kubelet
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== type check"
npx tsc --noEmit -p .

echo "== unit tests"
npx vitest run

echo "== generated docs"
npx tsx scripts/config-docs.ts --check

for tier in manifests python e2e pods; do
    if [ -f "test/$tier/run.sh" ]; then
        echo "== $tier tests"
        bash "test/$tier/run.sh"
    fi
done
