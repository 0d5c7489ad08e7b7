"""Loader throughput against a ResNet-50 training step, and the face store against a folder of JPEG frames.

1. A store of aligned 256-pixel crops of the bundled video (prepared once) serves 16-frame 224×224 training
   clips (random windows, clip-consistent augmentation) through `AUWindowDataset`; clips/s with 0 and 2
   loader workers.
2. A ResNet-50 (transformers, random weights: speed does not depend on them) training step, forward + backward
   + AdamW update, on one 16-frame clip at a time (batch 16 images of 224×224): clips/s on this machine.
   Ratio = loader clips/s ÷ ResNet-50 clips/s (target ≥ 5).
3. The same random 16-frame windows read from the store and from a folder of JPEG files per sequence (the
   reference code bases' format: one file per frame, same JPEG quality), decoded to arrays: windows/s, ratio.

    python benchmarks/loader_speed.py [--clips 64] [--steps 3]
"""

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from aufer.datasets.loaders import AUWindowDataset, store_loader
from aufer.store.prepare import prepare
from aufer.store.facestore import FaceStore
from aufer.media import list_images

from prepare_speed import video_records  # noqa: E402  (same folder)


def loader_rate(ds, workers: int, n_clips: int) -> float:
    loader = store_loader(ds, batch_size=1, workers=workers)
    it = iter(loader)
    next(it)  # start-up (worker processes) not counted
    t = time.perf_counter()
    for k, _ in zip(range(n_clips), it):
        pass
    return n_clips / (time.perf_counter() - t)


def resnet_rate(steps: int) -> float:
    from transformers import ResNetConfig, ResNetForImageClassification

    torch.manual_seed(0)
    model = ResNetForImageClassification(ResNetConfig())  # ResNet-50 layout, random weights
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x, y = torch.randn(16, 3, 224, 224), torch.randint(0, 2, (16,))

    def step():
        loss = torch.nn.functional.cross_entropy(model(pixel_values=x).logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()  # warm-up
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - t)


def store_vs_jpeg(store: FaceStore, windows: list[tuple[str, int]], folder: Path) -> tuple[float, float]:
    quality = store.quality
    for key in store.sequences()["key"]:  # export the store's crops as one JPEG file per frame
        d = folder / key
        d.mkdir(parents=True, exist_ok=True)
        frames = store.stored_frames(key)
        for a in range(0, len(frames), 64):
            chunk = frames[a:a + 64]
            for f, crop in zip(chunk, store.read(key, chunk)["crops"]):
                cv2.imwrite(str(d / f"{f:05d}.jpg"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])

    def from_store():
        for key, start in windows:
            store.read(key, range(start, start + 16))["crops"]

    def from_folder():
        for key, start in windows:
            files = list_images(folder / key)[start:start + 16]
            np.stack([cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in files])

    rates = []
    for fn in (from_store, from_folder):
        fn()  # warm the page cache for both alike
        t = time.perf_counter()
        fn()
        rates.append(len(windows) / (time.perf_counter() - t))
    return rates[0], rates[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=64, help="clips timed per loader setting")
    ap.add_argument("--steps", type=int, default=3, help="ResNet-50 steps timed")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        rec = video_records(2)
        prepare(rec, Path(d) / "s.sqlite", crop_size=256, progress=False)
        store = FaceStore(Path(d) / "s.sqlite")
        ds = AUWindowDataset(store, rec, length=16, train=True, out_size=224)
        rates = {w: loader_rate(ds, w, args.clips) for w in (0, 2)}
        for w, r in rates.items():
            print(f"loader, {w} workers: {r:.1f} clips/s of 16×224×224 (store crops 256, augmented)")
        rn = resnet_rate(args.steps)
        print(f"ResNet-50 training step (forward+backward+AdamW), 16×224×224: {rn:.3f} clips/s ({1 / rn:.2f} s/clip)")
        print(f"ratio loader/ResNet-50: {rates[0] / rn:.1f} (0 workers), {rates[2] / rn:.1f} (2 workers); target ≥ 5")
        rng = np.random.default_rng(0)
        keys = list(store.sequences()["key"])
        windows = [(keys[rng.integers(len(keys))], int(rng.integers(0, 472 - 16))) for _ in range(200)]
        s, j = store_vs_jpeg(store, windows, Path(d) / "jpeg")
        print(f"16-frame window reads: store {s:.1f}/s, JPEG folder {j:.1f}/s; ratio store/folder {s / j:.2f}")


if __name__ == "__main__":
    main()
