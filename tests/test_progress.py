"""Progress off a terminal: plain lines that say how far, with an eta only when the total is known."""
import io

from nni_seg.progress import Progress


def test_plain_lines_count_against_the_total_and_give_an_eta():
    out = io.StringIO()
    bar = Progress(4, "retrain x", "epoch", stream=out, every=0.0)
    bar.update()
    bar.note("epoch 1: loss 0.5")
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("retrain x: 1/4 epoch (eta ") and lines[0].endswith("s)")
    assert lines[1].startswith("retrain x: 1/4 epoch epoch 1: loss 0.5 (eta ")


def test_without_a_total_lines_count_only_and_claim_no_eta():
    out = io.StringIO()
    bar = Progress(0, "pack-data: reading", "img", stream=out, every=0.0)
    bar.update(37)
    bar.note("done")
    assert out.getvalue().splitlines() == ["pack-data: reading: 37 img", "pack-data: reading: 37 img done"]


def test_the_last_step_prints_no_line_of_its_own():
    out = io.StringIO()
    bar = Progress(2, "evaluate val", "img", stream=out, every=0.0)
    bar.update(2)
    assert out.getvalue() == ""


def test_plain_mode_ends_on_the_final_count_when_its_last_line_said_less():
    out = io.StringIO()
    with Progress(0, "pack-data: reading", "img", stream=out, every=3600.0) as bar:
        for _ in range(5):
            bar.update()
    assert out.getvalue().splitlines() == ["pack-data: reading: 1 img", "pack-data: reading: 5 img"]


def test_with_a_known_total_closing_adds_no_line_of_its_own():
    out = io.StringIO()
    with Progress(3, "evaluate val", "img", stream=out, every=3600.0) as bar:
        for _ in range(3):
            bar.update()
    assert len(out.getvalue().splitlines()) == 1  # the first step's line; the caller reports the end
