import pytest

from nni_seg.experiment import patch as nni_patch
from nni_seg.errors import UserError


@pytest.fixture
def node_copy(tmp_path):
    """A copy of the NNI files we patch, as NNI 3.0 ships them (rebuilt from the installed ones)."""
    src = nni_patch.site_dir()
    for f in nni_patch.FILES:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        text = (src / f).read_text()
        if nni_patch.sha256(text) == nni_patch.PATCHED[f]:
            text = nni_patch.unpatch_text(f, text)
        (tmp_path / f).write_text(text)
    assert set(nni_patch.file_states(tmp_path).values()) == {"shipped"}
    return tmp_path


def test_patched_hashes_are_what_the_patches_make():
    """Drift check: the PATCHED table is the SHA-256 of each shipped file with our patches applied."""
    src = nni_patch.site_dir()
    for f in nni_patch.FILES:
        text = (src / f).read_text()
        shipped = nni_patch.unpatch_text(f, text) if nni_patch.sha256(text) == nni_patch.PATCHED[f] else text
        assert nni_patch.sha256(shipped) == nni_patch.SHIPPED[f]
        assert nni_patch.sha256(nni_patch.patch_text(f, shipped)) == nni_patch.PATCHED[f]


def test_patches_apply_once_keep_backups_and_revert(node_copy):
    assert set(nni_patch.apply(node_copy).values()) == {"patched"}
    assert set(nni_patch.patch_states(node_copy).values()) == {"applied"}
    text = {f: (node_copy / f).read_text() for f in nni_patch.FILES}
    assert set(nni_patch.apply(node_copy).values()) == {"patched"}  # idempotent
    assert text == {f: (node_copy / f).read_text() for f in nni_patch.FILES}
    assert "this.parameters.push(form.hyperParameters.value)" not in text["nni_node/training_service/v3/compat.js"]
    for f in nni_patch.FILES:
        assert nni_patch.sha256((node_copy / (f + nni_patch.BACKUP_SUFFIX)).read_text()) == nni_patch.SHIPPED[f]
    assert set(nni_patch.revert(node_copy).values()) == {"shipped"}
    for f in nni_patch.FILES:  # revert works without the backups too (the patches are undone)
        (node_copy / (f + nni_patch.BACKUP_SUFFIX)).unlink()
    nni_patch.apply(node_copy)
    for f in nni_patch.FILES:
        (node_copy / (f + nni_patch.BACKUP_SUFFIX)).unlink()
    assert set(nni_patch.revert(node_copy).values()) == {"shipped"}


def test_a_modified_file_stops_everything(node_copy):
    victim = node_copy / "nni_node/common/trial_keeper/task_scheduler/scheduler.js"
    victim.write_text(victim.read_text() + "// someone's edit\n")
    before = {f: (node_copy / f).read_text() for f in nni_patch.FILES}
    with pytest.raises(UserError, match=r"scheduler.js is modified .*nothing patched; reinstall NNI"):
        nni_patch.apply(node_copy)
    assert before == {f: (node_copy / f).read_text() for f in nni_patch.FILES}  # all or nothing
    assert nni_patch.state(node_copy).startswith("modified (nni_node/common/trial_keeper/task_scheduler/scheduler.js")


def test_another_nni_version_is_refused(node_copy, monkeypatch):
    monkeypatch.setattr(nni_patch, "nni_version", lambda: "3.1")
    with pytest.raises(UserError, match="installed NNI is 3.1; these patches are for NNI 3.0 only"):
        nni_patch.apply(node_copy)
    assert set(nni_patch.file_states(node_copy).values()) == {"shipped"}


def test_installed_nni_is_patched():
    """The setup step (scripts/setup.sh) must have applied every fix to this environment."""
    assert nni_patch.state() == "patched"


def test_run_refuses_an_unpatched_nni_with_the_command(monkeypatch):
    from nni_seg.experiment.lifecycle import check_environment

    monkeypatch.setattr(nni_patch, "state", lambda root=None: "shipped")
    with pytest.raises(UserError, match=r"installed NNI is shipped, not patched: run `python -m nni_seg patch-nni`"):
        check_environment()
    check_environment(allow_unpatched=True)  # run --no-patch: the user asked for NNI as it is


def test_patched_python_still_compiles_and_advisors_import():
    """A patch of an NNI Python file must leave valid Python (a JS-style marker once broke every tuner)."""
    import subprocess
    import sys

    src = nni_patch.site_dir()
    for f in nni_patch.FILES:
        if f.endswith(".py"):
            compile((src / f).read_text(), f, "exec")
    subprocess.run([sys.executable, "-c", "import nni.algorithms.hpo.hyperband_advisor, nni.runtime.msg_dispatcher_base"],
                   check=True, capture_output=True)


def test_string_parameter_ids_are_new_trials():
    """Hyperband / BOHB send ids like "0_2_5": NNI 3.0 compared them with an int and its advisor died."""
    from nni.recoverable import Recoverable

    r = Recoverable()
    r.recovered_max_param_id = -1
    assert r.is_created_in_previous_exp("0_2_5") is False and r.is_created_in_previous_exp(3) is False


def test_nnictl_waits_for_a_manager_whose_rest_server_is_slow_to_start(monkeypatch):
    """NNI 3.0 gave the manager's REST server 3 s: beside a retrain and the test suite `nnictl create` failed
    with 'Connection refused' and started nothing."""
    from nni.experiment import launcher

    calls = []

    def get(port, path, url_prefix):
        calls.append(path)
        if len(calls) < 20:  # the server answers on the 20th try, ~20 s after the manager was started
            raise ConnectionRefusedError(port)

    monkeypatch.setattr(launcher.rest, "get", get)
    monkeypatch.setattr(launcher.time, "sleep", lambda s: None)
    launcher._check_rest_server(8080)
    assert calls == ["/check-status"] * 20
