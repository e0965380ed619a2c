import numpy as np
import pytest
import torch
from PIL import Image

from nni_seg.errors import DataError
from nni_seg.data import DATASETS, SegData, default_palette, digit_scenes, load_dataset
from nni_seg.config.settings import DataSettings as DataConfig


def test_digits_default_is_deterministic_multiclass_and_not_colour_separable():
    a = load_dataset(DataConfig(size=(32, 32), num_train=16, num_val=8))
    b = load_dataset(DataConfig(size=(32, 32), num_train=16, num_val=8))
    assert torch.equal(a.train_images, b.train_images) and torch.equal(a.val_masks, b.val_masks)
    assert a.train_images.shape == (16, 3, 32, 32) and a.train_images.dtype == torch.uint8
    assert a.num_classes == 5 and a.background == 0
    assert len(a.train_masks.unique()) >= 4
    # a nearest-mean-colour classifier must do badly: colour does not give the class
    x = a.train_images.permute(0, 2, 3, 1).reshape(-1, 3).float()
    y = a.train_masks.reshape(-1).long()
    means = torch.stack([x[y == c].mean(0) for c in range(5)])
    acc_fg = ((torch.cdist(x, means).argmin(1) == y) & (y > 0)).sum() / (y > 0).sum()
    assert acc_fg < 0.5
    c = load_dataset(DataConfig(size=(32, 32), num_train=16, num_val=8, data_seed=1))
    assert not torch.equal(a.train_images, c.train_images)


def test_digit_train_and_val_differ():
    tx, _ = digit_scenes(4, (24, 24), 0, "train")
    vx, _ = digit_scenes(4, (24, 24), 0, "val")
    assert not torch.equal(tx, vx)


def test_unknown_dataset_lists_valid_names():
    from nni_seg.errors import ConfigError

    with pytest.raises(ConfigError, match="dataset: must be one of digits, camvid, isbi2012, cityscapes, voc2012, "
                                          "folder, packed; got 'cityscape'"):
        DataConfig(dataset="cityscape")
    assert set(DATASETS) == {"digits", "camvid", "isbi2012", "cityscapes", "voc2012", "folder", "packed"}


def _camvid_tree(root, n=3, size=(12, 16), labels=12, splits=("train", "val")):
    rng = np.random.default_rng(0)
    for split in splits:
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(root / split / f"f{i}.png")
            Image.fromarray(rng.integers(0, labels, size, dtype=np.uint8)).save(root / f"{split}annot" / f"f{i}.png")


def test_camvid_layout_loads_and_resizes(tmp_path):
    _camvid_tree(tmp_path)
    d = load_dataset(DataConfig(dataset="camvid", data_root=str(tmp_path), size=(8, 8)))
    assert d.train_images.shape == (3, 3, 8, 8) and d.val_masks.shape == (3, 8, 8)
    assert d.ignore_index == 11 and d.num_classes == 11


def test_missing_root_and_empty_folder(tmp_path):
    with pytest.raises(DataError, match="needs --data-root"):
        load_dataset(DataConfig(dataset="camvid"))
    with pytest.raises(DataError, match="data root not found"):
        load_dataset(DataConfig(dataset="camvid", data_root=str(tmp_path / "nope")))
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError, match="no images"):
        load_dataset(DataConfig(dataset="camvid", data_root=str(tmp_path)))


def test_unpaired_mask_size_labels_and_corrupt_files(tmp_path):
    _camvid_tree(tmp_path)
    (tmp_path / "trainannot" / "f1.png").rename(tmp_path / "trainannot" / "g1.png")
    with pytest.raises(DataError, match="do not pair.*f1.png"):
        load_dataset(DataConfig(dataset="camvid", data_root=str(tmp_path)))
    (tmp_path / "trainannot" / "g1.png").rename(tmp_path / "trainannot" / "f1.png")

    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "trainannot" / "f0.png")
    with pytest.raises(DataError, match=r"trainannot/f0.png is 5x5 but its image is 16x12"):
        load_dataset(DataConfig(dataset="camvid", data_root=str(tmp_path)))

    Image.fromarray(np.full((12, 16), 40, np.uint8)).save(tmp_path / "trainannot" / "f0.png")
    with pytest.raises(DataError, match=r"f0.png has label value\(s\) \[40\]"):
        load_dataset(DataConfig(dataset="camvid", data_root=str(tmp_path)))

    (tmp_path / "trainannot" / "f0.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(DataError, match="cannot read image .*f0.png"):
        load_dataset(DataConfig(dataset="camvid", data_root=str(tmp_path)))


def test_grayscale_image_is_converted_to_rgb(tmp_path):
    _camvid_tree(tmp_path)
    Image.fromarray(np.zeros((12, 16), np.uint8)).save(tmp_path / "train" / "f0.png")
    d = load_dataset(DataConfig(dataset="camvid", data_root=str(tmp_path)))
    assert d.train_images.shape[1] == 3


def test_isbi_layout(tmp_path):
    (tmp_path / "image").mkdir()
    (tmp_path / "label").mkdir()
    for i in range(10):
        Image.fromarray(np.full((16, 16), i * 10, np.uint8)).save(tmp_path / "image" / f"{i}.png")
        Image.fromarray(np.where(np.eye(16) > 0, 0, 255).astype(np.uint8)).save(tmp_path / "label" / f"{i}.png")
    d = load_dataset(DataConfig(dataset="isbi2012", data_root=str(tmp_path), size=(8, 8)))
    assert d.train_images.shape == (8, 1, 8, 8) and d.val_images.shape == (2, 1, 8, 8)
    assert int(d.val_images[-1].float().mean()) == 90  # val are the last by number, not by string order
    assert set(d.train_masks.unique().tolist()) == {0, 1}


def test_real_camvid_if_present(shared_data):
    d = load_dataset(DataConfig(dataset="camvid", data_root=str(shared_data / "camvid"), size=(24, 32),
                                num_train=4, num_val=2))
    assert d.train_images.shape == (4, 3, 24, 32) and int(d.train_masks.max()) <= 11


def _png(path, arr, palette=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(arr)
    if palette:
        im = im.convert("P") if im.mode != "P" else im
        im.putpalette(sum(default_palette(256), ()))
    im.save(path)


def test_cityscapes_layout_maps_label_ids_to_train_ids(tmp_path):
    rng = np.random.default_rng(0)
    for split, cities in (("train", ["aachen", "bonn"]), ("val", ["lindau"])):
        for city in cities:
            stem = f"{city}_000000_000019"
            _png(tmp_path / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png",
                 rng.integers(0, 255, (8, 16, 3), dtype=np.uint8))
            ids = np.zeros((8, 16), np.uint8)
            ids[:, :4], ids[:, 4:8], ids[:, 8:12] = 7, 26, 33  # road, car, bicycle; rest unlabeled (0)
            _png(tmp_path / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", ids)
    d = load_dataset(DataConfig(dataset="cityscapes", data_root=str(tmp_path)))
    assert d.num_classes == 19 and d.class_names[0] == "road" and d.class_names[13] == "car"
    assert d.ignore_index == 255 and len(d.palette) == 19
    assert d.train_images.shape == (2, 3, 256, 512) and d.val_masks.shape == (1, 256, 512)
    assert set(d.train_masks.unique().tolist()) == {0, 13, 18, 255}
    with pytest.raises(DataError, match="Cityscapes train .* not found under"):
        load_dataset(DataConfig(dataset="cityscapes", data_root=str(tmp_path / "gtFine")))


def _voc_tree(root, n=4):
    base = root / "VOCdevkit" / "VOC2012"
    rng = np.random.default_rng(1)
    names = [f"2007_{i:06d}" for i in range(n)]
    for name in names:
        _png(base / "JPEGImages" / f"{name}.png", rng.integers(0, 255, (10, 12, 3), dtype=np.uint8))
        m = rng.integers(0, 21, (10, 12)).astype(np.uint8)
        m[0] = 255  # border
        _png(base / "SegmentationClass" / f"{name}.png", m, palette=True)
    (base / "ImageSets" / "Segmentation").mkdir(parents=True)
    (base / "ImageSets" / "Segmentation" / "train.txt").write_text("\n".join(names[:3]) + "\n")
    (base / "ImageSets" / "Segmentation" / "val.txt").write_text(names[3] + "\n")
    return base


def test_voc_layout_reads_palette_masks_as_indices(tmp_path):
    base = _voc_tree(tmp_path)
    for p in (base / "JPEGImages").iterdir():  # torchvision expects .jpg names
        Image.open(p).save(p.with_suffix(".jpg"), quality=95)
        p.unlink()
    for root in (tmp_path, base):  # the folder holding VOCdevkit, or VOC2012 itself
        d = load_dataset(DataConfig(dataset="voc2012", data_root=str(root), size=(10, 12)))
        assert d.num_classes == 21 and d.background == 0 and d.ignore_index == 255
        assert d.train_images.shape == (3, 3, 10, 12) and d.val_images.shape == (1, 3, 10, 12)
        assert int(d.train_masks[:, 0].min()) == 255 and int(d.train_masks[:, 1:].max()) <= 20
    (base / "ImageSets" / "Segmentation" / "val.txt").unlink()
    with pytest.raises(DataError, match="PASCAL VOC 2012 val"):
        load_dataset(DataConfig(dataset="voc2012", data_root=str(tmp_path)))


def _folder_tree(root, n=5, classes=("bg", "a", "b")):
    rng = np.random.default_rng(2)
    (root).mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("\n".join(classes) + "\n")
    for i in range(n):
        _png(root / "images" / f"im{i}.png", rng.integers(0, 255, (9, 11, 3), dtype=np.uint8))
        _png(root / "masks" / f"im{i}.png", rng.integers(0, len(classes), (9, 11)).astype(np.uint8))


def test_folder_layout_split_palette_and_errors(tmp_path):
    _folder_tree(tmp_path)
    d = load_dataset(DataConfig(dataset="folder", data_root=str(tmp_path), size=(8, 8)))
    assert d.class_names == ["bg", "a", "b"] and len(d.train_images) == 4 and len(d.val_images) == 1
    assert d.colours() == default_palette(3)
    (tmp_path / "palette.txt").write_text("0 0 0\n255 0 0\n")
    with pytest.raises(DataError, match="palette.txt must give one 'R G B' line .0-255. per class"):
        load_dataset(DataConfig(dataset="folder", data_root=str(tmp_path)))
    (tmp_path / "palette.txt").write_text("0 0 0\n255 0 0\n0 0 255\n")
    assert load_dataset(DataConfig(dataset="folder", data_root=str(tmp_path))).colours()[2] == (0, 0, 255)
    # a colour mask is refused, naming the file; a grey mask saved as RGB is accepted
    _png(tmp_path / "masks" / "im2.png", np.stack([np.ones((9, 11), np.uint8)] * 3, -1))
    load_dataset(DataConfig(dataset="folder", data_root=str(tmp_path)))
    rgb = np.zeros((9, 11, 3), np.uint8)
    rgb[..., 0] = 1
    _png(tmp_path / "masks" / "im2.png", rgb)
    with pytest.raises(DataError, match=r"mask .*im2.png is a colour \(RGB\) image"):
        load_dataset(DataConfig(dataset="folder", data_root=str(tmp_path)))
    (tmp_path / "classes.txt").unlink()
    with pytest.raises(DataError, match="needs .*classes.txt"):
        load_dataset(DataConfig(dataset="folder", data_root=str(tmp_path)))


def test_folder_layout_with_train_val_subfolders(tmp_path):
    _folder_tree(tmp_path / "train", n=3)
    _folder_tree(tmp_path / "val", n=2)
    (tmp_path / "classes.txt").write_text("bg\na\nb\n")
    d = load_dataset(DataConfig(dataset="folder", data_root=str(tmp_path), size=(8, 8)))
    assert len(d.train_images) == 3 and len(d.val_images) == 2


def test_median_frequency_class_weights():
    y = torch.tensor([[0, 0, 0, 0, 0, 0, 1, 1, 2, 255]], dtype=torch.uint8).reshape(1, 1, 10)
    d = SegData("t", torch.zeros(1, 3, 1, 10, dtype=torch.uint8), y, torch.zeros(1, 3, 1, 10, dtype=torch.uint8),
                y, ["a", "b", "c", "d"], ignore_index=255)
    w = d.class_weights()
    # freqs 6/9, 2/9, 1/9 (255 ignored, class d absent): median 2/9
    assert torch.allclose(w, torch.tensor([2 / 6, 1.0, 2.0, 0.0]))
    assert torch.equal(d.class_weights("none"), torch.ones(4))
    with pytest.raises(DataError, match="valid: median_freq, none"):
        d.class_weights("inverse")


def test_pack_round_trip_png_is_lossless_jpeg_is_close(tmp_path, capsys):
    from nni_seg.cli import main
    from nni_seg.data import pack_dataset

    d = load_dataset(DataConfig(size=(32, 32), num_train=6, num_val=3))
    p = pack_dataset(d, tmp_path / "d.npz", "png")
    e = load_dataset(DataConfig(dataset="packed", data_root=str(p)))
    assert torch.equal(e.train_images, d.train_images) and torch.equal(e.val_masks, d.val_masks)
    assert e.class_names == d.class_names and e.background == 0 and e.colours() == d.colours()
    assert main(["pack-data", "--out", str(tmp_path / "j.npz"), "--size", "32", "32", "--num-train", "6",
                 "--num-val", "3"]) == 0
    assert "6 train + 3 val at 32x32" in capsys.readouterr().out
    j = load_dataset(DataConfig(dataset="packed", data_root=str(tmp_path / "j.npz"), num_train=4))
    assert len(j.train_images) == 4 and torch.equal(j.train_masks, d.train_masks[:4])  # masks lossless
    err = (j.train_images.float() - d.train_images[:4].float()).abs().mean()
    assert 0 < err < 25  # lossy JPEG q90 (these synthetic scenes are pixel noise + stripes: the worst case)
    r = load_dataset(DataConfig(dataset="packed", data_root=str(p), size=(16, 16)))
    assert r.train_images.shape == (6, 3, 16, 16)
    (tmp_path / "bad.npz").write_bytes(b"nope")
    with pytest.raises(DataError, match="bad.npz is not a packed dataset"):
        load_dataset(DataConfig(dataset="packed", data_root=str(tmp_path / "bad.npz")))


def test_pack_grayscale(tmp_path):
    from nni_seg.data import pack_dataset

    d = SegData("g", torch.randint(0, 255, (2, 1, 8, 8), dtype=torch.uint8), torch.zeros(2, 8, 8, dtype=torch.uint8),
                torch.randint(0, 255, (1, 1, 8, 8), dtype=torch.uint8), torch.ones(1, 8, 8, dtype=torch.uint8), ["a", "b"])
    e = load_dataset(DataConfig(dataset="packed", data_root=str(pack_dataset(d, tmp_path / "g.npz", "png"))))
    assert torch.equal(e.train_images, d.train_images) and e.in_channels == 1


def test_camvid_test_split_and_native_masks(tmp_path):
    _camvid_tree(tmp_path, splits=("train", "val", "test"))
    d = load_dataset(DataConfig(dataset="camvid", data_root=str(tmp_path), size=(8, 8)), test=True, native=True)
    assert d.test_images.shape == (3, 3, 8, 8) and d.split("test")[1].shape == (3, 8, 8)
    assert [tuple(m.shape) for m in d.native["test"]] == [(12, 16)] * 3  # as stored, not resized
    assert [tuple(m.shape) for m in d.native["val"]] == [(12, 16)] * 3 and "train" not in d.native
    plain = load_dataset(DataConfig(dataset="camvid", data_root=str(tmp_path), size=(8, 8)))
    assert plain.test_images is None and plain.native == {}
    with pytest.raises(DataError, match="no labelled test split here"):
        plain.split("test")


def test_test_split_missing_is_one_line(tmp_path):
    _camvid_tree(tmp_path)
    with pytest.raises(DataError, match="camvid has no labelled test split at .*test \\+ testannot"):
        load_dataset(DataConfig(dataset="camvid", data_root=str(tmp_path)), test=True)
    assert load_dataset(DataConfig(dataset="camvid", data_root=str(tmp_path)), test=None).test_images is None
    with pytest.raises(DataError, match="digits has no test split"):
        load_dataset(DataConfig(size=(16, 16), num_train=2, num_val=2), test=True)


def test_pack_keeps_the_test_split(tmp_path):
    from nni_seg.data import pack_dataset

    _camvid_tree(tmp_path / "cv", splits=("train", "val", "test"))
    d = load_dataset(DataConfig(dataset="camvid", data_root=str(tmp_path / "cv")), test=None)
    p = pack_dataset(d, tmp_path / "cv.npz", "png")
    e = load_dataset(DataConfig(dataset="packed", data_root=str(p)), test=True, native=True)
    assert torch.equal(e.test_masks, d.test_masks) and len(e.native["test"]) == 3


def test_digits_refuse_a_size_they_cannot_draw():
    with pytest.raises(DataError, match="--size 8 8: digit scenes need at least 10x10"):
        load_dataset(DataConfig(size=(8, 8), num_train=2, num_val=2))


def test_decompression_bomb_is_one_line(tmp_path, monkeypatch):
    from PIL import Image as PILImage

    from nni_seg.data import read_image

    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 10)  # a 15000x15000 image, in miniature
    _png(tmp_path / "big.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(DataError, match="big.png is too large to open safely"):
        read_image(tmp_path / "big.png", "RGB")


def _tamper_packed(src, dst, **changes):
    """A copy of packed file ``src`` with some arrays replaced (``None``: removed)."""
    import numpy as np

    with np.load(src) as z:
        arrays = {k: z[k] for k in z.files}
    for k, v in changes.items():
        if v is None:
            arrays.pop(k)
        else:
            arrays[k] = v
    np.savez(dst, **arrays)
    return dst


@pytest.mark.parametrize("case,msg", [
    ("small_masks", r"train item 0: mask is 16x16 but its image is 32x32"),
    ("label_200", r"train masks have label value\(s\) \[200\] outside classes"),
    ("no_val_masks", r"val_masks missing"),
    ("empty_val", r"the val split holds 0 images"),
    ("meta", r"its meta lacks class_names"),
], ids=["mask size", "label", "missing key", "empty split", "meta"])
def test_packed_data_is_checked_like_folder_data(tmp_path, case, msg):
    import json

    import numpy as np

    from nni_seg.data import pack_dataset
    from nni_seg.data.packed import _encode

    d = load_dataset(DataConfig(size=(32, 32), num_train=4, num_val=2))
    p = pack_dataset(d, tmp_path / "d.npz", "png")
    bad = tmp_path / "bad.npz"
    if case == "small_masks":
        _tamper_packed(p, bad, **dict(zip(("train_masks", "train_masks_offsets"),
                                          _encode(d.train_masks[:, :16, :16].contiguous(), "png", 90))))
    elif case == "label_200":
        m = d.train_masks.clone()
        m[0, 0, 0] = 200
        _tamper_packed(p, bad, **dict(zip(("train_masks", "train_masks_offsets"), _encode(m, "png", 90))))
    elif case == "no_val_masks":
        _tamper_packed(p, bad, val_masks=None)
    elif case == "empty_val":
        _tamper_packed(p, bad, val_images_offsets=np.zeros(1, np.int64), val_masks_offsets=np.zeros(1, np.int64))
    else:
        with np.load(p) as z:
            meta = json.loads(z["meta"].tobytes())
        meta.pop("class_names")
        _tamper_packed(p, bad, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    with pytest.raises(DataError, match=msg):
        load_dataset(DataConfig(dataset="packed", data_root=str(bad), size=(32, 32)), native=True)


def test_a_damaged_cache_entry_is_rebuilt(tmp_path, monkeypatch):
    from nni_seg.data import cache_dir

    monkeypatch.setenv("NNI_SEG_CACHE", str(tmp_path / "cache"))
    cfg = DataConfig(size=(16, 16), num_train=4, num_val=2)
    first = load_dataset(cfg)
    (entry,) = cache_dir().glob("*.npz")
    entry.write_bytes(entry.read_bytes()[:100])  # a truncated zip
    again = load_dataset(cfg)
    assert torch.equal(again.train_images, first.train_images)
    (entry,) = cache_dir().glob("*.npz")
    assert torch.equal(load_dataset(cfg).train_masks, first.train_masks) and entry.stat().st_size > 100
