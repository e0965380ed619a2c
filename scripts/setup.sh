#!/usr/bin/env bash
# Create .venv (if missing), install the pinned requirements and nni_seg, apply our NNI fixes.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip 'setuptools<81' wheel
.venv/bin/python -m pip install -q -r requirements.txt -r requirements-test.txt
# second step on purpose (see requirements-deploy.txt): the resolver would refuse it in one go
if ! out=$(.venv/bin/python -m pip install -q -r requirements-deploy.txt 2>&1); then echo "$out" >&2; exit 1; fi
grep -v "tianshou 0.4.11 requires protobuf\|dependency resolver does not\|Location 'file" <<<"$out" || true
.venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .
.venv/bin/python -m nni_seg patch-nni
