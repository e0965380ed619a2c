"""The package's front door: ``from nni_seg import ...`` is cheap, complete, and the README's snippet runs."""
import json
import re
import subprocess
import sys
from pathlib import Path

import nni_seg

ROOT = Path(__file__).resolve().parents[1]


def test_importing_the_front_door_imports_neither_torch_nor_nni():
    code = ("import sys; from nni_seg import SegNet, unet_arch, load_arch; "
            "print(sorted(m for m in ('torch', 'nni') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "['torch']"  # SegNet is an nn.Module: torch on first use, NNI never
    code = "import sys, nni_seg; print(sorted(m for m in ('torch', 'nni') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_every_public_name_resolves_to_its_owner():
    for name in nni_seg.__all__:
        assert getattr(nni_seg, name) is not None, name


def test_the_readme_python_snippet_runs(tmp_path, monkeypatch):
    from nni_seg import seed_arch

    snippet = re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)[1]
    (tmp_path / "top_arch.json").write_text(json.dumps({"arch": seed_arch()}))
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(snippet, "README.md", "exec"), scope)
    assert tuple(scope["logits"].shape) == (2, 11, 96, 128)


def test_the_readme_stays_short_and_keeps_its_two_commands():
    text = (ROOT / "README.md").read_text()
    assert len(text.split()) <= 1200
    assert "bash scripts/setup.sh && .venv/bin/python -m nni_seg run config.yml" in text
    assert "bash scripts/setup.sh && .venv/bin/python -m pytest -q" in text
