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


def test_an_output_folder_with_earlier_outputs_is_refused_and_kept_unless_forced(tmp_path):
    from nni_seg.files import output_folder

    out = tmp_path / "res"
    (out / "runs").mkdir(parents=True)
    (out / "report.md").write_text("old")
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match=r"res holds a recipe's results \(report.md, runs\); choose another --out"):
        output_folder(out, ["report.md", "runs", "absent.png"], what="a recipe's results")
    assert (out / "report.md").read_text() == "old" and (out / "runs").is_dir()
    assert output_folder(out, ["report.md", "runs"], force=True) == out
    assert not (out / "report.md").exists() and not (out / "runs").exists() and (out / "notes.txt").exists()


def test_an_output_folder_that_is_a_file_is_one_line_and_forced_keeps_when_not_cleared(tmp_path):
    from nni_seg.files import output_folder

    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match="^tune --out .*f is a file; give a folder$"):
        output_folder(tmp_path / "f", [], flag="tune --out", force=True)
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "a.md").write_text("old")
    output_folder(tmp_path / "r", ["a.md"], force=True, clear=False)
    assert (tmp_path / "r" / "a.md").read_text() == "old"
