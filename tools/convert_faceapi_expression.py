"""Convert face-api's facial expression network (npm ``@vladmandic/face-api`` 1.7.15, MIT) into aufer's shipped
checkpoint ``src/aufer/data/models/faceapi-expression/`` (``model.safetensors`` in float32, ``model.json``,
``LICENSE-face-api.txt``).

    .venv/bin/python tools/convert_faceapi_expression.py            # needs npm and the npm registry
    .venv/bin/python tools/convert_faceapi_expression.py --tarball vladmandic-face-api-1.7.15.tgz   # offline
    .venv/bin/python tools/convert_faceapi_expression.py --dtype float16   # half the size, ≈ 4e-4 off face-api

Steps: ``npm pack @vladmandic/face-api@1.7.15`` into a temporary folder (conversion time only; aufer never
downloads at run time), read ``package/model/face_expression_model-weights_manifest.json`` and its shard
``face_expression_model.bin`` from the tarball, dequantise every uint8 tensor as ``q · scale + min``
(:func:`aufer.models.faceapi_expression.dequantise_weights`), convert the TF layouts to PyTorch's
(:func:`~aufer.models.faceapi_expression.state_dict_from_faceapi`: HWIO → OIHW, depthwise H W C 1 → C 1 H W,
dense in × out → out × in), load them strictly into ``create_model("faceapi_expression")`` and write it with
``aufer.models.save_model(..., dtype=torch.float32)``: float32 holds face-api's dequantised weights exactly (the
port then gives face-api's probabilities to about 1e-7), where fp16, aufer's usual dtype for shipped models, moves
them by up to 4e-4; the file is 1.3 MB. The package's ``LICENSE`` is copied verbatim. The model card
(``MODEL_CARD.md``) in the same folder is written by hand and left alone.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from aufer.models import create_model, save_model
from aufer.models.faceapi_expression import (
    FACEAPI_LABELS,
    dequantise_weights,
    state_dict_from_faceapi,
)

PACKAGE = "@vladmandic/face-api"
VERSION = "1.7.15"
MANIFEST = "package/model/face_expression_model-weights_manifest.json"
SHARD_DIR = "package/model"
LICENSE = "package/LICENSE"
OUT = ROOT / "src" / "aufer" / "data" / "models" / "faceapi-expression"


def npm_pack(dest: Path) -> Path:
    """``npm pack PACKAGE@VERSION`` into ``dest``; returns the tarball's path.

    Raises:
        RuntimeError: npm is missing or fails (no registry access).
    """
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not installed; pass --tarball with a copy of the package")
    r = subprocess.run([npm, "pack", f"{PACKAGE}@{VERSION}", "--pack-destination", str(dest)], capture_output=True,
                       text=True, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"npm pack {PACKAGE}@{VERSION} failed:\n{r.stderr.strip()}")
    found = sorted(dest.glob("*.tgz"))
    if len(found) != 1:
        raise RuntimeError(f"npm pack wrote {len(found)} tarballs in {dest}")
    return found[0]


def read_member(tar: tarfile.TarFile, name: str) -> bytes:
    """Bytes of one file of the tarball (KeyError if absent)."""
    f = tar.extractfile(tar.getmember(name))
    if f is None:
        raise KeyError(f"{name} is not a regular file in the tarball")
    return f.read()


def convert(tarball: Path, out: Path = OUT, dtype: torch.dtype = torch.float32) -> dict:
    """Convert the tarball's expression network into ``out``; returns the facts written into ``model.json``.

    Raises:
        KeyError: the tarball lacks the model files; ValueError: they do not decode; aufer's CheckpointError or
            RuntimeError: the tensors do not fit the port.
    """
    with tarfile.open(tarball, "r:gz") as tar:
        manifest_bytes = read_member(tar, MANIFEST)
        manifest = json.loads(manifest_bytes)
        shard = b"".join(read_member(tar, f"{SHARD_DIR}/{p}") for g in manifest for p in g["paths"])
        package = json.loads(read_member(tar, "package/package.json"))
        licence = read_member(tar, LICENSE)
    if package.get("version") != VERSION or package.get("license") != "MIT":
        raise ValueError(f"expected {PACKAGE} {VERSION} (MIT), got {package.get('version')} ({package.get('license')})")
    tensors = dequantise_weights(manifest, shard)
    model = create_model("faceapi_expression").eval()
    model.load_state_dict(state_dict_from_faceapi(tensors), strict=True)
    n_params = sum(p.numel() for p in model.parameters())
    extra = {
        "source": f"npm {PACKAGE}@{VERSION}, model/face_expression_model.bin + "
                  "model/face_expression_model-weights_manifest.json (FaceExpressionNet)",
        "homepage": "https://github.com/vladmandic/face-api",
        "licence": "MIT",
        "licence_file": "LICENSE-face-api.txt",
        "copyright": "Copyright (c) Vladimir Mandic (the package's LICENSE); a fork of face-api.js 0.22.2 "
                     "(github.com/justadudewhohacks/face-api.js, MIT), whose weights it ships",
        "trained_on": "as face-api.js's README states: 'a variety of images from publicly available datasets as "
                      "well as images scraped from the web' (datasets not named); aufer did not train it",
        "faceapi_labels": list(FACEAPI_LABELS),
        "sha256": {"face_expression_model.bin": hashlib.sha256(shard).hexdigest(),
                   "face_expression_model-weights_manifest.json": hashlib.sha256(manifest_bytes).hexdigest(),
                   tarball.name: hashlib.sha256(tarball.read_bytes()).hexdigest()},
        "dequantisation": "uint8 q -> q * scale + min per manifest entry (float64, then float32); biases float32",
        "parameters": n_params,
        "stored_dtype": str(dtype).removeprefix("torch."),
        "converted_by": "tools/convert_faceapi_expression.py",
    }
    out.mkdir(parents=True, exist_ok=True)
    save_model(model, out / "model", extra=extra, dtype=dtype)
    (out / "LICENSE-face-api.txt").write_bytes(licence)
    return extra


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tarball", type=Path, help=f"a local copy of {PACKAGE}-{VERSION}.tgz (default: npm pack it)")
    ap.add_argument("--out", type=Path, default=OUT, help="output folder (default: %(default)s)")
    ap.add_argument("--dtype", choices=("float16", "float32"), default="float32",
                    help="stored dtype (default float32: face-api's dequantised weights exactly; float16 is half the "
                         "size and about 4e-4 off face-api's probabilities)")
    args = ap.parse_args(argv)
    dtype = getattr(torch, args.dtype)
    if args.tarball is not None:
        facts = convert(args.tarball, args.out, dtype)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            facts = convert(npm_pack(Path(tmp)), args.out, dtype)
    print(f"wrote {args.out} ({facts['parameters']} parameters, {args.dtype})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
