"""SSM speed: training step time and clips/s, FLOPs, achieved FLOP/s, peak GPU memory, and whether a 16-GB card
needs gradient checkpointing.

One training step is what the engine runs for SSM (``aufer.methods.ssm.loss.ssm_step``): the mixup of the AU clips,
the forward of the expression batch and of the mixed AU batch, the four-term normalised loss, backward, gradient
clipping at 1.0 and an AdamW step over SSM's three parameter groups; random weights, random labels.

* default: CLIP ViT-B/16 with the MoE (``ssm.bp4d_clip``, random weights from its config, no download) at the
  released batch, 12 expression + 8 AU clips × 16 frames at 224 px (320 frames per step), fp32 (the official
  precision) and bf16 autocast, and fp32 with gradient checkpointing of the vision blocks;
* ``--small``: a reduced CLIP (2 vision blocks of width 64, 1 text block, patch 16 at 32 px) with 2 + 2 clips × 16
  frames: the CPU check of the issue (seconds per step).

FLOPs are counted once with ``torch.utils.flop_counter.FlopCounterMode`` over one forward + backward of the step
(matmuls and convolutions; element-wise ops are not counted); on CUDA the achieved FLOP/s is also given as a
fraction of the GPU's dense bf16 peak (``mdhr_speed.PEAK_BF16_TFLOPS``; the fp32 rows use the same peak and so
understate what fp32 could reach). Peak memory is ``torch.cuda.max_memory_allocated``; a step whose peak is above
16 GiB needs gradient checkpointing (or a smaller batch) on a 16-GB card.

    python benchmarks/ssm_speed.py --small                     # CPU, about a minute
    python benchmarks/ssm_speed.py --devices cuda [--steps 5]  # the released batch on a GPU
"""

from __future__ import annotations

import argparse
from contextlib import nullcontext

import torch

from mdhr_speed import _fmt_flops, _sync, _timed, peak_for  # same folder

SMALL_CLIP = {"projection_dim": 64,
              "text_config": {"hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 1, "intermediate_size": 128,
                              "vocab_size": 49408, "max_position_embeddings": 77, "hidden_act": "quick_gelu"},
              "vision_config": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 1,
                                "intermediate_size": 128, "image_size": 32, "patch_size": 16, "hidden_act": "quick_gelu"}}


def _setup(dev, small: bool, checkpointing: bool):
    from aufer.training.steps import StepContext
    from aufer.training.losses import LossContext
    from aufer.models import create_model, param_groups

    torch.manual_seed(0)
    kw = dict(clip_config=SMALL_CLIP, input_size=32, moe_layers=1) if small else {}
    model = create_model("ssm.bp4d_clip", pretrained=False, **kw).to(dev)
    if checkpointing:
        model.visual.vision_model.gradient_checkpointing_enable()
    lrs = {"visual": 1e-6, "maps": 1e-2, "heads": 1e-4}
    opt = torch.optim.AdamW([{"params": [p for p in ps if p.requires_grad], "lr": lrs[g]}
                             for g, ps in param_groups(model).items()], weight_decay=1e-4)
    ctx = StepContext(device=dev, loss=LossContext(epoch=5), optimizer=opt, args={"alpha": 0.4})
    return model, opt, ctx


def _batches(dev, b_expr: int, b_au: int, t: int, size: int):
    g = torch.Generator().manual_seed(0)
    crops = lambda b: torch.randint(0, 256, (b, t, size, size, 3), dtype=torch.uint8, generator=g).to(dev)  # noqa: E731
    expr = {"crops": crops(b_expr), "expr": torch.randint(0, 7, (b_expr,), generator=g).to(dev)}
    au = {"crops": crops(b_au), "au": torch.randint(0, 2, (b_au, t, 12), generator=g).to(dev)}
    return au, expr


def _step(model, opt, ctx, au, expr, amp):
    from aufer.methods.ssm.loss import ssm_loss, ssm_step

    with torch.autocast(au["crops"].device.type, dtype=amp) if amp is not None else nullcontext():
        loss = ssm_step(model, au, expr, ssm_loss, ctx)["loss"]
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()


def count_flops(model, opt, ctx, au, expr) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    from aufer.methods.ssm.loss import ssm_loss, ssm_step

    with FlopCounterMode(display=False) as fc:
        ssm_step(model, au, expr, ssm_loss, ctx)["loss"].backward()
    opt.zero_grad(set_to_none=True)
    return float(fc.get_total_flops())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="a reduced CLIP, 2 + 2 clips, 32 px (the CPU check)")
    ap.add_argument("--devices", default="auto", help="cpu / cuda, comma-separated; auto = cpu with --small, else cuda if available")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--peak-tflops", type=float, default=None)
    args = ap.parse_args()
    b_expr, b_au, t, size = (2, 2, 16, 32) if args.small else (12, 8, 16, 224)
    if args.devices == "auto":
        devs = ["cpu"] if args.small or not torch.cuda.is_available() else ["cuda"]
    else:
        devs = [d.strip() for d in args.devices.split(",") if d.strip()]
    print(f"SSM {'reduced CLIP' if args.small else 'CLIP ViT-B/16 + MoE'} (random init): {b_expr} expression + {b_au} AU "
          f"clips × {t} frames at {size} px per step; median of {args.steps} steps after {args.warmup}; torch {torch.__version__}")
    for name in devs:
        dev = torch.device(name)
        peak = (args.peak_tflops or peak_for(torch.cuda.get_device_name(dev))) if dev.type == "cuda" else None
        print(f"{name}: {torch.cuda.get_device_name(dev) if dev.type == 'cuda' else f'{torch.get_num_threads()} threads'}"
              + (f", peak {peak} TFLOP/s dense bf16" if peak else ""))
        modes = [("fp32", None, False), ("bf16", torch.bfloat16, False), ("fp32 + checkpointing", None, True)]
        for label, amp, ckpt in modes if dev.type == "cuda" else modes[:1]:
            model, opt, ctx = _setup(dev, args.small, ckpt)
            au, expr = _batches(dev, b_expr, b_au, t, size)
            flops = count_flops(model, opt, ctx, au, expr)
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
            sec = _timed(lambda: _step(model, opt, ctx, au, expr, amp), dev, args.warmup, args.steps)
            cps = (b_expr + b_au) / sec
            text = f"  {label:22s} {sec:7.3f} s/step, {cps:7.2f} clips/s, {_fmt_flops(flops / sec)}/s"
            if peak:
                text += f" ({100 * flops / sec / (peak * 1e12):5.1f} % of peak)"
            if dev.type == "cuda":
                gib = torch.cuda.max_memory_allocated(dev) / 2 ** 30
                text += f", peak memory {gib:6.2f} GiB ({'needs' if gib > 16 else 'fits without'} checkpointing on 16 GB)"
            print(text, flush=True)
            del model, opt, ctx, au, expr
            if dev.type == "cuda":
                torch.cuda.empty_cache()
        _sync(dev)


if __name__ == "__main__":
    main()
