#!/usr/bin/env bash
# CamVid recipe on one H100/H200, aimed at ~10 minutes: search at 180x240 (search_gpu.yml), then the
# winner and the seed's net retrained at 360x480 with the same schedule, val evaluation, report.
# Ships to a GPU machine as code + data/camvid_360x480.npz (+ .whl/nni_site.tar.xz where nni is
# missing: bench/pack_nni_site.sh); results under $OUT (default runs/camvid_gpu).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-python3}
export PYTHONUNBUFFERED=1
if ! $PY -c "import nni" 2>/dev/null; then
  mkdir -p /tmp/site && tar xJf .whl/nni_site.tar.xz -C /tmp/site && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD
DATA=data/camvid_360x480.npz
[ -f "$DATA" ] || $PY -m nni_seg pack-data --dataset camvid --data-root "${CAMVID:-../shared/data/camvid}" --out "$DATA" --quality 85
$PY -m nni_seg patch-nni
$PY -m nni_seg recipe --search-config experiments/camvid/search_gpu.yml --dataset packed --data-root "$DATA" \
  --epochs ${EPOCHS:-150} --batch-size 16 --lr 3e-3 --loss ce+dice --class-weights median_freq \
  --search-timeout 420 --baselines seed,unet --out "${OUT:-runs}/camvid_gpu" "$@"
