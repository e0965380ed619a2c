#!/usr/bin/env bash
# Create .venv (if missing), install the pinned requirements and nni_seg, apply our NNI fixes.
# Idempotent: a second run only checks. PYTHON picks the interpreter (default python3; 3.11, 3.12 and
# 3.13 are tested: scripts/check_pythons.sh), VENV the folder (default .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
V=${VENV:-.venv}
[ -x "$V/bin/python" ] || "$PY" -m venv "$V"
"$V/bin/python" -m pip install -q --upgrade pip 'setuptools<81' wheel
"$V/bin/python" -m pip install -q -r requirements.txt -r requirements-test.txt
# second step on purpose (see requirements-deploy.txt): the resolver would refuse it in one go
if ! out=$("$V/bin/python" -m pip install -q -r requirements-deploy.txt 2>&1); then echo "$out" >&2; exit 1; fi
grep -v "tianshou 0.4.11 requires protobuf\|dependency resolver does not\|Location 'file" <<<"$out" || true
"$V/bin/python" -m pip install -q --no-deps --no-build-isolation -e .
"$V/bin/python" -m nni_seg patch-nni
