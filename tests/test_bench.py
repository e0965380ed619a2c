"""The GPU scripts, as far as a CPU can check them: the trainer benchmark runs (ratio only), the shell
scripts parse, and every config they use passes NNI's validation (tests/test_launch.py)."""
import json
import subprocess
import sys

import pytest

from .nni_helpers import ROOT


def test_bench_trainer_runs_on_cpu_side_by_side(tmp_path):
    out = tmp_path / "b.json"
    proc = subprocess.run([sys.executable, "bench/bench_trainer.py", "--size", "16", "16", "--images", "32",
                           "--batch-size", "8", "--epochs", "2", "--modes", "naive", "ours", "--workers", "0",
                           "--device", "cpu", "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(out.read_text())
    assert set(res["modes"]) == {"naive", "ours"} and res["bf16_peak_tflops"] is None  # no peak claimed on CPU
    assert all(m["images_per_second"] > 0 and m["achieved_tflops"] >= 0 for m in res["modes"].values())
    assert "| naive |" in proc.stdout and "| ours |" in proc.stdout and "| 1.00 |" in proc.stdout


@pytest.mark.parametrize("script", ["bench/gpu_check.sh", "bench/pack_nni_site.sh", "experiments/camvid/run_gpu.sh",
                                    "experiments/camvid/run_cpu.sh", "scripts/setup.sh", ".ci/run"])
def test_shell_scripts_parse(script):
    proc = subprocess.run(["bash", "-n", str(ROOT / script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_gpu_scripts_only_use_shipped_configs():
    text = (ROOT / "bench" / "gpu_check.sh").read_text() + (ROOT / "experiments" / "camvid" / "run_gpu.sh").read_text()
    for cfg in ("experiments/gpu.yml", "experiments/gpu_unscheduled.yml", "experiments/camvid/search_gpu.yml"):
        assert cfg in text and (ROOT / cfg).is_file()
