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
    from nni_seg.space import seed_arch

    return dict(seed_arch(), enc1_width=16, enc2_width=32, enc3_width=64, dec1_skip="concat", up="bilinear")


@pytest.fixture
def arch_file(tmp_path, tiny_arch):
    p = tmp_path / "arch.json"
    p.write_text(json.dumps(tiny_arch))
    return p
