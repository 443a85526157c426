"""Training step speed: training's step against the same step written the straightforward way: the upscaler
in NCHW modules as in the official code, one Hungarian cost matrix per prediction and image, AdamW's per-tensor
loop instead of its fused kernel.

Both run the demo's network (6 blocks, 128 wide, 128 px, 30 queries) on the same batches of toy scenes, with the
same weights; their losses are checked equal first, then steps/s and images/s of each are printed with the ratio.

    python bench/train.py [--batch-size 8] [--steps 30] [--rounds 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path[0] = str(Path(__file__).resolve().parents[1])
from eomt import modeling  # noqa: E402
from segdata.ade20k import ADE20K  # noqa: E402
from segdata.ade20k_writer import write_ade20k_zips  # noqa: E402
from segdata.scenes import split_samples  # noqa: E402
from training import losses  # noqa: E402
from training.data import PanopticSamples, collate  # noqa: E402
from training.loop import TrainOptions, build_model, dataset_metadata  # noqa: E402
from training.matcher import hungarian_match  # noqa: E402


def nchw_scale_block(self, x: torch.Tensor) -> torch.Tensor:
    """ScaleBlock as the official code runs it: (B, C, H, W) in and out, LayerNorm2d by permuting twice."""
    x = self.conv2(self.act(self.conv1(x)))
    x = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.norm.weight, self.norm.bias, self.norm.eps)
    return x.permute(0, 3, 1, 2)


def nchw_predict(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """EoMT._predict as the official code runs it: patch tokens reshaped to a (B, C, H, W) map."""
    num_queries = self.config.num_queries
    queries = tokens[:, :num_queries]
    patches = tokens[:, num_queries + self.encoder.backbone.num_prefix_tokens:]
    features = patches.transpose(1, 2).reshape(patches.shape[0], -1, *self.grid_size)
    mask_logits = torch.einsum("bqc,bchw->bqhw", self.mask_head(queries), self.upscale(features))
    return mask_logits, self.class_head(queries)


def per_prediction_match(mask_logits, class_logits, target_masks, target_labels, *weights):
    return [hungarian_match(m, c, target_masks, target_labels, *weights)
            for m, c in zip(mask_logits, class_logits, strict=True)]


@contextmanager
def straightforward():
    saved = modeling.ScaleBlock.forward, modeling.EoMT._predict, losses.hungarian_match_many
    modeling.ScaleBlock.forward, modeling.EoMT._predict = nchw_scale_block, nchw_predict
    losses.hungarian_match_many = per_prediction_match
    try:
        yield
    finally:
        modeling.ScaleBlock.forward, modeling.EoMT._predict, losses.hungarian_match_many = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    with tempfile.TemporaryDirectory() as folder:
        write_ade20k_zips(folder, {"training": split_samples("training", args.batch_size * 4)})
        dataset = ADE20K(folder, split="training")
        samples = PanopticSamples(dataset, 128)
        batches = [collate([samples[(i, (0, 0, i))] for i in range(b * args.batch_size, (b + 1) * args.batch_size)])
                   for b in range(4)]
    options = TrainOptions(data="", out="", layer_scale_init=1.0)
    model = build_model(options, dataset_metadata()).train()
    initial = {k: v.clone() for k, v in model.state_dict().items()}

    def run(steps: int, fused: bool = True) -> tuple[float, float]:
        """(seconds per step, first loss) from the initial weights."""
        model.load_state_dict(initial)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=fused)
        first, started = None, None
        for step in range(steps + 2):  # two warm-up steps
            if step == 2:
                started = time.perf_counter()
            images, targets = batches[step % len(batches)]
            torch.manual_seed(step)  # masked attention draws the same queries in both runs
            mask_logits, class_logits = model(images.float() / 255, return_intermediate=True)
            loss, _ = losses.eomt_loss(mask_logits, class_logits, targets, 40.0)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            first = float(loss.detach()) if first is None else first
        return (time.perf_counter() - started) / steps, first

    _, ours_loss = run(1)
    with straightforward():
        _, base_loss = run(1, fused=False)
    if abs(ours_loss - base_loss) > 1e-4 * abs(base_loss):
        raise SystemExit(f"losses differ: ours {ours_loss} vs straightforward {base_loss}")

    # Alternating rounds, best of each: the machine's noise (other processes, frequency) hits both alike.
    base = ours = float("inf")
    for _ in range(args.rounds):
        with straightforward():
            base = min(base, run(args.steps, fused=False)[0])
        ours = min(ours, run(args.steps)[0])
    print(f"batch {args.batch_size}, best of {args.rounds} rounds of {args.steps} steps, {torch.get_num_threads()} "
          f"threads, masked attention on (the first steps of a run); loss {ours_loss:.4f} in both")
    print(f"straightforward: {base:.3f} s/step  {args.batch_size / base:6.1f} images/s")
    print(f"training:      {ours:.3f} s/step  {args.batch_size / ours:6.1f} images/s")
    print(f"ratio: {base / ours:.2f}x")


if __name__ == "__main__":
    main()
