"""Typed records: written with a format version, read strictly, required fields enforced."""
import json

import pytest

from nni_seg.config import schema
from nni_seg.config.schema import FORMAT_VERSION, Rung, Status, TopArch, TrialRecord
from nni_seg.errors import RecordError
from nni_seg.space.arch import seed_arch


def test_a_record_round_trips_with_its_format_version(tmp_path):
    rec = TrialRecord(status=Status.SUCCEEDED, arch=seed_arch(), metrics={"default": 0.5, "dice": 0.5, "miou": 0.3},
                      rung=Rung(rung=1, epochs=3, size=(48, 64), candidate=2, repeat=1), recipe={"train_lr": 1e-3})
    path = schema.save(rec, tmp_path / "r.json")
    assert json.loads(path.read_text())["format_version"] == FORMAT_VERSION
    assert schema.load(TrialRecord, path) == rec


@pytest.mark.parametrize("obj,says", [({"arch": {}, "format_version": 99}, "newer nni_seg"),
                                      ({"status": "SUCCEEDED", "arch": seed_arch(), "metrics": {}},
                                       "a SUCCEEDED record needs default"),
                                      ({"summary": "no arch"}, r"missing key\(s\) arch"),
                                      ({"arch": seed_arch(), "rung": {"rung": "one"}}, "rung: expected an integer")])
def test_a_bad_record_is_one_line_naming_the_file_and_field(tmp_path, obj, says):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(obj))
    kind = TopArch if "summary" in obj else TrialRecord
    with pytest.raises(RecordError, match=says):
        schema.load(kind, path)
