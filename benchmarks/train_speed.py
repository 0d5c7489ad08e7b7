"""Training-engine speed.

1. CPU (always): steps/s of the engine's ``train_one_epoch`` (joint step, recipe loss, the runner's per-step
   logging callback) against a bare hand-written loop over the same model, the same pre-loaded batches and the
   same optimiser. Rounds alternate engine / bare and the medians are compared; target ratio ≥ 0.95.
2. GPU (when CUDA is available): a ResNet-50 joint recipe's training throughput in clips/s (AU clips +
   expression clips per second) with fp32, bf16 and bf16 + channels_last, and the share of step time spent
   waiting for data with the machine's cores as loader workers (SYNTHETIC random crops in a temporary store).

    python benchmarks/train_speed.py [--rounds 5] [--steps 20] [--gpu-steps 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _batches(n: int, b_au: int, b_ex: int, t: int, size: int, aus: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        au = {"crops": torch.randint(0, 255, (b_au, t, size, size, 3), generator=g, dtype=torch.uint8),
              "landmarks": torch.rand(b_au, t, 478, 3, generator=g) * size,
              "au": torch.randint(0, 2, (b_au, t, aus), generator=g), "expr": torch.full((b_au,), -1)}
        ex = {"crops": torch.randint(0, 255, (b_ex, 1, size, size, 3), generator=g, dtype=torch.uint8),
              "landmarks": torch.rand(b_ex, 1, 478, 3, generator=g) * size,
              "au": torch.full((b_ex, 1, aus), -1), "expr": torch.randint(0, 7, (b_ex,), generator=g)}
        out.append((au, ex))
    return out


def _bare_epoch(model, batches, opt):
    from aufer.training.losses import masked_bce, masked_ce

    model.train()
    for au_b, ex_b in batches:
        lm = model.uses_landmarks
        oa = model(model.preprocess(au_b["crops"]), au_b["landmarks"] if lm else None)
        oe = model(model.preprocess(ex_b["crops"]), ex_b["landmarks"] if lm else None)
        l_au = masked_bce(torch.cat([oa["au"].flatten(0, 1), oe["au"].flatten(0, 1)]),
                          torch.cat([au_b["au"].flatten(0, 1), ex_b["au"].flatten(0, 1)]))
        l_ex = masked_ce(torch.cat([oa["expr"], oe["expr"]]), torch.cat([au_b["expr"], ex_b["expr"]]))
        loss = l_au + l_ex
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def _engine_epoch(model, batches, opt, runlog, step_counter):
    from aufer.engine.loop import train_one_epoch
    from aufer.training.steps import StepContext, joint_step
    from aufer.training.losses import LossContext, joint_loss

    ctx = StepContext(device=torch.device("cpu"), loss=LossContext(), optimizer=opt)

    def on_step(done, logs):  # what the runner does per step
        step_counter[0] += 1
        runlog.advance(1, "")
        if step_counter[0] % 10 == 0:
            runlog.step(step_counter[0], {**logs, "lr": opt.param_groups[0]["lr"]})

    train_one_epoch(model, batches, joint_step, joint_loss, opt, ctx=ctx, n_steps=len(batches), on_step=on_step)


def cpu_ratio(rounds: int, steps: int) -> None:
    from aufer.engine.logs import RunLog
    from aufer.models import create_model
    from aufer.synth import SYNTH_AUS

    torch.manual_seed(0)
    model = create_model("aufer_tiny", aus=SYNTH_AUS)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batches = _batches(steps, 8, 32, 4, 112, len(SYNTH_AUS))
    with tempfile.TemporaryDirectory() as d:
        runlog = RunLog(d, active=True, tensorboard=True, progress=False)
        counter = [0]
        _bare_epoch(model, batches[:2], opt)  # warm-up
        _engine_epoch(model, batches[:2], opt, runlog, counter)
        eng, bare = [], []
        for _ in range(rounds):
            t0 = time.perf_counter()
            _engine_epoch(model, batches, opt, runlog, counter)
            eng.append(steps / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            _bare_epoch(model, batches, opt)
            bare.append(steps / (time.perf_counter() - t0))
        runlog.close()
    e, b = statistics.median(eng), statistics.median(bare)
    print(f"CPU, aufer_tiny (112 px), AU batch 8×4 frames + expression batch 32, {torch.get_num_threads()} threads, "
          f"{rounds} alternating rounds of {steps} steps")
    print(f"  engine train_one_epoch: {e:.2f} steps/s (rounds: {', '.join(f'{x:.2f}' for x in eng)})")
    print(f"  bare hand-written loop: {b:.2f} steps/s (rounds: {', '.join(f'{x:.2f}' for x in bare)})")
    print(f"  ratio engine / bare = {e / b:.3f} (target >= 0.95)")


def gpu(steps: int) -> None:
    from aufer.datasets.loaders import JointLoader, make_loader
    from aufer.datasets.clips import ExprClipDataset
    from aufer.datasets.windows import AUWindowDataset
    from aufer.datasets.transforms import ClipTransform
    from aufer.engine.loop import train_one_epoch
    from aufer.training.steps import StepContext, joint_step
    from aufer.training.losses import LossContext, joint_loss
    from aufer.models import create_model
    from aufer.store import FaceStore
    from aufer.synth import ClipSet

    dev = torch.device("cuda")
    print(f"GPU: {torch.cuda.get_device_name(dev)}; ResNet-50 (random init, transformers config) joint recipe, "
          "AU batch 8 × 16 frames + expression batch 12 × 16 frames at 224 px")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as d:
        n, t, s = 48, 16, 256
        crops = rng.integers(0, 255, (n, t, s, s, 3), dtype=np.uint8)
        lms = rng.uniform(0, s, (n, t, 478, 3)).astype(np.float32)
        au = rng.integers(0, 2, (n, t, 12)).astype(np.int8)
        cs = ClipSet(crops, lms, au, au.astype(np.float32), rng.integers(0, 7, n), np.array([f"p{i % 12}" for i in range(n)]),
                     np.full(n, "synthetic"), np.ones((n, t), bool), tuple(range(1, 13)), tuple(f"e{i}" for i in range(7)))
        store = FaceStore(Path(d) / "s.sqlite", "a", crop_size=s)
        au_rec, ex_rec = cs.to_store(store, "a", "au"), cs.to_store(store, "a", "expr")
        tf = ClipTransform(size=224, resize=256, crop="random", rotation=0, scale=0, shift=0)
        workers = max(1, (os.cpu_count() or 2) // 2)
        au_ds = AUWindowDataset(store, au_rec, length=16, train=True, transform=tf)
        ex_ds = ExprClipDataset(store, ex_rec, num_segments=16, train=True, aus=tuple(range(1, 13)), transform=tf)
        for label, amp, cl in (("fp32", None, False), ("bf16", torch.bfloat16, False), ("bf16+channels_last", torch.bfloat16, True)):
            torch.manual_seed(0)
            model = create_model("aufer_hf", pretrained=False, hf_config={"model_type": "resnet"}, aus=list(range(1, 13)),
                                 emotions=[f"e{i}" for i in range(7)]).to(dev)
            if cl:
                model = model.to(memory_format=torch.channels_last)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
            joint = JointLoader(make_loader(au_ds, 8, train=True, workers=workers, pin_memory=True),
                                make_loader(ex_ds, 12, train=True, workers=workers, pin_memory=True))
            ctx = StepContext(device=dev, loss=LossContext(), optimizer=opt)
            waits, times = [], []

            class Timed:
                def __iter__(self_inner):
                    epoch = 0
                    while True:
                        epoch += 1
                        joint.set_epoch(epoch)
                        it = iter(joint)
                        while True:
                            t0 = time.perf_counter()
                            try:
                                b = next(it)
                            except StopIteration:
                                break
                            waits.append(time.perf_counter() - t0)
                            yield b

                def __len__(self_inner):
                    return steps

            def on_step(done, logs):
                torch.cuda.synchronize()
                times.append(time.perf_counter())

            t_start = time.perf_counter()
            train_one_epoch(model, Timed(), joint_step, joint_loss, opt, ctx=ctx, amp_dtype=amp, n_steps=steps,
                            on_step=on_step)
            warm = 5
            dt = times[-1] - times[warm - 1]
            clips = (steps - warm) * (8 + 12) / dt
            wait = sum(waits[warm:steps]) / dt
            print(f"  {label:20s}: {clips:7.1f} clips/s ({(steps - warm) / dt:.2f} steps/s), data wait "
                  f"{100 * wait:.1f} % of step time with {workers} workers per loader "
                  f"(total {time.perf_counter() - t_start:.1f} s)")
            del model, opt


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--gpu-steps", type=int, default=30)
    args = ap.parse_args()
    cpu_ratio(args.rounds, args.steps)
    if torch.cuda.is_available():
        gpu(args.gpu_steps)
    else:
        print("GPU: no CUDA device on this machine; the ResNet-50 fp32 / bf16 / channels_last throughput was not measured")


if __name__ == "__main__":
    main()
