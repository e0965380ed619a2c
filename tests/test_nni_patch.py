import shutil

import pytest

from nni_seg import nni_patch


@pytest.fixture
def node_copy(tmp_path):
    """A copy of the two NNI files we patch, restored to their shipped text."""
    src = nni_patch.nni_node_dir()
    for p in {p.file for p in nni_patch.PATCHES}:
        (tmp_path / p).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src / p, tmp_path / p)
    for p in reversed(nni_patch.PATCHES):  # un-apply (last applied first), if the installed copy is patched
        f = tmp_path / p.file
        f.write_text(f.read_text().replace(p.new + " " + p.marker, p.old))
    return tmp_path


def test_patches_apply_once_and_are_idempotent(node_copy):
    assert set(nni_patch.status(node_copy).values()) == {"pending"}
    assert set(nni_patch.apply(node_copy).values()) == {"applied"}
    text = {p.file: (node_copy / p.file).read_text() for p in nni_patch.PATCHES}
    assert set(nni_patch.apply(node_copy).values()) == {"applied"}
    assert text == {p.file: (node_copy / p.file).read_text() for p in nni_patch.PATCHES}
    compat = (node_copy / "training_service/v3/compat.js").read_text()
    assert "this.parameters.push(form.hyperParameters.value)" not in compat


def test_unknown_nni_version_is_reported_not_patched(tmp_path):
    for p in nni_patch.PATCHES:
        (tmp_path / p.file).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / p.file).write_text("// something else\n")
    assert set(nni_patch.apply(tmp_path).values()) == {"unknown"}


def test_installed_nni_is_patched():
    """The setup step (scripts/setup.sh) must have applied every fix to this environment."""
    assert set(nni_patch.status().values()) == {"applied"}
