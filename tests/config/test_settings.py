"""Settings: every field typed and ranged, from a flag or a YAML alike; help texts say a default once."""
import pytest

from nni_seg.config._typed import FieldError, convert, from_dict
from nni_seg.config.settings import DataSettings, Parser, RunSettings, TrainSettings, add_flags, from_flags


@pytest.mark.parametrize("tp,value,want", [(int, 3, 3), (float, 3, 3.0), (tuple[int, int], [2, 3], (2, 3)),
                                           (int | None, None, None), (str, "x", "x")])
def test_values_convert_to_their_field_types(tp, value, want):
    got = convert(tp, value)
    assert got == want and type(got) is type(want)


@pytest.mark.parametrize("tp,value", [(int, True), (int, 2.5), (float, "1e-3"), (tuple[int, int], [1]), (str, 3)])
def test_a_value_of_the_wrong_type_is_refused(tp, value):
    with pytest.raises(FieldError):
        convert(tp, value)


@pytest.mark.parametrize("data,says", [({"epochs": 0}, "epochs: must be >= 1"), ({"loss": "l1"}, "loss"),
                                       ({"lr": 0}, "lr"), ({"scale_min": 2.0, "scale_max": 1.0}, "scale_min"),
                                       ({"epoch": 3}, "epoch")])
def test_a_bad_training_setting_names_its_field(data, says):
    with pytest.raises(FieldError, match=says):
        from_dict(TrainSettings, data)


def test_flags_override_a_yaml_base_and_a_bad_flag_is_named():
    p = Parser(prog="x")
    add_flags(p, TrainSettings)
    base = TrainSettings(epochs=5, lr=1e-3)
    got = from_flags(TrainSettings, p.parse_args(["--lr", "0.01"]), base)
    assert (got.epochs, got.lr) == (5, 0.01)
    with pytest.raises(Exception, match="--epochs: must be >= 1"):
        from_flags(TrainSettings, p.parse_args(["--epochs", "0"]), base)


def test_help_says_each_default_once():
    p = Parser(prog="x")
    add_flags(p, DataSettings)
    text = p.format_help()
    assert "(default: the dataset's own)" in text and "(default: None)" not in text
    assert text.count("default:") == text.count("(default:")


@pytest.mark.parametrize("argv,want", [(["--no-patch"], True), ([], False)])
def test_a_flag_named_no_something_turns_its_setting_on(argv, want):
    """``--no-patch`` sets ``no_patch``; argparse's BooleanOptionalAction would read it as its own negation."""
    p = Parser(prog="x")
    add_flags(p, RunSettings)
    assert from_flags(RunSettings, p.parse_args(argv)).no_patch is want
