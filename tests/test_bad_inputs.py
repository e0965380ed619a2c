"""Every command, given bad input: exit code 2 (1 where the work had started), one line on stderr naming the
file or value, no traceback, and no input file changed. Table-driven: one row per case."""
import hashlib
import json
from pathlib import Path

import pytest

from nni_seg.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Files the cases point at: a checkpoint, an architecture, images, configs (made once)."""
    w = tmp_path_factory.mktemp("world")
    assert main(["retrain", "seed", "--out", str(w / "ck"), "--epochs", "1", "--size", "16", "16", "--num-train", "8",
                 "--num-val", "4", "--batch-size", "4", "--device", "cpu"]) == 0
    (w / "folder").mkdir()
    (w / "true_depth.json").write_text(json.dumps({**json.loads((w / "ck" / "meta.json").read_text())["arch"],
                                                   "enc1_depth": True}))
    (w / "width_float.json").write_text(json.dumps({**json.loads((w / "ck" / "meta.json").read_text())["arch"],
                                                    "enc2_width": 128.0}))
    (w / "not_json.json").write_text("{nope")
    (w / "img.png").write_bytes(b"not an image")
    (w / "file.txt").write_text("precious")
    (w / "truncated").mkdir()
    (w / "truncated" / "meta.json").write_bytes((w / "ck" / "meta.json").read_bytes())
    (w / "truncated" / "best.pt").write_bytes((w / "ck" / "best.pt").read_bytes()[:100])
    good = (ROOT / "config.yml").read_text().replace("experiments/", str(ROOT / "experiments") + "/").replace(
        "trialCodeDirectory: .", f"trialCodeDirectory: {ROOT}")
    (w / "zero_trials.yml").write_text(good.replace("maxTrialNumber: 8", "maxTrialNumber: 0"))
    (w / "typo.yml").write_text(good.replace("maxTrialNumber", "maxTrailNumber"))
    (w / "search_size.yml").write_text("data: {size: 16}\n")
    (w / "search_epochs.yml").write_text("train: {epochs: two}\n")
    (w / "search_port.yml").write_text("search: {port: notaport}\n")
    (w / "tune_space.yml").write_text("space: {depth: {_type: choice, _value: [1]}}\n")
    (w / "train0.yml").write_text("train: 0\n")
    (w / "good.yml").write_text(good)
    (w / "tune_epochs.yml").write_text("tune: {trial_epochs: 2}\nspace: {epochs: {_type: choice, _value: [1, 2]}}\n")
    (w / "bomb.yml").write_text("a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{k}: &{k} [{', '.join([f'*{p}'] * 10)}]\n" for p, k in zip("abcdefgh", "bcdefghi")))
    (w / "deep.yml").write_text("train: " + "[" * 3000 + "]" * 3000 + "\n")
    for name, change in (("std0", {"std": [0.0, 0.0, 0.0]}), ("noarch", {"arch": None})):
        (w / name).mkdir()
        meta = json.loads((w / "ck" / "meta.json").read_text())
        meta.update(change)
        (w / name / "meta.json").write_text(json.dumps({k: v for k, v in meta.items() if v is not None}))
        (w / name / "best.pt").write_bytes((w / "ck" / "best.pt").read_bytes())
    (w / "exp" / "db").mkdir(parents=True)
    (w / "exp" / "db" / "nni.sqlite").write_bytes(b"SQLite format 3\x00" + b"\x01" * 200)
    (w / "exp" / "environments").mkdir()
    return w


CASES = [
    # (command line with {w} for the world folder, exit code, text the one line must contain)
    ("nosuchcommand", 2, "unknown command 'nosuchcommand'"),
    ("run {w}/missing.yml", 2, "config not found: {w}/missing.yml"),
    ("run {w}/typo.yml", 2, "maxtrailnumber"),
    ("run {w}/zero_trials.yml", 2, "maxTrialNumber: must be a positive integer, got 0"),
    ("run {w}/folder", 2, "is a folder, not a YAML file"),
    ("run --timeout -1", 2, "--timeout: must be > 0, got -1.0"),
    ("run --port 70000", 2, "--port: must be <= 65535, got 70000"),
    ("run --resume nosuchexp", 2, "experiment 'nosuchexp' is not in nnictl's registry"),
    ("search --config {w}/search_size.yml", 2, "search_size.yml: data.size: expected a list, got 16"),
    ("search --config {w}/search_epochs.yml", 2, "search_epochs.yml: train.epochs: expected an integer, got 'two'"),
    ("search --config {w}/search_port.yml", 2, "search_port.yml: search.port: expected an integer, got 'notaport'"),
    ("search --strategy darts", 2, "--strategy: must be one of enas, evolution, tpe, random; got 'darts'"),
    ("search --trials 0", 2, "--trials: must be >= 1, got 0"),
    ("export nosuchexp --exp-dir {w}", 2, "experiment 'nosuchexp' not found"),
    ("export {w}/exp", 2, "exp/db/nni.sqlite: NNI's database is unreadable"),
    ("export {w}/exp --confirm -2", 2, "--confirm must be >= 0 and --extra-trainings >= 1, got -2 and 1"),
    ("export {w}/exp --confirm 1 --repeats 0", 2, "--extra-trainings >= 1, got 1 and 0"),  # the old name still works
    ("recipe --confirm -1", 2, "--confirm: must be >= 0, got -1"),
    ("bench-strategies --dataset camvid --strategies enas --trial-config {w}/missing.yml", 2, "missing.yml"),
    ("report {w}/exp", 2, "nni.sqlite: NNI's database is unreadable"),
    ("recipe --search-config {w}/missing.yml", 2, "config not found"),
    ("recipe --baselines seed,resnet", 2, "--baselines: unknown network(s) resnet"),
    ("recipe --repeats 0", 2, "--repeats: must be >= 1, got 0"),
    ("retrain seed --epochs 0", 2, "--epochs: must be >= 1, got 0"),
    ("retrain seed --batch-size -4", 2, "--batch-size: must be >= 1, got -4"),
    ("retrain seed --num-train -3", 2, "--num-train: must be >= 1, got -3"),
    ("retrain seed --loss foo", 2, "--loss: must be one of ce, ce+dice; got 'foo'"),
    ("retrain seed --size 8 8", 2, "--size 8 8: digit scenes need at least 10x10"),
    ("retrain seed --scale-min 2", 2, "--scale-min: must be <= scale_max"),
    ("retrain seed --device cuda:3", 2, "--device cuda:3: CUDA is not available"),
    ("retrain seed --device gpu", 2, "--device: must be auto, cpu, cuda or cuda:N; got 'gpu'"),
    ("retrain {w}/missing.json", 2, "architecture file not found: {w}/missing.json"),
    ("retrain {w}/true_depth.json", 2, "enc1_depth=True is not one of [1, 2, 3]"),
    ("retrain {w}/width_float.json", 2, "enc2_width=128.0 is not one of"),
    ("retrain {w}/not_json.json", 2, "not_json.json is not valid JSON"),
    ("retrain seed --out {w}/ck --epochs 1", 2, "already holds a checkpoint"),
    ("retrain unet --out {w}/ck --resume --epochs 2", 2, "--resume: {w}/ck holds a checkpoint of another architecture"),
    ("retrain seed --out {w}/file.txt", 2, "--out {w}/file.txt is a file"),
    ("evaluate {w}/missing", 2, "checkpoint folder not found: {w}/missing"),
    ("evaluate {w}/file.txt", 2, "is a file; give the checkpoint folder"),
    ("evaluate {w}/truncated", 2, "best.pt: not a readable checkpoint"),
    ("evaluate {w}/ck --split test", 2, "digits has no test split"),
    ("evaluate {w}/ck --split nope", 2, "argument --split: invalid choice: 'nope'"),
    ("evaluate {w}/ck --dataset camvid --data-root {w}/folder", 2, "dataset folder not found: {w}/folder/train"),
    ("evaluate {w}/ck --json {w}/file.txt", 2, "--json {w}/file.txt exists; not replaced"),
    ("predict {w}/ck {w}/missing.png --out {w}/p1", 2, "image not found: {w}/missing.png"),
    ("predict {w}/ck {w}/img.png --out {w}/p2", 2, "cannot read image {w}/img.png"),
    ("predict {w}/ck {w}/folder --out {w}/p3", 2, "image {w}/folder is a folder"),
    ("predict {w}/ck {w}/img.png --out {w}/file.txt", 2, "--out {w}/file.txt is a file"),
    ("onnx {w}/ck {w}/folder", 2, "ONNX file {w}/folder is a folder"),
    ("onnx {w}/ck {w}/file.txt", 2, "ONNX file {w}/file.txt exists; not replaced without --force"),
    ("onnx {w}/ck {w}/m.onnx --atol 0", 2, "--atol: must be > 0"),
    ("onnx {w}/missing {w}/m.onnx", 2, "checkpoint folder not found"),
    ("draw {w}/true_depth.json --out {w}/d.png", 2, "enc1_depth=True is not one of"),
    ("draw seed --out {w}/file.txt", 2, "drawing {w}/file.txt exists"),
    ("pack-data --out {w}/folder", 2, "--out {w}/folder is a folder"),
    ("pack-data --out {w}/file.txt", 2, "--out {w}/file.txt exists; not replaced"),
    ("pack-data --out {w}/x.npz --quality 0", 2, "argument --quality: invalid choice: 0"),
    ("pack-data --out {w}/x.npz --dataset nope", 2, "--dataset: must be one of digits"),
    ("pack-data --out {w}/x.npz --dataset camvid", 2, "dataset 'camvid' needs --data-root"),
    ("space --kind x", 2, "argument --kind: invalid choice: 'x'"),
    ("space --out {w}/folder", 2, "--out {w}/folder is a folder"),
    ("space --out {w}/file.txt", 2, "--out {w}/file.txt exists; not replaced without --force"),
    ("report {w}/exp --out {w}/file.txt", 2, "is a file"),
    ("tune {w}/missing.json", 2, "architecture file not found"),
    ("tune seed --trials 0", 2, "--trials: must be >= 1, got 0"),
    ("tune seed --config {w}/tune_space.yml", 2, "space.depth is not a training setting"),
    ("tune seed --tuner SMAC", 2, "--tuner: must be one of TPE, Random, Evolution, Anneal; got 'SMAC'"),
    ("bench-strategies --budget 0", 2, "--budget: must be >= 1, got 0"),
    ("bench-strategies --strategies nope", 2, "argument --strategies: invalid choice: 'nope'"),
    ("bench-strategies --budget 3 --compute 9", 2, "--budget and --compute say the same thing twice"),
    ("bench-strategies --dataset camvid --shard 2/2", 2, "--shard: K/N with 0 <= K < N"),
    ("patch-nni --check --revert", 2, "not allowed with argument"),
    ("trial --arch seed --batch-size -4", 2, "--batch-size: must be >= 1, got -4"),
    ("trial --arch seed --config {w}/search_epochs.yml", 2, "train.epochs: expected an integer, got 'two'"),
    # hostile YAML: refused before anything is built
    ("trial --arch seed --config {w}/bomb.yml", 2, "aliases expand to more than"),
    ("trial --arch seed --config {w}/deep.yml", 2, "nested deeper than"),
    ("run {w}/bomb.yml", 2, "aliases expand to more than"),
    ("trial --arch seed --config {w}/train0.yml", 2, "train: expected a mapping, got int"),
    ("run {w}/good.yml --out {w}/file.txt", 2, "{w}/file.txt exists"),
    # typed records: required fields and values that cannot be right
    ("evaluate {w}/std0", 2, "std: must be finite and > 0"),
    ("evaluate {w}/noarch", 2, "missing key(s) arch"),
    # checked before the expensive part
    ("tune seed --config {w}/tune_epochs.yml", 2, "epochs is tuned (space.epochs): leave tune.trial_epochs unset"),
    ("tune seed --dataset folder --data-root {w}/missing", 2, "data root not found"),
    ("retrain seed --out {w}/ck --resume --epochs 1 --size 16 16 --num-train 8 --num-val 4 --batch-size 4 "
     "--device cpu", 2, "has trained 1 epochs already"),
]


def _command(argv: list[str]) -> int:
    """``python -m nni_seg ...``, or ``python -m bench strategies ...`` for the benchmark's rows."""
    if argv[0] == "bench-strategies":
        from bench.__main__ import main as bench_main

        return bench_main(["strategies", *argv[1:]])
    return main(argv)


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize("line,code,text", CASES, ids=[c[0].split()[0] + ":" + c[2][:30] for c in CASES])
def test_bad_input_is_one_line(world, capsys, monkeypatch, tmp_path, line, code, text):
    monkeypatch.setenv("NNI_HOME_DIR", str(tmp_path / "nni-home"))
    monkeypatch.chdir(tmp_path)
    before = _digest(world)
    argv = [a.replace("{w}", str(world)) for a in line.split()]
    got = _command(argv)
    captured = capsys.readouterr()
    err = captured.err
    assert got == code, (argv, err, captured.out[-500:])
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err + captured.out
    assert text.replace("{w}", str(world)).lower() in err.lower(), err
    assert _digest(world) == before  # no input changed, nothing replaced


def test_unexpected_errors_are_one_line_with_a_hint(monkeypatch, capsys):
    from nni_seg import cli

    def boom(args):
        raise KeyError("surprise")

    monkeypatch.setitem(cli.COMMANDS, "space", cli.Command("x", lambda p: None, boom))
    assert main(["space"]) == 1
    err = capsys.readouterr().err
    assert err == "error: unexpected KeyError: surprise (rerun with --debug for the traceback)\n"
    assert main(["--debug", "space"]) == 1
    assert "Traceback" in capsys.readouterr().err


@pytest.mark.parametrize("err,code,text", [
    (PermissionError(13, "Permission denied", "/ro/top_arch.json"), 2, "error: /ro/top_arch.json: Permission denied; "
                                                                       "choose a writable place"),
    (OSError(30, "Read-only file system", "/ro/x"), 2, "error: /ro/x: Read-only file system"),
    (OSError(28, "No space left on device", "/full/x"), 1, "error: /full/x: no space left on the device"),
], ids=["permission", "read-only", "disk full"])
def test_an_unwritable_or_full_output_is_one_line_not_an_unexpected_error(capsys, err, code, text):
    from nni_seg.errors import guarded

    def fail():
        raise err

    assert guarded(fail) == code
    out = capsys.readouterr().err
    assert out.startswith(text) and out.count("\n") == 1 and "unexpected" not in out


def test_an_output_in_a_read_only_folder_is_refused_before_any_work(tmp_path, monkeypatch):
    import os

    from nni_seg.errors import UserError
    from nni_seg.files import check_output

    real = os.access
    monkeypatch.setattr("nni_seg.files.os.access", lambda p, mode: False if str(p) == str(tmp_path) else real(p, mode))
    with pytest.raises(UserError, match=f"{tmp_path} is not writable; choose a writable place"):
        check_output(tmp_path / "sub" / "top_arch.json", what="export")
