"""ENAS one-shot on the tiny default data, through NNI's own ENAS strategy and NasExperiment."""
import pytest
import torch

from nni_seg.experiment.oneshot import TaggedCollate, lightning_evaluator, untag


def test_tagged_collate_gives_the_triple_nni_enas_expects():
    items = [(torch.zeros(3, 4, 4, dtype=torch.uint8), torch.zeros(4, 4, dtype=torch.uint8))] * 2
    batch = TaggedCollate(1)(items)
    # NNI 3.0 EnasLightningModule.training_step: len 2 -> legacy (batch, mode); else (batch, _, dataloader_idx)
    assert len(batch) == 3 and batch[2] == 1 and batch[1] == 0
    x, y = untag(batch)
    assert x.shape == (2, 3, 4, 4) and y.shape == (2, 4, 4)
    assert untag((x, y)) == (x, y)
    assert TaggedCollate(0)(items)[2] == 0  # train batches carry tag 0, val batches 1


@pytest.mark.slow
def test_enas_one_epoch_exports_valid_architecture(tmp_path):
    from nni.nas.experiment import NasExperiment
    from nni.nas.strategy import ENAS

    from nni_seg.space.arch import MACRO_LABELS, seed_arch, validate_arch
    from nni_seg.data import load_dataset
    from nni_seg.config.settings import DataSettings as DataConfig
    from nni_seg.space.nni_space import SegSpace

    from ..nni_helpers import free_port

    data = load_dataset(DataConfig(size=(16, 16), num_train=16, num_val=8))
    fixed = {k: v for k, v in seed_arch().items() if k in MACRO_LABELS}
    fixed.update(enc1_width=16, enc2_width=32, enc3_width=64)
    evaluator = lightning_evaluator(data, epochs=1, batch_size=4, lr=3e-3, accelerator="cpu")
    strategy = ENAS(reward_metric_name="default")
    exp = NasExperiment(SegSpace(data.num_classes, data.in_channels, fixed=fixed), evaluator, strategy)
    exp.config.experiment_working_directory = str(tmp_path)
    exp.run(port=free_port())
    try:
        chosen = exp.export_top_models(top_k=1, formatter="dict")[0]
    finally:
        exp.stop()
    assert set(chosen) == {"enc1_op", "enc1_depth", "enc2_op", "enc2_depth", "enc3_op", "enc3_depth",
                           "dec1_op", "dec2_op"}
    validate_arch({**seed_arch(), **fixed, **chosen})
    # both loaders reached the training module, each batch correctly unpacked (asserted inside)
    module = strategy.oneshot_module.training_module
    assert module.seen["train"] == 4 and module.seen["val"] >= 2, module.seen
