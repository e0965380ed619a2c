"""Files we write: atomically (no partial file, no temp file left), never over an existing output silently."""
import os

import pytest

from nni_seg.errors import UserError
from nni_seg.files import atomic_path, atomic_write_text, check_output


def test_an_interrupted_write_leaves_the_old_file_and_no_temp(tmp_path):
    path = tmp_path / "out.json"
    atomic_write_text(path, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            open(tmp, "w").write("half")
            raise RuntimeError("killed")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["out.json"]


def test_an_existing_output_is_refused_without_force(tmp_path):
    (tmp_path / "a.json").write_text("x")
    with pytest.raises(UserError, match="exists"):
        check_output(tmp_path / "a.json", force=False, what="--out")
    assert check_output(tmp_path / "a.json", force=True, what="--out") == tmp_path / "a.json"
