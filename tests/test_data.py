import numpy as np
import pytest
import torch
from PIL import Image

from nni_seg.data import DATASETS, DataConfig, DataError, digit_scenes, load_dataset


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
    with pytest.raises(DataError, match="unknown dataset 'cityscape'; valid: camvid, digits, isbi2012"):
        load_dataset(DataConfig(dataset="cityscape"))
    assert set(DATASETS) == {"digits", "camvid", "isbi2012"}


def _camvid_tree(root, n=3, size=(12, 16), labels=12):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
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
