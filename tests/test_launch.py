import socket
from pathlib import Path

import pytest

from nni_seg.launch import ExperimentDead, check_config, check_environment, free_port

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["config.yml", "experiments/tpe.yml", "experiments/random.yml",
                                  "experiments/evolution.yml", "experiments/regularized_evolution.yml",
                                  "experiments/rl.yml", "experiments/camvid_small.yml", "experiments/gpu.yml",
                                  "experiments/camvid/search_cpu.yml", "experiments/camvid/search_gpu.yml",
                                  "experiments/gpu_unscheduled.yml"])
def test_shipped_configs_pass_nni_validation(name):
    assert check_config(ROOT / name)["trainingService"]["platform"] == "local"


def test_config_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="config not found: .*nope.yml"):
        check_config(tmp_path / "nope.yml")
    bad = tmp_path / "bad.yml"
    bad.write_text("a: [unclosed\n")
    with pytest.raises(ValueError, match="bad.yml: not valid YAML"):
        check_config(bad)


def test_free_port_falls_back_when_taken():
    with socket.socket() as s:
        s.bind(("", 0))
        s.listen()
        taken = s.getsockname()[1]
        assert free_port(taken) != taken
    assert free_port(taken) == taken


def test_environment_check_passes_with_pinned_filelock(monkeypatch):
    check_environment()
    import importlib.metadata as md

    monkeypatch.setattr(md, "version", lambda name: "3.20.0")
    with pytest.raises(ExperimentDead, match="filelock 3.20.0 makes NNI 3.0's nnictl hang"):
        check_environment()


def test_remote_config_passes_nni_validation_given_its_ssh_key(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(ValueError, match=r"remote.yml: .*valid SSH key file"):
        check_config(ROOT / "experiments" / "remote.yml")
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "id_ed25519").write_text("not a real key; NNI checks that the file exists\n")
    cfg = check_config(ROOT / "experiments" / "remote.yml")
    hosts = cfg["trainingService"]["machineList"]
    assert cfg["trainingService"]["platform"] == "remote" and len(hosts) == 2
    assert hosts[0]["gpuIndices"] == [0, 1] and hosts[0]["maxTrialNumberPerGpu"] == 2


def test_unknown_tuner_or_assessor_name_lists_the_valid_ones(tmp_path):
    text = (ROOT / "config.yml").read_text().replace("experiments/", str(ROOT / "experiments") + "/")
    text = text.replace("trialCodeDirectory: .", f"trialCodeDirectory: {ROOT}")
    bad = tmp_path / "c.yml"
    bad.write_text(text.replace("name: TPE", "name: TPEE"))
    with pytest.raises(ValueError, match=r"c.yml: unknown tuner 'TPEE'; valid: .*Random.*TPE"):
        check_config(bad)
    bad.write_text(text + "assessor:\n  name: Medianstopp\n")
    with pytest.raises(ValueError, match=r"unknown assessor 'Medianstopp'; valid: Curvefitting, Medianstop"):
        check_config(bad)
    bad.write_text(text.replace("name: TPE", "name: tpe"))  # NNI's names are case-insensitive
    check_config(bad)
