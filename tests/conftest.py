import json
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not present at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def tiny_arch():
    """A cheap architecture (small widths, U-Net skips)."""
    from nni_seg.space.arch import seed_arch

    return dict(seed_arch(), enc1_width=16, enc2_width=32, enc3_width=64, dec1_skip="concat", up="bilinear")


@pytest.fixture
def arch_file(tmp_path, tiny_arch):
    p = tmp_path / "arch.json"
    p.write_text(json.dumps(tiny_arch))
    return p


FAKE_NVML = Path(__file__).resolve().parent / "fake_nvml"


@pytest.fixture
def fake_gpus(monkeypatch):
    """``fake_gpus(n)``: NNI's GPU probe (and so its scheduler, in nnictl started from this process) sees n
    idle GPUs (n < 0: NVML missing), through ``tests/fake_nvml/pynvml.py`` first on PYTHONPATH."""
    import os

    def use(n: int) -> None:
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(FAKE_NVML), os.environ.get("PYTHONPATH")])))
        monkeypatch.setenv("NNI_SEG_FAKE_GPUS", str(n))

    return use


FAULTS = Path(__file__).resolve().parent / "faults"


@pytest.fixture
def faults(monkeypatch):
    """Test-only fault injection (``tests/faults/sitecustomize.py``): in this process (its ``install``), and in
    every process started from it (its folder first on PYTHONPATH); ``NNI_SEG_FAULTS`` says which and how."""
    import os

    from nni_seg.training import trainer

    from .faults.sitecustomize import install

    monkeypatch.setattr(trainer, "fit", trainer.fit)  # restored after the test
    install()
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(FAULTS), os.environ.get("PYTHONPATH")])))
    return FAULTS
