"""NNI's local GPU scheduler, end to end, on a machine without a GPU.

``tests/fake_nvml`` makes NNI's GPU probe report idle GPUs; the real ``nnictl`` then schedules the
trials (our launcher applies the ``gpu-off-by-one`` fix first) and each trial records the
``CUDA_VISIBLE_DEVICES`` it was given. The trials themselves train on the CPU. What this cannot show
(trials on CUDA) is ``bench/gpu_check.sh``'s job on a GPU machine.
"""
import itertools

import pytest
import yaml



from ..nni_helpers import records_of, experiment_id, free_port, nnictl, rest, run_cli, write_config

pytestmark = pytest.mark.slow


def _run(tmp_path, *, gpus_per_trial, per_gpu, trials, concurrency):
    config = write_config(tmp_path, trials=trials, concurrency=concurrency)
    cfg = yaml.safe_load(config.read_text())
    cfg["trialGpuNumber"] = gpus_per_trial
    cfg["trainingService"].update(useActiveGpu=True, maxTrialNumberPerGpu=per_gpu)
    config.write_text(yaml.safe_dump(cfg))
    port = free_port()
    proc = run_cli(["run", str(config), "--port", str(port), "--keep-running", "--timeout", "400", "--stall", "120"],
                   tmp_path)
    exp_id = experiment_id(proc.stdout)
    try:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        jobs = {j["trialJobId"]: j for j in rest(port, "/trial-jobs")}
    finally:
        nnictl(["stop", exp_id], tmp_path)
    records = records_of(tmp_path / "exps" / exp_id)
    assert len(records) == trials and all(r["status"] == "SUCCEEDED" for r in records)
    # (GPUs a trial got, its start and end in ms as NNI saw them)
    return [(r["cuda_visible_devices"], jobs[r["trial_id"]]["startTime"], jobs[r["trial_id"]]["endTime"])
            for r in records]


def _overlapping(runs):
    return [(a, b) for a, b in itertools.combinations(runs, 2) if a[1] < b[2] and b[1] < a[2]]


def test_one_gpu_box_runs_trials_asking_for_its_only_gpu_one_at_a_time(tmp_path, fake_gpus):
    """trialGpuNumber: 1 on a 1-GPU box: NNI 3.0 unpatched never starts such a trial (off by one)."""
    fake_gpus(1)
    runs = _run(tmp_path, gpus_per_trial=1, per_gpu=1, trials=3, concurrency=2)
    assert [gpu for gpu, _, _ in runs] == ["0", "0", "0"]
    assert _overlapping(runs) == []  # concurrency 2 but one GPU, one trial per GPU: never two at once


def test_two_trials_share_each_gpu_and_both_gpus_are_used(tmp_path, fake_gpus):
    """maxTrialNumberPerGpu: 2 on a 2-GPU box: up to 4 trials at once, never 3 on one GPU."""
    fake_gpus(2)
    runs = _run(tmp_path, gpus_per_trial=1, per_gpu=2, trials=6, concurrency=4)
    assert {gpu for gpu, _, _ in runs} == {"0", "1"}
    for gpu in "01":
        on_gpu = [r for r in runs if r[0] == gpu]
        assert not any(_overlapping([a, b]) and _overlapping([a, c]) and _overlapping([b, c])
                       for a, b, c in itertools.combinations(on_gpu, 3)), f"3 trials at once on GPU {gpu}"
    assert any(a[0] == b[0] for a, b in _overlapping(runs)), "two trials shared a GPU at the same time"
