#!/usr/bin/env bash
# All GPU checks in one run of a few minutes on a GPU machine (see docs/performance.md):
#   1. environment + NNI's GPU probe, 2. an nnictl experiment with trialGpuNumber: 1
#      (experiments/gpu.yml) whose trial records must show CUDA, 3. trainer benchmark (naive vs ours vs
#   compile), 4. several trainer processes sharing one GPU, 5. an experiment without NNI's GPU scheduler.
# Dry run without a GPU: PYTHONPATH=tests/fake_nvml NNI_SEG_FAKE_GPUS=1 BENCH_SIZE="32 48" BENCH_IMAGES=32 \
#   SHARE_IMAGES=64 bash bench/gpu_check.sh   (NNI schedules on a fake GPU; trials train on the CPU)
# Results go to $OUT (default /tmp/gpu_check). NNI and its small dependencies may travel as
# .whl/nni_site.tar.xz (built by bench/pack_nni_site.sh) when the machine has no nni.
set -u
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PY:-python3}
cd "$(dirname "$0")/.."
if ! $PY -c "import nni" 2>/dev/null; then
  mkdir -p /tmp/site && tar xJf .whl/nni_site.tar.xz -C /tmp/site && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD
step() { echo; echo "=== $* ($(date +%T))"; }

step environment
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
$PY -c "import torch, nni; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(), '| nni', nni.__version__)"
( time timeout 60 $PY -m nni.tools.nni_manager_scripts.collect_gpu_info ) 2>&1 | tail -5
$PY -m nni_seg patch-nni

run_nni() {  # $1 config, $2 port, $3 label
  step "nnictl experiment: $3"
  timeout ${NNI_TIMEOUT:-200} $PY -m nni_seg run "$1" --port "$2" --stall 90 --timeout 170 2>&1 | tee "$OUT/nni_$3.txt" | tail -4
  id=$(grep -o 'experiment [a-z0-9]* started' "$OUT/nni_$3.txt" | awk '{print $2}')
  [ -n "$id" ] || return
  $PY - "$id" <<'PYEOF'
import sys
from nni_seg.records import experiment_dir, trial_records
recs = [x.record for x in trial_records(experiment_dir(sys.argv[1]))[0]]
for r in recs:
    print(r.trial_id, r.status.value, r.device, "CUDA_VISIBLE_DEVICES=%s" % r.cuda_visible_devices, (r.metrics or {}).get("dice"), r.train_seconds)
print(f"{sum('cuda' in str(r.device) for r in recs)}/{len(recs)} trials ran on CUDA")
PYEOF
  d=$($PY -c "from nni_seg.records import experiment_dir; print(experiment_dir('$id'))")
  tar czf "$OUT/nni_$3_logs.tgz" -C "$d" log $(cd "$d" && find environments -name 'trial.*' -o -name '*.json' | head -40) 2>/dev/null
}
run_nni experiments/gpu.yml 8090 scheduled  # first: the result still owed (trial records on CUDA)

step trainer benchmark, seed net 360x480 batch 16
timeout ${BENCH_TIMEOUT:-240} $PY bench/bench_trainer.py --size ${BENCH_SIZE:-360 480} --batch-size 16 --images ${BENCH_IMAGES:-368} --epochs 4 --profile \
  --out "$OUT/bench_trainer.json" 2>&1 | tee "$OUT/bench_trainer.txt" | grep -v Warning

step several trainers on one GPU, small net 64x64 batch 32
printf '{"levels": 3, "act": "relu", "up": "bilinear", "enc1_op": "conv3x3", "enc1_width": 32, "enc1_depth": 1, "enc2_op": "conv3x3", "enc2_width": 64, "enc2_depth": 1, "enc3_op": "conv3x3", "enc3_width": 128, "enc3_depth": 1, "enc4_op": "conv3x3", "enc4_width": 128, "enc4_depth": 1, "dec1_op": "conv3x3", "dec1_skip": "concat", "dec2_op": "conv3x3", "dec2_skip": "concat", "dec3_op": "conv3x3", "dec3_skip": "none"}' > /tmp/small_arch.json  # an old-space file: the new choices take their defaults
for k in 1 2 4; do
  for i in $(seq $k); do
    timeout 120 $PY bench/bench_trainer.py --arch /tmp/small_arch.json --size 64 64 --batch-size 32 --images ${SHARE_IMAGES:-2048} \
      --epochs 4 --modes ours --out "$OUT/share_${k}_$i.json" > /dev/null 2>&1 &
  done
  wait
  $PY - "$k" "$OUT" <<'PYEOF'
import json, sys, glob
k, out = sys.argv[1], sys.argv[2]
ips = [json.load(open(f))["modes"]["ours"]["images_per_second"] for f in glob.glob(f"{out}/share_{k}_*.json")]
print(f"{k} process(es) on one GPU: {[round(x) for x in ips]} img/s each, aggregate {sum(ips):.0f} img/s")
PYEOF
done | tee "$OUT/gpu_sharing.txt"
rm -f "$OUT"/share_*.json

run_nni experiments/gpu_unscheduled.yml 8091 unscheduled
step done
