import csv
import json

from nni_seg.space.arch import seed_arch
from nni_seg.cli import main as cli
from nni_seg.workflow.report import make_report, pareto_front
from nni_seg.config.schema import RECORD_NAME

from ..fake_experiment import write_record


def main(argv):
    return cli(["report", *argv])


def test_pareto_front_by_hand():
    pts = [(10, 0.5), (5, 0.4), (20, 0.6), (15, 0.45), (5, 0.3), (30, 0.6), (8, 0.4)]
    # (5, .4) beats (5, .3) and (8, .4); (15, .45) is dominated by (10, .5); (30, .6) by (20, .6)
    assert pareto_front(pts) == [1, 0, 2]
    assert pareto_front([]) == []
    assert pareto_front([(1, 0.2), (1, 0.2)]) == [0]


def _write(root, tid, status, dice=None, mmacs=None, seq=0, **extra):
    write_record(root, tid, dice, status, env="local", sequence_id=seq, mmacs=mmacs, params=100 + seq,
                 summary=f"arch{seq}", started=f"2026-01-01T00:00:{seq:02d}", latency_ms=1.5, **extra)


def test_report_files_and_pareto_table(tmp_path):
    _write(tmp_path, "a", "SUCCEEDED", 0.5, 10.0, 0)
    _write(tmp_path, "b", "SUCCEEDED", 0.4, 5.0, 1)
    _write(tmp_path, "c", "FAILED", None, 7.0, 2, error="TrainingDiverged: loss is nan")
    _write(tmp_path, "d", "REJECTED", 0.0, 99.0, 3, reason="over budget")
    _write(tmp_path, "e", "SUCCEEDED", 0.45, 15.0, 4)
    res = make_report(tmp_path)
    assert res.trials == 5 and res.succeeded == 3
    assert [r["trial_id"] for r in res.pareto] == ["b", "a"]
    out = tmp_path / "report"
    for name in ("dice_vs_trial.png", "dice_vs_mmacs.png", "best_arch.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert [r["trial_id"] for r in rows] == ["a", "b", "c", "d", "e"]
    assert rows[2]["reason"] == "TrainingDiverged: loss is nan"
    assert [r["trial_id"] for r in csv.DictReader((out / "pareto.csv").open())] == ["b", "a"]
    md = (out / "pareto.md").read_text()
    assert "| b | 0.4000 |" in md and "| e |" not in md


def test_report_cli_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NNI_HOME_DIR", str(tmp_path))
    assert main(["nosuchexp"]) == 2
    assert "experiment 'nosuchexp' not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty")]) == 2
    assert "not found" in capsys.readouterr().err
    (tmp_path / "empty" / "environments").mkdir()
    assert main([str(tmp_path / "empty")]) == 1
    assert "no readable trial records" in capsys.readouterr().err


def test_report_cli_on_folder(tmp_path, capsys):
    _write(tmp_path, "a", "SUCCEEDED", 0.5, 10.0, 0)
    assert main([str(tmp_path), "--out", str(tmp_path / "r")]) == 0
    assert "1 on the Pareto front" in capsys.readouterr().out
    assert (tmp_path / "r" / "pareto.md").is_file()


def test_old_records_with_mflops_still_report(tmp_path):
    """Records written before the format version (mflops for multiply-accumulates) are read as mmacs."""
    d = tmp_path / "environments" / "local" / "trials" / "old"
    d.mkdir(parents=True)
    (d / RECORD_NAME).write_text(json.dumps({
        "trial_id": "old", "status": "SUCCEEDED", "arch": seed_arch(), "summary": "s", "mflops": 12.5, "params": 3,
        "metrics": {"default": 0.5, "dice": 0.5, "miou": 0.3, "mflops": 12.5, "latency_ms": 2.0},
        "dice_per_class": [0.5, None], "iou_per_class": [0.3, None], "data": {"dataset": "digits", "size": [32, 32]},
        "train": {"epochs": 4, "lr": 0.003}}))
    res = make_report(tmp_path)
    assert res.succeeded == 1 and res.pareto[0]["mmacs"] == 12.5


def test_on_a_tie_the_report_draws_the_trial_export_picks(tmp_path):
    from nni_seg.workflow.export import top_architecture

    _write(tmp_path, "a", "SUCCEEDED", 0.5, 10.0, 0)
    _write(tmp_path, "b", "SUCCEEDED", 0.5, 5.0, 1)
    _write(tmp_path, "c", "SUCCEEDED", 0.5, 5.0, 2)
    res = make_report(tmp_path)
    assert res.best_trial == "b" == top_architecture(tmp_path).trial_id
    assert [r["trial_id"] for r in res.pareto] == ["b"]
