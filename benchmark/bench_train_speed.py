"""Training speed of the full-size DMDNet: seconds per 512² training image on the CPU, img/s on a GPU.

    python -m benchmark.bench_train_speed [--steps 3] [--batch 1] [--references 2] [--threads 2]

One training step as the shared trainer runs it (``Trainer._generator_step`` and ``_discriminator_step``):
the released configuration (64 channels, 128 generic items) in the ``frozen`` dictionary stage (Θ
fine-tuning; the ``init`` / ``forward`` stages also run F_gen over the Y = 128 item faces every step),
each face with ``--references`` references, MSE + VGG-19 perceptual + style + hinge GAN with the
discriminators at scales 1, 2, 4, Adam steps included. The batch is synthetic (data loading is not timed).
The VGG-19 here has generated weights: only its cost matters for timing (training loads the real file).
On a GPU: batch 8 (``--gpu-batch``), bf16 autocast where supported, channels-last; img/s and peak memory.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from celebref.hardware import capabilities
from dmdnet.boxes import component_boxes
from dmdnet.network import DMDNetConfig
from dmdnet.train.dmdnet_task import DictionarySchedule, DMDNetTraining
from dmdnet.train.losses import LossWeights, VGGFeatures
from dmdnet.train.trainer import DistributedContext, Trainer, TrainerConfig

# a plausible aligned face's landmarks (mean shape, 512² frame) for the component boxes
_EYES_MOUTH = {"le": (190, 240), "re": (322, 240), "mo": (256, 370)}


def _boxes() -> torch.Tensor:
    rng = np.random.default_rng(0)
    pts = np.zeros((68, 2))
    pts[:17] = np.stack([np.linspace(110, 400, 17), 300 + 80 * np.sin(np.linspace(0, np.pi, 17))], 1)
    pts[17:22] = [(150 + 20 * i, 200) for i in range(5)]
    pts[22:27] = [(282 + 20 * i, 200) for i in range(5)]
    pts[27:36] = [(256, 250 + 10 * i) for i in range(9)]
    for start, (cx, cy) in ((36, _EYES_MOUTH["le"]), (42, _EYES_MOUTH["re"])):
        ang = np.linspace(0, 2 * np.pi, 6, endpoint=False)
        pts[start : start + 6] = np.stack([cx + 25 * np.cos(ang), cy + 10 * np.sin(ang)], 1)
    ang = np.linspace(0, 2 * np.pi, 20, endpoint=False)
    pts[48:68] = np.stack([256 + 50 * np.cos(ang), 370 + 20 * np.sin(ang)], 1)
    pts += rng.normal(0, 0.5, pts.shape)
    return torch.from_numpy(component_boxes(pts))


def _batch(size: int, references: int, device: torch.device) -> dict:
    gen = torch.Generator().manual_seed(0)
    boxes = _boxes()
    images = torch.rand(size, 3, 512, 512, generator=gen) * 2 - 1
    refs = [torch.rand(references, 3, 512, 512, generator=gen).to(device) * 2 - 1 for _ in range(size)]
    return {
        "lq": images.to(device),
        "gt": (images.flip(-1)).to(device),
        "boxes": boxes.expand(size, 4, 4).clone(),
        "references": refs,
        "reference_boxes": [boxes.expand(references, 4, 4).clone() for _ in range(size)],
    }


def _generated_vgg() -> VGGFeatures:
    from torchvision.models import vgg19

    torch.manual_seed(0)
    return VGGFeatures({f"features.{k}": v for k, v in vgg19(weights=None).features.state_dict().items()})


def measure(device: torch.device, batch: int, references: int, steps: int, precision: str) -> dict:
    torch.manual_seed(0)
    model = DMDNetTraining(DMDNetConfig(), DictionarySchedule(stages=("frozen",), steps=()))
    config = TrainerConfig(steps=steps, batch_size=batch, losses=LossWeights(), precision=precision)
    trainer = Trainer(
        model, [], None, config, "/tmp/bench_train_speed", collate=list, vgg=_generated_vgg(),
        context=DistributedContext(), device=device,
    )  # fmt: skip
    micro = [_batch(batch, references, device)]
    times = []
    for _ in range(steps + 1):  # the first step warms up
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        _, fakes = trainer._generator_step(micro)
        trainer._discriminator_step(micro, fakes)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    per_step = float(np.median(times[1:]))
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return {
        "s_per_img": per_step / batch,
        "img_per_s": batch / per_step,
        "peak_gib": peak,
        "dtype": trainer.dtype,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m benchmark.bench_train_speed", description=__doc__.split("\n")[0]
    )
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--batch", type=int, default=1, help="CPU batch")
    p.add_argument("--gpu-batch", type=int, default=8)
    p.add_argument("--references", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cpu = measure(torch.device("cpu"), args.batch, args.references, args.steps, "fp32")
    print(f"{capabilities('cpu').describe()}")
    print(
        f"CPU fp32, {args.threads} threads, batch {args.batch}, {args.references} refs/face: "
        f"{cpu['s_per_img']:.2f} s per training image (generator + discriminators + losses + Adam)"
    )
    if torch.cuda.is_available():
        dev = torch.device("cuda")
        torch.backends.cudnn.benchmark = True
        gpu = measure(dev, args.gpu_batch, args.references, args.steps, "auto")
        print(capabilities(dev).describe())
        print(
            f"GPU {gpu['dtype']}, batch {args.gpu_batch}: {gpu['img_per_s']:.1f} img/s, "
            f"peak memory {gpu['peak_gib']:.1f} GiB"
        )
    else:
        print("GPU: none here (img/s and peak memory need a CUDA device)")


if __name__ == "__main__":
    main()
