#!/usr/bin/env bash
# Validates deploy/ with the real tools, as no Docker engine or cluster runs here: renders the
# Kubernetes manifests with `kubectl kustomize` and checks them (and the example secrets)
# against the Kubernetes schemas with `kubernetes-validate --strict`; checks the Prometheus
# config and alert rules and runs the alerts' unit tests with `promtool`, and checks the
# Alertmanager config with `amtool`. The Pod Security "restricted" check of every rendered
# pod and the agreement of the files with the code are tests/deploy.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${BLUETICK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bluetick}"
VALIDATE="$CACHE/deploy-venv/bin/kubernetes-validate"
[ -x "$VALIDATE" ] || scripts/services.sh install

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
kubectl kustomize deploy/k8s >"$out/rendered.yaml"
"$VALIDATE" --strict --quiet "$out/rendered.yaml" deploy/k8s/secrets.example.yaml
echo "kubernetes-validate --strict: $(grep -c '^kind:' "$out/rendered.yaml") rendered objects and the example secrets are valid"
promtool check config deploy/prometheus/prometheus.yml
promtool check rules deploy/prometheus/alerts.yml
# Every alert fires in its case and stays quiet in the other (alerts.test.yml).
promtool test rules deploy/prometheus/alerts.test.yml
amtool check-config deploy/alertmanager/alertmanager.yml
