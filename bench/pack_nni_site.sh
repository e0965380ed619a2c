#!/usr/bin/env bash
# Pack nni 3.0 and the small dependencies the GPU image lacks, for Python 3.12, into
# .whl/nni_site.tar.xz (about 42 MB, under the device tool's 64 MiB carry limit; the nni wheel
# alone is 61 MB). Used by bench/gpu_check.sh when the GPU machine has no nni. filelock 3.11 is
# included on purpose: the image's newer filelock makes `nnictl create` hang (see nni_seg/experiment.py);
# nvidia-ml-py (pynvml) is what NNI's GPU probe imports.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux1_x86_64 --platform manylinux_2_5_x86_64 -d "$tmp/whl" \
  nni==3.0 json_tricks schema 'typeguard==4.1.2' prettytable websockets PythonWebHDFS responses astor \
  'setuptools<81' wcwidth 'filelock==3.11.0' nvidia-ml-py
mkdir -p "$tmp/site" .whl
for w in "$tmp"/whl/*.whl; do python3 -m zipfile -e "$w" "$tmp/site"; done
chmod +x "$tmp/site/nni_node/node"  # zipfile drops the exec bit
tar -C "$tmp/site" -cf - . | xz -T2 -6 > .whl/nni_site.tar.xz
rm -rf "$tmp"
ls -la .whl/nni_site.tar.xz
