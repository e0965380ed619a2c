#!/usr/bin/env bash
# The README's first command on each other supported Python: set up a venv of its own (.venv-3.12, ...) and
# run the default search (config.yml) to its exported architecture. Pythons not installed are skipped
# (pyenv's are found without being on PATH). A venv this script creates is removed after its check: each
# holds ~6.6 GB (torch's CUDA wheels), and CI's disk filled once with three of them side by side.
# Usage: bash scripts/check_pythons.sh [3.12 3.13]
set -euo pipefail
cd "$(dirname "$0")/.."
for v in ${@:-3.12 3.13}; do
  py=""
  for cand in $(command -v "python$v" 2>/dev/null) "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$v"*/bin/python"$v"; do
    if [ -x "$cand" ] && "$cand" -c pass 2>/dev/null; then py=$cand; break; fi
  done
  if [ -z "$py" ]; then echo "python$v: not installed, skipped"; continue; fi
  echo "=== python$v ($py)"
  created=""
  [ -e ".venv-$v" ] || created=1
  PYTHON="$py" VENV=".venv-$v" bash scripts/setup.sh
  out=$(mktemp -d)
  ".venv-$v/bin/python" -m nni_seg run config.yml --out "$out/top_arch.json" | tail -3
  ".venv-$v/bin/python" -c "import json, sys; a = json.load(open(sys.argv[1]))['arch']; print('exported', len(a), 'choices')" "$out/top_arch.json"
  rm -rf "$out"
  if [ -n "$created" ]; then rm -rf ".venv-$v"; fi
done
