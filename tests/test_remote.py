"""NNI's remote training service against an sshd started here on 127.0.0.1 (a throwaway key, a high
port): trials run on the "remote host" over SSH, write their records there, export works."""
import getpass
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest



from .nni_helpers import records_of, ROOT, experiment_id, free_port, run_cli, write_config

pytestmark = pytest.mark.slow
SSHD = Path("/usr/sbin/sshd")


@pytest.fixture
def ssh_host(tmp_path):
    """An sshd on a free loopback port accepting one throwaway key; the remote HOME is a temp dir."""
    if not SSHD.exists() or not shutil.which("ssh-keygen"):
        pytest.skip("Debian openssh-server not installed (.ci/run installs it)")
    d = tmp_path / "sshd"
    d.mkdir()
    for name in ("client_key", "host_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True)
    remote_home = tmp_path / "remote_home"
    remote_home.mkdir()
    # environment= (PermitUserEnvironment): the remote side's ~/nni-experiments lands in the temp dir
    (d / "authorized_keys").write_text(f'environment="HOME={remote_home}" {(d / "client_key.pub").read_text()}')
    port = free_port()
    (d / "sshd_config").write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {d / 'host_key'}",
        f"AuthorizedKeysFile {d / 'authorized_keys'}", "PubkeyAuthentication yes", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "PermitRootLogin prohibit-password", "PermitUserEnvironment yes",
        "StrictModes no", "UsePAM no", f"PidFile {d / 'sshd.pid'}", "Subsystem sftp internal-sftp", ""]))
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege-separation dir
    proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(d / "sshd_config")], stderr=subprocess.PIPE, text=True)
    ssh = ["ssh", "-i", str(d / "client_key"), "-p", str(port), "-o", "StrictHostKeyChecking=no",
           "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", f"{getpass.getuser()}@127.0.0.1"]
    t0 = time.time()
    while subprocess.run([*ssh, "true"], capture_output=True).returncode != 0:
        if proc.poll() is not None or time.time() - t0 > 20:
            proc.kill()
            pytest.fail(f"sshd did not start: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.3)
    yield {"port": port, "key": d / "client_key", "user": getpass.getuser(), "home": remote_home, "ssh": ssh}
    proc.terminate()
    proc.wait(10)


def test_search_through_the_remote_training_service(tmp_path, ssh_host):
    import yaml

    ship = yaml.safe_load((ROOT / "experiments" / "remote.yml").read_text())
    assert ship["trainingService"]["platform"] == "remote"  # the shipped config's shape, checked by NNI below
    config = write_config(tmp_path, tuner="TPE", trials=3, concurrency=2,
                          class_args={"seed": 1, "optimize_mode": "maximize"})
    cfg = yaml.safe_load(config.read_text())
    service = {k: v for k, v in ship["trainingService"].items() if k != "trialGpuNumber"}  # no GPU here
    cfg["trainingService"] = dict(service, machineList=[{
        "host": "127.0.0.1", "port": ssh_host["port"], "user": ssh_host["user"], "sshKeyFile": str(ssh_host["key"]),
        "pythonPath": str(Path(sys.executable).parent)}])
    config.write_text(yaml.safe_dump(cfg))
    proc = run_cli(["run", str(config), "--port", str(free_port()), "--timeout", "400", "--stall", "150"], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    exp_id = experiment_id(proc.stdout)
    exp_dir = tmp_path / "exps" / exp_id
    assert "exported from NNI's database" in proc.stdout

    # the trials ran on the "remote" side: their records are in the SSH user's ~/nni-experiments
    remote_exp = ssh_host["home"] / "nni-experiments" / exp_id
    records = records_of(remote_exp)
    assert len(records) == 3 and all(r["status"] == "SUCCEEDED" for r in records)
    assert not records_of(exp_dir)  # nothing of them on the manager's side
    top = json.loads((exp_dir / "top_arch.json").read_text())
    by_id = {r["trial_id"]: r for r in records}
    best_dice = max(r["metrics"]["dice"] for r in records)  # tiny trials can tie: compare scores, then the trial
    assert top["metrics"]["dice"] == best_dice and top["arch"] == by_id[top["trial_id"]]["arch"]

    # records fetched from the host next to the experiment (rsync/scp): export cross-checks them with NNI
    shutil.copytree(remote_exp / "environments", exp_dir / "environments", dirs_exist_ok=True)
    out = run_cli(["export", exp_id, "--exp-dir", str(tmp_path / "exps"), "--out", str(tmp_path / "top.json")], tmp_path)
    assert out.returncode == 0, out.stderr
    again = json.loads((tmp_path / "top.json").read_text())
    assert again["metrics"]["dice"] == best_dice and again["arch"] == by_id[again["trial_id"]]["arch"]
    assert again["cross_check"] == {"trials_checked": 3, "mismatches": [], "note": None}
