"""Seconds per optimizer step of sam2tool's Lightning training vs a plain loop over Meta's SAM2Train.

Both sides train the same model (default: SAM 2.1 tiny at 256 px, random weights) on the same
clip (5 frames, 2 objects: moving rectangles over noise) with the same prompt simulation (the
MOSE defaults of ``PromptSimulation``) and the same per-step seeds, so that every step draws the
same prompts and does the same work on both sides.

- ours: ``lightning.Trainer.fit`` of ``SAM2LightningModule`` (forward_clip + SAM2Loss, AdamW and
  its schedule from ``sam2tool.training.optim``, gradient clipping 0.1, ``self.log`` calls);
  a Callback times each step from ``on_train_batch_start`` to ``on_train_batch_end``.
- official: ``training.model.sam2.SAM2Train`` + ``training.loss_fns.MultiStepMultiMasksAndIous``
  (the SAM 2.1 recipe's weights) + ``torch.optim.AdamW`` + ``clip_grad_norm_(0.1)``, called as
  Meta's trainer does (forward and loss under autocast, ``loss.item()`` check, backward).

Data loading and the host-to-device copy are excluded on both sides: the DataLoader yields the
same pre-built ClipBatch every step and the official loop reuses one batch already on the device.
The two measurements alternate in ABBA order (``--rounds`` runs each) to reduce drift; the first
``--warmup`` steps of every run are not timed.

Usage: python benchmarks/bench_train.py [--size tiny] [--image-size 256] [--frames 5] [--objects 2]
       [--steps N] [--warmup 2] [--rounds 2] [--device cpu|cuda] [--precision 32-true|bf16-mixed]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import math
import os
import platform
import statistics
import time
import warnings
from typing import Any

import numpy as np
import torch

OFFICIAL_TARGET = "training.model.sam2.SAM2Train"
SEED = 0


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_batch(frames: int, objects: int, size: int):  # type: ignore[no-untyped-def]
    """One clip of noise frames with ``objects`` rectangles moving across it, as a ClipBatch."""
    from sam2tool.data.clips import ClipBatch

    generator = torch.Generator().manual_seed(SEED)
    images = torch.randn(frames, 1, 3, size, size, generator=generator)
    masks = torch.zeros(frames, objects, size, size, dtype=torch.bool)
    h, w = size // 4, size // 5
    for t in range(frames):
        for o in range(objects):
            y = (size // 8 + o * size // 3 + t * size // 32) % (size - h)
            x = (size // 10 + o * size // 4 + t * size // 20) % (size - w)
            masks[t, o, y : y + h, x : x + w] = True
    clip_index = torch.zeros(objects, dtype=torch.int32)
    frame_index = torch.arange(frames, dtype=torch.int32).view(-1, 1).expand(-1, objects)
    obj_to_frame_idx = torch.stack([frame_index, clip_index.view(1, -1).expand(frames, -1)], dim=-1).contiguous()
    stems = tuple(f"{t:05d}" for t in range(frames))
    return ClipBatch(images, masks, obj_to_frame_idx, torch.arange(1, objects + 1), ["bench"], [stems])


class OfficialInput:
    """The attributes of training.utils.data_utils.BatchedVideoDatapoint that SAM2Train reads."""

    def __init__(self, batch: Any) -> None:
        self.img_batch, self.masks, self.obj_to_frame_idx = batch.images, batch.masks, batch.obj_to_frame_idx
        self.num_frames = batch.images.shape[0]
        self.flat_img_batch = batch.images.transpose(0, 1).flatten(0, 1)
        frame_idx, video_idx = batch.obj_to_frame_idx.unbind(dim=-1)
        self.flat_obj_to_img_idx = video_idx * self.num_frames + frame_idx


def step_seeds(batch_idx: int) -> tuple[np.random.Generator, int]:
    """The generators SAM2LightningModule.training_step seeds for (seed, epoch 0, batch_idx, rank 0)."""
    seed = [SEED, 0, batch_idx, 0]
    return np.random.default_rng(seed), int(np.random.SeedSequence(seed).generate_state(1)[0])


def run_ours(settings: Any, built: Any, batch: Any, args: argparse.Namespace) -> tuple[list[float], float]:
    """Fit SAM2LightningModule for warmup + steps optimizer steps; return the timed steps' seconds."""
    import lightning as L

    from sam2tool.training.lightning_module import SAM2LightningModule

    device = torch.device(args.device)
    total = args.warmup + args.steps

    class StepTimer(L.Callback):
        def __init__(self) -> None:
            self.starts: list[float] = []
            self.ends: list[float] = []

        def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, batch: Any, idx: int) -> None:
            sync(device)
            self.starts.append(time.perf_counter())

        def on_train_batch_end(
            self, trainer: L.Trainer, module: L.LightningModule, out: Any, batch: Any, idx: int
        ) -> None:
            sync(device)
            self.ends.append(time.perf_counter())

    timer = StepTimer()
    module = SAM2LightningModule(settings, built=built, validator=None)
    loader: torch.utils.data.DataLoader[Any] = torch.utils.data.DataLoader(
        [batch] * total,  # type: ignore[arg-type]
        batch_size=None,
        collate_fn=lambda b: b,
        num_workers=0,
    )
    trainer = L.Trainer(
        accelerator=args.device,
        devices=1,
        precision=args.precision,
        max_steps=total,
        gradient_clip_val=0.1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=[timer],
    )
    trainer.fit(module, train_dataloaders=loader)
    times = [end - start for start, end in zip(timer.starts, timer.ends, strict=True)][args.warmup :]
    wall = (timer.ends[-1] - timer.starts[args.warmup]) / len(times)
    return times, wall


def run_official(model: torch.nn.Module, batch: Any, args: argparse.Namespace) -> tuple[list[float], float]:
    """Meta's SAM2Train + MultiStepMultiMasksAndIous in a plain loop, as training.trainer steps it."""
    from training.loss_fns import MultiStepMultiMasksAndIous
    from training.trainer import CORE_LOSS_KEY

    device = torch.device(args.device)
    criterion = MultiStepMultiMasksAndIous(
        weight_dict={"loss_mask": 20, "loss_dice": 1, "loss_iou": 1, "loss_class": 1},
        supervise_all_iou=True,
        iou_use_l1_loss=True,
        pred_obj_scores=True,
        focal_gamma_obj_score=0.0,
        focal_alpha_obj_score=-1.0,
    )
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)
    data = OfficialInput(batch.to(device))
    bf16 = args.precision.startswith("bf16")
    times: list[float] = []
    for step in range(args.warmup + args.steps):
        sync(device)
        start = time.perf_counter()
        rng, torch_seed = step_seeds(step)  # the same prompts as our step of the same index
        model.rng = rng  # type: ignore[assignment]
        torch.manual_seed(torch_seed)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
            outputs = model(data)
            loss = criterion(outputs, data.masks)[CORE_LOSS_KEY]
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"loss is {loss.item()}")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=0.1)
        optimizer.step()
        sync(device)
        times.append(time.perf_counter() - start)
    model.cpu()
    timed = times[args.warmup :]
    return timed, sum(timed) / len(timed)


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    name = platform.processor()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        name = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), name)
    return f"{name or platform.machine()}, {os.cpu_count()} cores"


def main() -> None:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="tiny", help="tiny, small, base_plus, large or micro")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--objects", type=int, default=2)
    parser.add_argument("--steps", type=int, default=None, help="timed steps per run (default: 6 on CPU, 20 on CUDA)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps at the start of every run")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each side, alternating ours / official")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if cuda else "cpu")
    parser.add_argument("--precision", choices=("32-true", "bf16-mixed"), default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.steps is None:
        args.steps = 20 if args.device == "cuda" else 6
    if args.precision is None:
        args.precision = "bf16-mixed" if args.device == "cuda" else "32-true"
    if args.steps < 1 or args.warmup < 0 or args.rounds < 1:
        parser.error("--steps and --rounds must be >= 1, --warmup >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    import lightning  # noqa: F401  (sets its loggers' levels on import; quieten them afterwards)

    for name in ("lightning.pytorch", "lightning.pytorch.utilities.rank_zero", "lightning.fabric", "sam2tool"):
        logging.getLogger(name).setLevel(logging.ERROR)

    from sam2tool.config.loading import load_settings
    from sam2tool.models.build import build_model
    from sam2tool.models.train_forward import PromptSimulation

    settings = load_settings(
        None,
        [
            f"model.size={args.size}",
            "model.version=sam2.1",
            "model.checkpoint=null",
            f"dataset.image_size={args.image_size}",
            f"dataset.video_clip_length={args.frames}",
            f"dataset.max_num_objects={args.objects}",
            f"trainer.accelerator={args.device}",
            f"trainer.precision={args.precision}",
            "trainer.max_epochs=null",
            f"trainer.max_steps={args.warmup + args.steps}",
            "trainer.gradient_clip_val=0.1",
            f"trainer.seed={SEED}",
            "logging.progress=false",
        ],
        environment=False,
    )
    sim = PromptSimulation.from_settings(settings.model)
    overrides = sim.official_overrides()
    torch.manual_seed(SEED)
    built = build_model(settings.model, args.image_size, load_weights=False, progress=False)
    initial = {k: v.clone() for k, v in built.model.state_dict().items()}
    official = build_model(
        settings.model, args.image_size, target=OFFICIAL_TARGET, extra_overrides=overrides, load_weights=False
    ).model
    batch = make_batch(args.frames, args.objects, args.image_size)

    print(
        f"device: {device_name(args.device)}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"precision {args.precision}; load average {os.getloadavg()[0]:.2f}"
    )
    print(
        f"model: SAM 2.1 {args.size} at {args.image_size} px, random weights; one clip of {args.frames} frames, "
        f"{args.objects} objects; {args.steps} timed steps after {args.warmup} warm-up steps, "
        f"{args.rounds} rounds alternating ours / official (ABBA); data loading and host-to-device copy excluded"
    )
    results: dict[str, list[float]] = {"ours": [], "official": []}
    walls: dict[str, list[float]] = {"ours": [], "official": []}
    for round_index in range(args.rounds):
        # ABBA order (ours, official, official, ours, ...): drift and first-run costs hit both sides alike.
        for side in ("ours", "official") if round_index % 2 == 0 else ("official", "ours"):
            gc.collect()
            if args.device == "cuda":
                torch.cuda.empty_cache()
            if side == "ours":
                built.model.load_state_dict(initial)
                times, wall = run_ours(settings, built, batch, args)
            else:
                official.load_state_dict(initial)
                times, wall = run_official(official, batch, args)
            results[side] += times
            walls[side].append(wall)
            steps = " ".join(f"{t:.3f}" for t in times)
            print(f"  round {round_index + 1} {side:8s} s/step: {steps}")

    summary = {
        side: (statistics.median(times), statistics.fmean(times), statistics.fmean(walls[side]))
        for side, times in results.items()
    }
    ratio_median = summary["ours"][0] / summary["official"][0]
    ratio_mean = summary["ours"][1] / summary["official"][1]
    # Step i of a run draws the same prompts on both sides, so step-by-step ratios cancel the cost differences
    # between steps (mask prompts vs clicks with corrections) and are the least noisy comparison.
    paired = statistics.median(a / b for a, b in zip(results["ours"], results["official"], strict=True))
    print(
        f"ours / official: {ratio_median:.3f} (medians), {ratio_mean:.3f} (means), "
        f"{paired:.3f} (median of step-by-step ratios, same prompts), "
        f"{summary['ours'][2] / summary['official'][2]:.3f} (wall time per step, incl. between-step overhead)"
    )
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.2f} (other processes skew CPU timings)")
    print()
    print(
        f"Training step, SAM 2.1 {args.size} at {args.image_size} px, {args.frames} frames x {args.objects} objects, "
        f"{args.precision}, {device_name(args.device)}, torch {torch.__version__}, {torch.get_num_threads()} threads "
        f"({len(results['ours'])} steps each):"
    )
    print()
    print("| | median s/step | mean s/step | vs official |")
    print("|---|---:|---:|---:|")
    print(
        f"| official `SAM2Train` + `MultiStepMultiMasksAndIous`, plain loop | {summary['official'][0]:.3f} "
        f"| {summary['official'][1]:.3f} | 1.00 |"
    )
    print(
        f"| sam2tool `SAM2LightningModule`, `lightning.Trainer` | {summary['ours'][0]:.3f} "
        f"| {summary['ours'][1]:.3f} | {ratio_median:.2f} |"
    )


if __name__ == "__main__":
    main()
