"""Semantic EoMT training: per-class targets from a hand-made map, the loss and the matching over valid pixels
only (ignored pixels change nothing, and the result equals the plain loss on the valid pixels alone), the
shortest-side crops, and short runs on tiny generated scenes (the loss goes down, the saved model is a semantic
one that predicts the same, mIoU at the end, --resume continues exactly and checks the task)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import eomt
from eomt.__main__ import main as eomt_main
from eomt.transforms import window_size
from metrics import semantic as semantic_metrics
from segdata.ade20k import ADE20K
from segdata.scenes import write_scenes
from training.__main__ import main as train_main
from training.__main__ import parse_args
from training.data import SemanticSamples, collate, semantic_targets
from training.loop import TrainOptions, build_model, dataset_metadata, train
from training.losses import LossWeights, Targets, dice_loss, eomt_loss, sigmoid_bce
from training.matcher import hungarian_match, pairwise_mask_costs

IGNORE = 255

# ------------------------------------------------------------------------------------------------ targets


def test_semantic_targets_of_a_hand_made_map():
    class_map = np.array([[3, 3, 7, 255],
                          [3, 0, 7, 255],
                          [255, 0, 0, 7]], dtype=np.uint8)
    targets = semantic_targets(class_map, num_classes=150)
    assert targets.labels.tolist() == [0, 3, 7]
    assert targets.masks.dtype == targets.valid.dtype == torch.bool
    assert targets.masks[0].tolist() == [[False, False, False, False], [False, True, False, False],
                                         [False, True, True, False]]
    assert targets.masks[1].tolist() == [[True, True, False, False], [True, False, False, False],
                                         [False, False, False, False]]
    assert targets.masks[2].tolist() == [[False, False, True, False], [False, False, True, False],
                                         [False, False, False, True]]
    assert targets.valid.tolist() == [[True, True, True, False], [True, True, True, False],
                                      [False, True, True, True]]
    # Every pixel is in exactly one mask or ignored.
    assert ((targets.masks.sum(0) == 1) == targets.valid).all()

    empty = semantic_targets(np.full((2, 2), IGNORE, np.uint8), num_classes=150)
    assert empty.masks.shape == (0, 2, 2) and empty.labels.tolist() == [] and not empty.valid.any()
    with pytest.raises(ValueError, match=r"values \[200\] are neither classes \(0..149\)"):
        semantic_targets(np.array([[1, 200]], np.uint8), num_classes=150)


# --------------------------------------------------------------------------------------------------- loss

def _semantic_case(seed: int, batch: int = 2, layers: int = 2, queries: int = 6, classes: int = 5, size: int = 8,
                   scale: int = 1):
    """Random logits at size x size and semantic targets at (size * scale)^2 whose ignored pixels fill whole
    cells of the logit grid (an L-shaped region per image)."""
    generator = torch.Generator().manual_seed(seed)
    mask_logits = [torch.randn(batch, queries, size, size, generator=generator) * 2 for _ in range(layers)]
    class_logits = [torch.randn(batch, queries, classes + 1, generator=generator) for _ in range(layers)]
    targets = []
    for i in range(batch):
        cells = torch.randint(0, classes, (size, size), generator=generator)
        cells[: 2 + i, :3] = IGNORE
        cells[-1, :] = IGNORE
        full = cells.repeat_interleave(scale, 0).repeat_interleave(scale, 1).numpy().astype(np.uint8)
        targets.append(semantic_targets(full, classes))
    return mask_logits, class_logits, targets


def test_ignored_pixels_do_not_change_the_loss():
    mask_logits, class_logits, targets = _semantic_case(0, scale=4)
    total, _ = eomt_loss(mask_logits, class_logits, targets, 9.0)
    ignored = [~F.interpolate(t.valid[None, None].float(), size=(8, 8), mode="area")[0, 0].bool() for t in targets]
    generator = torch.Generator().manual_seed(1)
    changed = []
    for logits in mask_logits:
        logits = logits.clone()
        for i, where in enumerate(ignored):
            logits[i][:, where] = torch.randn(logits.shape[1], int(where.sum()), generator=generator) * 10
        changed.append(logits)
    assert not torch.equal(changed[0], mask_logits[0])
    again, _ = eomt_loss(changed, class_logits, targets, 9.0)
    torch.testing.assert_close(again, total, rtol=1e-6, atol=1e-6)

    # Without the valid maps the ignored pixels are background of every mask, and the loss does change.
    plain = [Targets(t.masks, t.labels) for t in targets]
    assert float(eomt_loss(changed, class_logits, plain, 9.0)[0]) != pytest.approx(
        float(eomt_loss(mask_logits, class_logits, plain, 9.0)[0]), rel=1e-3)


def test_semantic_loss_equals_the_plain_loss_on_the_valid_pixels():
    """Matching and losses over valid pixels equal the plain (panoptic) functions given only those pixels."""
    weights = LossWeights()
    mask_logits, class_logits, targets = _semantic_case(2, batch=2, layers=3, queries=7)
    num_masks = float(sum(len(t.labels) for t in targets))
    total, _ = eomt_loss(mask_logits, class_logits, targets, num_masks, weights)

    expected = 0.0
    classes = class_logits[0].shape[-1] - 1
    empty_weight = torch.ones(classes + 1)
    empty_weight[-1] = weights.no_object_weight
    for masks_l, classes_l in zip(mask_logits, class_logits, strict=True):
        class_targets = torch.full(classes_l.shape[:2], classes)
        bce = dice = 0.0
        for i, target in enumerate(targets):
            valid = target.valid.flatten()
            logits, truth = masks_l[i].flatten(1)[:, valid], target.masks.flatten(1)[:, valid].float()
            # The plain cost matrix on the valid pixels alone is the matcher's cost over valid pixels.
            plain_costs = pairwise_mask_costs(logits, truth)
            valid_costs = pairwise_mask_costs(masks_l[i].flatten(1), target.masks.flatten(1).float(),
                                              target.valid.flatten().float())
            for a, b in zip(plain_costs, valid_costs, strict=True):
                torch.testing.assert_close(b, a)
            q, t = hungarian_match(masks_l[i], classes_l[i], target.masks.float(), target.labels,
                                   valid=target.valid.float())
            class_targets[i, q] = target.labels[t]
            for qi, ti in zip(q.tolist(), t.tolist(), strict=True):
                bce = bce + F.binary_cross_entropy_with_logits(logits[qi], truth[ti])
                p = logits[qi].sigmoid()
                dice = dice + 1 - (2 * (p * truth[ti]).sum() + 1) / (p.sum() + truth[ti].sum() + 1)
        ce = F.cross_entropy(classes_l.transpose(1, 2), class_targets, weight=empty_weight)
        expected = expected + weights.class_weight * ce + weights.mask_weight * bce / num_masks \
            + weights.dice_weight * dice / num_masks
    torch.testing.assert_close(total, expected)


def test_valid_weighted_losses_reduce_to_the_plain_ones():
    generator = torch.Generator().manual_seed(4)
    logits, truth = torch.randn(3, 20, generator=generator), (torch.rand(3, 20, generator=generator) > 0.5).float()
    ones = torch.ones(3, 20)
    torch.testing.assert_close(sigmoid_bce(logits, truth, ones), sigmoid_bce(logits, truth))
    torch.testing.assert_close(dice_loss(logits, truth, ones), dice_loss(logits, truth))


# ------------------------------------------------------------------------------------------------ samples

@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    return write_scenes(tmp_path_factory.mktemp("scenes"), num_train=8, num_val=3, seed=5)


def test_samples_are_shortest_side_crops_of_the_image_and_its_classes(scenes):
    dataset = ADE20K(scenes, "training")
    samples = SemanticSamples(dataset, 64, 150, flip=False)
    for index in range(4):
        image, targets = samples[(index, (0, 0, index))]
        assert image.shape == (3, 64, 64) and image.dtype == torch.uint8
        original = dataset.read_image(index)
        new_h, new_w = window_size(original.height, original.width, 64)
        assert min(new_h, new_w) == 64
        resized = torch.from_numpy(np.array(original.resize((new_w, new_h), Image.BILINEAR))).permute(2, 0, 1)
        offsets = [(top, left) for top in range(new_h - 63) for left in range(new_w - 63)
                   if torch.equal(resized[:, top:top + 64, left:left + 64], image)]
        assert len(offsets) >= 1
        top, left = offsets[0]
        gt = np.asarray(Image.fromarray(dataset.semantic(index)).resize((new_w, new_h), Image.NEAREST))
        crop = gt[top:top + 64, left:left + 64]
        assert targets.valid.numpy().tolist() == (crop != IGNORE).tolist()
        for mask, label in zip(targets.masks, targets.labels, strict=True):
            np.testing.assert_array_equal(mask.numpy(), crop == int(label))
        assert sorted(targets.labels.tolist()) == sorted(set(np.unique(crop).tolist()) - {IGNORE})

    # Scaled below the input size, the rest of the crop is padding: ignored, in no mask.
    small = SemanticSamples(dataset, 64, 150, scale_range=(0.5, 0.5), flip=False)
    image, targets = small[(0, (0, 0, 0))]
    assert not targets.valid[40:, 40:].any() and not targets.masks[:, 40:, 40:].any()
    assert (image[:, 40:, 40:] == 0).all()


class _MismatchedReader:
    keys = ["scene_0.jpg"]

    def __len__(self):
        return 1

    def read_image(self, index):
        return Image.new("RGB", (40, 30))

    def semantic(self, index):
        return np.zeros((30, 41), np.uint8)


def test_a_semantic_map_of_another_size_is_named():
    with pytest.raises(ValueError, match=r"scene_0.jpg: semantic map is 41x30, the image 40x30"):
        SemanticSamples(_MismatchedReader(), 32, 150)[(0, (0,))]


# ------------------------------------------------------------------------------------------------- runs

def _options(data, out, **overrides) -> TrainOptions:
    fields = dict(data=str(data), out=str(out), task="semantic", depth=2, dim=48, heads=2, img_size=64,
                  num_queries=12, num_blocks=1, steps=40, batch_size=4, lr=2e-3, layer_decay=1.0, warmup_steps=2,
                  layer_scale_init=1.0, workers=0, threads=2, val_limit=2, progress=False, checkpoint_every=100)
    return TrainOptions(**{**fields, **overrides})


def _fixed_batch_loss(model: eomt.EoMT, data) -> float:
    """The loss of `model` on a fixed batch of 8 training crops, without flips or masked attention."""
    samples = SemanticSamples(ADE20K(data, "training"), model.config.img_size, model.config.num_classes, flip=False)
    images, targets = collate([samples[(i, (0,))] for i in range(8)])
    with torch.no_grad():
        model.attn_mask_probs.zero_()
        mask_logits, class_logits = model.train()(images.float() / 255, return_intermediate=True)
        loss, _ = eomt_loss(mask_logits, class_logits, targets, float(sum(len(t.labels) for t in targets)))
    return float(loss)


def test_semantic_training_lowers_the_loss_and_saves_a_semantic_model(scenes, tmp_path, capsys):
    options = _options(scenes, tmp_path / "run")
    torch.manual_seed(options.seed)
    before = _fixed_batch_loss(build_model(options, dataset_metadata()), scenes)
    result = train(options)
    after = _fixed_batch_loss(result["network"], scenes)
    assert after < 0.75 * before, (before, after)

    # Validation: mIoU of the predictor's sliding windows, summed over the first 2 validation images.
    val = json.loads((tmp_path / "run" / "val_miou.json").read_text())
    assert not (tmp_path / "run" / "val_pq.json").exists()
    assert val == result["val"] and val["images"] == 2
    network = result["network"].eval()
    val_set = ADE20K(scenes, "validation")
    counts = [semantic_metrics.image_counts(val_set.semantic(i), eomt.Predictor(network).semantic(
        val_set.read_image(i)), 150) for i in range(2)]
    assert val["miou"] == pytest.approx(semantic_metrics.sum_counts(counts, 150).miou())
    assert set(val["per_class"]) <= set(network.config.class_names)

    loaded = eomt.load_model(result["model"])
    assert loaded.config == network.config and loaded.config.task == "semantic"
    assert loaded.config.class_names[2] == "sky" and len(loaded.config.class_colors) == 150
    image = val_set.read_image(0)
    np.testing.assert_array_equal(eomt.Predictor(loaded).semantic(image), eomt.Predictor(network).semantic(image))

    # python -m eomt predict runs the semantic task by default.
    image.save(tmp_path / "photo.png")
    capsys.readouterr()
    assert eomt_main(["predict", str(tmp_path / "photo.png"), "--model", result["model"], "--out",
                      str(tmp_path / "pred.png"), "--device", "cpu"]) == 0
    assert ", semantic, " in capsys.readouterr().out


def test_semantic_resume_continues_exactly_and_checks_the_task(scenes, tmp_path, monkeypatch):
    options = _options(scenes, tmp_path / "whole", steps=6, checkpoint_every=3, val_limit=0)
    whole = train(options)["network"]

    import training.loop as loop

    real = loop.lr_factor

    def crash_at_step_4(step, *args):
        if step == 4:
            raise KeyboardInterrupt
        return real(step, *args)

    monkeypatch.setattr(loop, "lr_factor", crash_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        train(_options(scenes, tmp_path / "cut", steps=6, checkpoint_every=3, val_limit=0))
    monkeypatch.setattr(loop, "lr_factor", real)
    with pytest.raises(ValueError, match="task was 'semantic', now 'panoptic'"):
        train(_options(scenes, tmp_path / "cut", task="panoptic", steps=6, checkpoint_every=3, val_limit=0,
                       resume=True))
    resumed = train(_options(scenes, tmp_path / "cut", steps=6, checkpoint_every=3, val_limit=0, resume=True))
    assert resumed["steps"] == 3 and resumed["network"].config.task == "semantic"
    for (name, a), b in zip(whole.state_dict().items(), resumed["network"].state_dict().values(), strict=True):
        torch.testing.assert_close(b, a, msg=name)


def test_a_run_from_before_the_task_option_resumes_as_panoptic(scenes, tmp_path):
    out = tmp_path / "old"
    train(_options(scenes, out, task="panoptic", steps=2, checkpoint_every=1, val_limit=0))
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    del state["options"]["task"]
    state["step"] = 1
    torch.save(state, out / "checkpoint.pt")
    with pytest.raises(ValueError, match="task was 'panoptic', now 'semantic'"):
        train(_options(scenes, out, steps=2, val_limit=0, resume=True))
    assert train(_options(scenes, out, task="panoptic", steps=2, val_limit=0, resume=True))["steps"] == 1


def test_command_line_task_option(scenes, tmp_path, capsys):
    assert parse_args(["--data", "d", "--out", "o"]).task == "panoptic"
    assert parse_args(["--data", "d", "--out", "o", "--task", "semantic"]).task == "semantic"
    with pytest.raises(SystemExit):
        parse_args(["--data", "d", "--out", "o", "--task", "instance"])
    assert "invalid choice: 'instance'" in capsys.readouterr().err
    code = train_main(["--data", str(scenes), "--out", str(tmp_path / "cli"), "--task", "semantic", "--depth", "2",
                       "--dim", "32", "--heads", "2", "--img-size", "64", "--num-queries", "8", "--num-blocks", "1",
                       "--steps", "2", "--batch-size", "2", "--workers", "0", "--val-limit", "1", "--no-progress"])
    assert code == 0 and (tmp_path / "cli" / "val_miou.json").exists()
    assert eomt.load_model(tmp_path / "cli" / "model.safetensors").config.task == "semantic"
