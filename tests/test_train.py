"""EoMT training: the matcher against brute force, the batched loss against a plain per-prediction loss, the
schedules, and short runs on tiny generated scenes (the loss goes down, checkpoints load and predict the same,
--resume continues exactly)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import eomt
from segdata.ade20k import ADE20K
from segdata.scenes import write_scenes
from training.__main__ import main as train_main
from training.data import PanopticSamples, collate, epoch_batches
from training.loop import TrainOptions, build_model, dataset_metadata, train
from training.losses import LossWeights, Targets, dice_loss, eomt_loss, sigmoid_bce
from training.matcher import hungarian_match, hungarian_match_many, matching_cost, pairwise_mask_costs
from training.schedule import lr_factor, mask_probabilities, parameter_groups

# ------------------------------------------------------------------------------------------------ matcher


def _random_case(seed: int, num_queries: int, num_targets: int, size: int = 6, num_classes: int = 4):
    generator = torch.Generator().manual_seed(seed)
    mask_logits = torch.randn(num_queries, size, size, generator=generator) * 3
    class_logits = torch.randn(num_queries, num_classes + 1, generator=generator)
    target_masks = (torch.rand(num_targets, size, size, generator=generator) > 0.5).float()
    target_labels = torch.randint(0, num_classes, (num_targets,), generator=generator)
    return mask_logits, class_logits, target_masks, target_labels


@pytest.mark.parametrize("num_queries,num_targets", [(1, 1), (3, 2), (4, 4), (6, 3), (7, 5)])
def test_matcher_equals_brute_force(num_queries, num_targets):
    for seed in range(5):
        case = _random_case(seed, num_queries, num_targets)
        cost = matching_cost(*case).numpy()
        best = min(itertools.permutations(range(num_queries), num_targets),
                   key=lambda queries: sum(cost[q, t] for t, q in enumerate(queries)))
        queries, targets = hungarian_match(*case)
        assert sorted(targets.tolist()) == list(range(num_targets))
        assert dict(zip(targets.tolist(), queries.tolist(), strict=True)) == dict(enumerate(best))


def test_matcher_without_targets():
    queries, targets = hungarian_match(*_random_case(0, 5, 0))
    assert len(queries) == len(targets) == 0


def test_matching_several_predictions_at_once_equals_one_by_one():
    cases = [_random_case(seed, 7, 4) for seed in range(3)]
    mask_logits, class_logits = torch.stack([c[0] for c in cases]), torch.stack([c[1] for c in cases])
    target_masks, target_labels = cases[0][2], cases[0][3]
    costs = matching_cost(mask_logits, class_logits, target_masks, target_labels)
    many = hungarian_match_many(mask_logits, class_logits, target_masks, target_labels)
    for i, (queries, targets) in enumerate(many):
        torch.testing.assert_close(costs[i], matching_cost(mask_logits[i], class_logits[i], target_masks,
                                                           target_labels))
        one_queries, one_targets = hungarian_match(mask_logits[i], class_logits[i], target_masks, target_labels)
        assert queries.tolist() == one_queries.tolist() and targets.tolist() == one_targets.tolist()
    empty = hungarian_match_many(mask_logits, class_logits, target_masks[:0], target_labels[:0])
    assert [len(queries) for queries, _ in empty] == [0, 0, 0]


def test_pairwise_costs_equal_the_losses():
    mask_logits, _, target_masks, _ = _random_case(1, 5, 3)
    bce, dice = pairwise_mask_costs(mask_logits.flatten(1), target_masks.flatten(1))
    for q, t in itertools.product(range(5), range(3)):
        pair = (mask_logits[q].flatten()[None], target_masks[t].flatten()[None])
        torch.testing.assert_close(bce[q, t], sigmoid_bce(*pair)[0])
        torch.testing.assert_close(dice[q, t], dice_loss(*pair)[0])
        torch.testing.assert_close(bce[q, t], F.binary_cross_entropy_with_logits(*pair))


# --------------------------------------------------------------------------------------------------- loss

def test_batched_loss_equals_per_prediction_sum():
    """eomt_loss batches all predictions; a plain loop over predictions and images must give the same total."""
    weights = LossWeights()
    generator = torch.Generator().manual_seed(3)
    layers, batch, queries, classes, size = 3, 2, 6, 5, 8
    mask_logits = [torch.randn(batch, queries, size, size, generator=generator) for _ in range(layers)]
    class_logits = [torch.randn(batch, queries, classes + 1, generator=generator) for _ in range(layers)]
    targets = [Targets(torch.rand(n, 16, 16, generator=generator) > 0.6, torch.randint(0, classes, (n,)))
               for n in (3, 4)]
    num_masks = 7.0
    total, parts = eomt_loss(mask_logits, class_logits, targets, num_masks, weights)

    expected = 0.0
    empty_weight = torch.ones(classes + 1)
    empty_weight[-1] = weights.no_object_weight
    for masks_l, classes_l in zip(mask_logits, class_logits, strict=True):
        class_targets = torch.full((batch, queries), classes)
        bce = dice = 0.0
        for i, target in enumerate(targets):
            small = F.interpolate(target.masks[None].float(), size=(size, size), mode="area")[0]
            q, t = hungarian_match(masks_l[i], classes_l[i], small, target.labels)
            class_targets[i, q] = target.labels[t]
            for qi, ti in zip(q.tolist(), t.tolist(), strict=True):
                logit, truth = masks_l[i, qi].flatten(), small[ti].flatten()
                bce = bce + F.binary_cross_entropy_with_logits(logit, truth)
                p = logit.sigmoid()
                dice = dice + 1 - (2 * (p * truth).sum() + 1) / (p.sum() + truth.sum() + 1)
        ce = F.cross_entropy(classes_l.transpose(1, 2), class_targets, weight=empty_weight)
        expected = expected + weights.class_weight * ce + weights.mask_weight * bce / num_masks \
            + weights.dice_weight * dice / num_masks
    torch.testing.assert_close(total, expected)
    assert parts["total"] == pytest.approx(float(expected), rel=1e-5)


# ---------------------------------------------------------------------------------------------- schedules

def test_lr_schedule_warms_up_then_decays_to_zero():
    factors = [lr_factor(step, 100, 10) for step in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[9:], factors[10:], strict=False))
    assert lr_factor(100, 100, 10) == 0.0


def test_mask_annealing_is_staggered_from_one_to_zero():
    probabilities = np.array([mask_probabilities(step, 1000, 3, 0.1, 0.7) for step in range(1001)])
    assert (probabilities[:100] == 1).all() and (probabilities[700:] == 0).all()
    assert (np.diff(probabilities, axis=0) <= 0).all()
    # Block 0 anneals first: when it reaches 0, the later blocks are still fully masked.
    assert probabilities[300].tolist() == [0.0, 1.0, 1.0]
    assert 0 < probabilities[400, 1] < 1 and probabilities[400, 2] == 1


def test_layer_wise_lr_decay():
    model = eomt.EoMT(_tiny_config(depth=3))
    groups = parameter_groups(model, lr=1.0, weight_decay=0.05, layer_decay=0.5)
    lr_of = {name: group["base_lr"] for group in groups for name in group["names"]}
    decay_of = {name: group["weight_decay"] for group in groups for name in group["names"]}
    assert lr_of["class_head.weight"] == lr_of["q.weight"] == 1.0
    assert lr_of["encoder.backbone.blocks.2.attn.qkv.weight"] == 0.5
    assert lr_of["encoder.backbone.blocks.0.attn.qkv.weight"] == 0.125
    assert lr_of["encoder.backbone.patch_embed.proj.weight"] == 0.0625
    assert decay_of["encoder.backbone.blocks.0.attn.qkv.weight"] == 0.05
    assert decay_of["encoder.backbone.blocks.0.attn.qkv.bias"] == 0.0
    assert decay_of["encoder.backbone.pos_embed"] == 0.0
    assert len(lr_of) == len(list(model.parameters()))


# ------------------------------------------------------------------------------------------------- runs

def _tiny_config(depth: int = 2) -> eomt.EoMTConfig:
    return eomt.EoMTConfig(backbone="vit_small_patch14_reg4_dinov2", img_size=64, num_classes=150, num_queries=12,
                           num_blocks=1, backbone_kwargs={"depth": depth, "embed_dim": 32, "num_heads": 2})


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    return write_scenes(tmp_path_factory.mktemp("scenes"), num_train=8, num_val=3, seed=5)


def _options(data, out, **overrides) -> TrainOptions:
    fields = dict(data=str(data), out=str(out), depth=2, dim=48, heads=2, img_size=64, num_queries=12,
                  num_blocks=1, steps=40, batch_size=4, lr=2e-3, layer_decay=1.0, warmup_steps=2,
                  layer_scale_init=1.0, workers=0, threads=2, val_limit=2, progress=False, checkpoint_every=100)
    return TrainOptions(**{**fields, **overrides})


def _data_loss(model: eomt.EoMT, data) -> float:
    """The loss of `model` on the first 8 training images, without augmentation or masked attention."""
    samples = PanopticSamples(ADE20K(data, "training"), model.config.img_size, flip=False)
    images, targets = collate([samples[(i, (0,))] for i in range(8)])
    with torch.no_grad():
        model.attn_mask_probs.zero_()
        mask_logits, class_logits = model.train()(images.float() / 255, return_intermediate=True)
        loss, _ = eomt_loss(mask_logits, class_logits, targets, float(sum(len(t.labels) for t in targets)))
    return float(loss)


def test_training_lowers_the_loss_and_its_checkpoint_predicts_the_same(scenes, tmp_path):
    options = _options(scenes, tmp_path / "run")
    torch.manual_seed(options.seed)
    before = _data_loss(build_model(options, dataset_metadata()), scenes)
    result = train(options)
    after = _data_loss(result["network"], scenes)
    assert after < 0.75 * before, (before, after)
    assert result["val"]["images"] == 2 and result["val"]["All"]["n"] > 0

    network = result["network"].eval()
    loaded = eomt.load_model(result["model"])
    assert loaded.config == network.config
    assert float(loaded.attn_mask_probs.abs().sum()) == 0  # saved annealed, as the released checkpoints
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        for expected, got in zip(network(images), loaded(images), strict=True):
            torch.testing.assert_close(got, expected, rtol=0, atol=0)
    image = ADE20K(scenes, "validation").read_image(0)
    a, b = eomt.Predictor(network).panoptic(image), eomt.Predictor(loaded).panoptic(image)
    np.testing.assert_array_equal(a.segment_map, b.segment_map)
    assert a.segments == b.segments


def test_resume_continues_an_interrupted_run_exactly(scenes, tmp_path, monkeypatch):
    options = _options(scenes, tmp_path / "whole", steps=6, checkpoint_every=3, val_limit=0)
    whole = train(options)["network"]

    import training.loop as loop

    real = loop.lr_factor

    def crash_at_step_4(step, *args):
        if step == 4:
            raise KeyboardInterrupt
        return real(step, *args)

    monkeypatch.setattr(loop, "lr_factor", crash_at_step_4)
    interrupted = _options(scenes, tmp_path / "cut", steps=6, checkpoint_every=3, val_limit=0)
    with pytest.raises(KeyboardInterrupt):
        train(interrupted)
    assert torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["step"] == 3
    monkeypatch.setattr(loop, "lr_factor", real)
    with pytest.raises(ValueError, match="--resume"):
        train(interrupted)
    resumed = train(_options(scenes, tmp_path / "cut", steps=6, checkpoint_every=3, val_limit=0, resume=True))
    assert resumed["steps"] == 3
    for (name, a), b in zip(whole.state_dict().items(), resumed["network"].state_dict().values(), strict=True):
        torch.testing.assert_close(b, a, msg=name)


class _RunsCode:
    """A pickle that runs code when loaded: what a crafted checkpoint.pt would hold."""

    def __reduce__(self):
        return (Path.write_text, (Path(_RunsCode.target), "pwned"))


def test_resume_reads_no_arbitrary_pickle(scenes, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    _RunsCode.target = str(tmp_path / "ran.txt")
    torch.save({"step": 1, "options": {}, "payload": _RunsCode()}, out / "checkpoint.pt")
    with pytest.raises(ValueError, match="checkpoint.pt: not a training checkpoint this program can resume"):
        train(_options(scenes, out, steps=2, val_limit=0, resume=True))
    assert not (tmp_path / "ran.txt").exists()
    code = train_main(["--data", str(scenes), "--out", str(out), "--resume", "--steps", "2", "--batch-size", "2",
                       "--workers", "0", "--no-progress"])
    assert code == 1 and not (tmp_path / "ran.txt").exists()


def test_command_line_from_a_checkpoint_with_a_new_class_head(scenes, tmp_path):
    torch.manual_seed(0)
    source = eomt.EoMT(_tiny_config())
    other_classes = eomt.EoMTConfig(**{**source.config.to_dict(), "num_classes": 7})
    eomt.save_model(eomt.EoMT(other_classes), tmp_path / "other.safetensors")
    code = train_main(["--data", str(scenes), "--out", str(tmp_path / "ft"), "--init",
                       str(tmp_path / "other.safetensors"), "--steps", "2", "--batch-size", "2", "--workers", "0",
                       "--val-limit", "1", "--no-progress"])
    assert code == 0
    tuned = eomt.load_model(tmp_path / "ft" / "model.safetensors")
    original = eomt.load_model(tmp_path / "other.safetensors")
    assert tuned.config.num_classes == 150 and tuned.config.class_names[2] == "sky"
    assert tuned.encoder.backbone.pos_embed.shape == original.encoder.backbone.pos_embed.shape
    assert (tmp_path / "ft" / "val_pq.json").exists()


def test_epoch_batches_split_over_processes():
    single = epoch_batches(20, 8, seed=1, epoch=2)
    halves = [epoch_batches(20, 8, seed=1, epoch=2, rank=r, world_size=2) for r in range(2)]
    assert len(single) == 2  # the incomplete last batch is dropped
    for k, batch in enumerate(single):
        assert halves[0][k] + halves[1][k] == batch
    assert epoch_batches(20, 8, seed=1, epoch=3) != single
