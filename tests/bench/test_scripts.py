"""The GPU scripts, as far as a CPU can check them: the trainer benchmark runs (ratio only), the shell
scripts parse, and every config they use passes NNI's validation (tests/test_launch.py)."""
import json
import subprocess
import sys

import pytest

from ..nni_helpers import ROOT

# the benchmark harnesses' tests: run in CI, outside the fast suite
pytestmark = pytest.mark.slow


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


def test_profile_splits_an_epoch_into_categories(tmp_path):
    out = tmp_path / "b.json"
    proc = subprocess.run([sys.executable, "bench/bench_trainer.py", "--size", "16", "16", "--images", "16",
                           "--batch-size", "8", "--epochs", "1", "--modes", "ours", "--device", "cpu", "--profile",
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    prof = json.loads(out.read_text())["profile"]
    assert prof["what"] == "CPU operators" and prof["total_ms"] > 0
    assert sum(prof["categories"].values()) == pytest.approx(prof["total_ms"], rel=0.01)
    assert {"convolution", "normalisation", "pooling"} <= set(prof["categories"])
    assert len(prof["top"]) == 12 and "| convolution |" in proc.stdout


def test_profile_categories_of_cuda_kernel_names():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from bench_trainer import category
    finally:
        sys.path.remove(str(ROOT / "bench"))
    assert category("sm90_xmma_fprop_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc") == "convolution"
    assert category("cudnn::bn_fw_tr_1C11_singleread_spec<__nv_bfloat16>") == "normalisation"
    assert category("void at::native::(anonymous namespace)::max_pool_forward_nhwc<c10::BFloat16>") == "pooling"
    assert category("triton_poi_fused_native_batch_norm_backward_threshold_backward_3") == "normalisation"
    assert category("triton_poi_fused_relu_7") == "activation / fused (triton)"
    assert category("void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add>") == \
        "other elementwise"


@pytest.mark.parametrize("script", ["bench/gpu_check.sh", "bench/pack_nni_site.sh", "experiments/camvid/run_gpu.sh",
                                    "experiments/camvid/run_cpu.sh", "scripts/setup.sh", ".ci/run"])
def test_shell_scripts_parse(script):
    proc = subprocess.run(["bash", "-n", str(ROOT / script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_gpu_scripts_only_use_shipped_configs():
    text = (ROOT / "bench" / "gpu_check.sh").read_text() + (ROOT / "experiments" / "camvid" / "run_gpu.sh").read_text()
    for cfg in ("experiments/gpu.yml", "experiments/gpu_unscheduled.yml", "experiments/camvid/search_gpu.yml"):
        assert cfg in text and (ROOT / cfg).is_file()


def test_search_vs_baselines_table_gives_few_classes_their_dice(tmp_path):
    """ISBI (membrane, cell): the table adds each class's Dice; a class never seen nor predicted shows '-'."""
    def row(group, run, miou, dice):
        scores = {"miou": miou, "dice": dice[0], "iou_per_class": [miou, miou], "dice_per_class": dice}
        return {"group": group, "network": group, "run": run, "mmacs": 100.0, "params": 1e5, "native": scores,
                "at_train_size": scores, "resolution": "native labels (512x512)", "train_size": [128, 128]}

    results = {"class_names": ["membrane", "cell"], "searches": [], "trainings": [
        row("unet", 0, 0.70, [0.80, 0.90]), row("unet", 1, 0.72, [0.82, None]), row("tpe_new", 0, 0.74, [0.84, 0.94])]}
    (tmp_path / "results.json").write_text(json.dumps(results))
    proc = subprocess.run([sys.executable, "bench/search_vs_baselines.py", "--out", str(tmp_path), "--table"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| unet | 2 | 71.0 (70.0-72.0) |" in proc.stdout
    assert "| val Dice per class, native | membrane | cell |" in proc.stdout
    assert "| unet (mean of 2) | 81.0 | 90.0 |" in proc.stdout  # the None is left out of the mean
    assert "| best single network (tpe_new run 0: 74.0 mIoU) | 84.0 | 94.0 |" in proc.stdout


def test_search_vs_baselines_counts_a_winner_trained_twice_once(tmp_path):
    """A group's mean is over its networks (each the mean of its trainings); one network: over its runs."""
    def row(group, network, run, miou):
        scores = {"miou": miou, "dice": miou, "iou_per_class": [miou], "dice_per_class": [miou]}
        return {"group": group, "network": network, "run": run, "mmacs": 100.0, "params": 1e5, "native": scores,
                "at_train_size": scores, "resolution": "native labels (360x480)", "train_size": [96, 128]}

    results = {"class_names": ["sky"], "searches": [], "trainings": [
        row("unet", "unet", 0, 0.40), row("unet", "unet", 1, 0.50),
        row("tpe", "tpe_seed0", 0, 0.60), row("tpe", "tpe_seed0", 1, 0.40), row("tpe", "tpe_seed1", 0, 0.30)]}
    (tmp_path / "results.json").write_text(json.dumps(results))
    proc = subprocess.run([sys.executable, "bench/search_vs_baselines.py", "--out", str(tmp_path), "--table"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| unet | 2 | 45.0 (40.0-50.0) |" in proc.stdout
    assert "| tpe | 3 | 40.0 (30.0-50.0) |" in proc.stdout  # seed 0: (60 + 40) / 2; seed 1: 30
    assert "| 100 / 100 | 0.10 M / 0.10 M |" in proc.stdout  # two networks, each once
    assert "| tpe (mean of 2) | 40.0 |" in proc.stdout


def test_bench_trainer_cpu_paths_side_by_side(tmp_path):
    out = tmp_path / "m.json"
    proc = subprocess.run([sys.executable, "bench/bench_trainer.py", "--device", "cpu", "--cpu-sizes", "16", "16",
                           "--images", "16", "--batch-size", "8", "--epochs", "2", "--repeats", "1", "--threads", "1",
                           "--modes", "fp32", "bf16_cl", "--archs", "seed", "sampled_parallel", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(out.read_text())
    assert [r["arch"] for r in res["rows"]] == ["seed", "sampled_parallel"]
    for row in res["rows"]:
        assert set(row["train"]) == set(row["eval"]) == {"fp32", "bf16_cl"} and row["train_x"]["fp32"] == 1.0
        assert all(v > 0 for v in [*row["train"].values(), *row["eval"].values()])
    assert "| seed | 16x16 |" in proc.stdout and "sampled_parallel" in res["archs"]
