"""Make ``tests/fixtures/faceapi_expression_fixture.npz``: face-api's own FaceExpressionNet outputs on a few fixed
inputs, which ``tests/test_faceapi_expression.py`` holds aufer's port to (CI has no Node: the test only reads the
file).

    .venv/bin/python tools/faceapi_fixture.py      # needs Node ≥ 18, npm and the npm registry

In a temporary folder it npm-installs ``@vladmandic/face-api@1.7.15``, ``@tensorflow/tfjs@4.22.0`` and
``@tensorflow/tfjs-backend-wasm@4.22.0`` (face-api's Node build without the native binding requires both), writes a
small Node script and runs it on tfjs's pure-JavaScript ``cpu`` backend (the reference kernels, float32). The
script loads ``model/face_expression_model`` from the installed package with ``loadFromDisk`` and calls
``faceExpressionNet.forward(tf.tensor3d(image))`` on each input, i.e. face-api's whole computation from an image
tensor: ``toBatchTensor(112, true)`` (zero padding to a square, legacy bilinear resize), mean subtraction, /255, the
network and the softmax. It also runs ``tf.image.resizeBilinear(x, size, false, false)`` on a few tiny random
images, to check the resize on its own.

Inputs (uint8 RGB, deterministic): three 112 × 112 face crops of the bundled photos (London 001 neutral and
smiling, Canada 003f neutral; box resized with OpenCV's INTER_AREA), one 171 × 150 crop of London 002 smiling
(not square, not 112: the padding with an odd difference and the resize), one 112 × 112 and one 83 × 57 image of
seeded uniform noise.

Stored keys: ``names`` (str), ``input_<i>`` (uint8 ``(H, W, 3)``), ``probs`` (float32 ``(N, 7)``, face-api's class
order ``labels``), ``resize_in_<k>`` / ``resize_out_<k>`` (float32 ``(1, H, W, C)`` and the tfjs result),
``versions`` (JSON of the npm packages used); and, read from the installed package's weight files, what it takes
to rebuild face-api's exact float32 weights from aufer's fp16 shipped file: ``quant_keys`` (aufer state-dict
keys of the uint8-quantised tensors), ``quant_scale`` and ``quant_min`` (float64, the manifest's), and
``bias:<key>`` (the float32 biases, which face-api stores unquantised).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from aufer.models.faceapi_expression import dequantise_weights, state_dict_from_faceapi

ROOT = Path(__file__).resolve().parents[1]
FACES = ROOT / "src" / "aufer" / "data" / "faces"
OUT = ROOT / "tests" / "fixtures" / "faceapi_expression_fixture.npz"
PACKAGES = ["@vladmandic/face-api@1.7.15", "@tensorflow/tfjs@4.22.0", "@tensorflow/tfjs-backend-wasm@4.22.0"]
LABELS = ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")

NODE_SCRIPT = r"""
const fs = require('fs');
const path = require('path');
const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');
const tf = faceapi.tf;

async function main() {
  await tf.setBackend('cpu');
  await tf.ready();
  const job = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
  const modelDir = path.join(path.dirname(require.resolve('@vladmandic/face-api/package.json')), 'model');
  await faceapi.nets.faceExpressionNet.loadFromDisk(modelDir);
  const read = (file, shape) => {
    const buf = fs.readFileSync(file);
    return tf.tensor(new Float32Array(buf.buffer, buf.byteOffset, buf.length / 4), shape, 'float32');
  };
  const out = { backend: tf.getBackend(), probs: [], resize: [], versions: tf.version };
  for (const inp of job.inputs) {
    const x = read(inp.file, inp.shape);                    // (H, W, 3) pixel values in [0, 255]
    const p = await faceapi.nets.faceExpressionNet.forward(x);
    out.probs.push(Array.from(await p.data()));
    p.dispose(); x.dispose();
  }
  for (const r of job.resize) {
    const x = read(r.file, r.shape);                        // (1, H, W, C)
    const y = tf.image.resizeBilinear(x, r.size, false, false);
    out.resize.push(Array.from(await y.data()));
  }
  fs.writeFileSync(process.argv[3], JSON.stringify(out));
}
main().catch((e) => { console.error(e); process.exit(1); });
"""


def _rgb(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(path)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def make_inputs() -> dict[str, np.ndarray]:
    """The fixed inputs, ``{name: uint8 (H, W, 3)}`` in order."""
    def face112(rel: str) -> np.ndarray:
        img = _rgb(FACES / rel)[150:438, 112:400]  # the face region of the 512 × 512 photos, 288 × 288
        return cv2.resize(img, (112, 112), interpolation=cv2.INTER_AREA)

    rng = np.random.default_rng(20240611)
    small = cv2.resize(_rgb(FACES / "london/smiling/002.jpg"), (200, 200), interpolation=cv2.INTER_AREA)
    return {
        "london_001_neutral_112": face112("london/neutral/001.jpg"),
        "london_001_smiling_112": face112("london/smiling/001.jpg"),
        "canada_003f_neutral_112": face112("canada/neutral/003f.jpg"),
        "london_002_smiling_171x150": np.ascontiguousarray(small[30:201, 40:190]),
        "noise_112": rng.integers(0, 256, (112, 112, 3), dtype=np.uint8),
        "noise_83x57": rng.integers(0, 256, (83, 57, 3), dtype=np.uint8),
    }


def make_resize_cases() -> list[tuple[np.ndarray, tuple[int, int]]]:
    """Tiny float32 images ``(1, H, W, C)`` and target sizes for the resize check (down, up, mixed)."""
    rng = np.random.default_rng(7)
    return [(rng.uniform(0, 255, (1, 9, 7, 3)).astype(np.float32), (4, 5)),
            (rng.uniform(0, 255, (1, 5, 6, 2)).astype(np.float32), (11, 8)),
            (rng.uniform(0, 255, (1, 13, 13, 1)).astype(np.float32), (13, 5))]


def exact_weights(package: Path) -> dict[str, np.ndarray]:
    """The quantisation grid and the float32 biases of the installed package's expression model (see the module
    docstring's keys)."""
    manifest = json.loads((package / "model" / "face_expression_model-weights_manifest.json").read_text())
    shard = b"".join((package / "model" / p).read_bytes() for g in manifest for p in g["paths"])
    tensors = dequantise_weights(manifest, shard)
    keys, scales, mins, out = [], [], [], {}
    for g in manifest:
        for e in g["weights"]:
            (key, value), = state_dict_from_faceapi({e["name"]: tensors[e["name"]]}).items()
            if "quantization" in e:
                keys.append(key)
                scales.append(float(e["quantization"]["scale"]))
                mins.append(float(e["quantization"]["min"]))
            else:
                out[f"bias:{key}"] = value.numpy()
    out.update(quant_keys=np.array(keys), quant_scale=np.array(scales), quant_min=np.array(mins))
    return out


def run_faceapi(inputs: dict[str, np.ndarray], resize: list, work: Path) -> dict:
    """Install the npm packages in ``work`` and run the Node script; returns its JSON output, with the exact
    weights (:func:`exact_weights`) under ``"exact"``.

    Raises:
        RuntimeError: node / npm missing, or the install or the script failed.
    """
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise RuntimeError("node and npm are needed to make the fixture")
    (work / "package.json").write_text('{"name": "faceapi-fixture", "private": true}')
    r = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--ignore-scripts", *PACKAGES], cwd=work,
                       capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"npm install failed:\n{r.stderr.strip()}")
    job: dict = {"inputs": [], "resize": []}
    for i, img in enumerate(inputs.values()):
        f = work / f"input_{i}.f32"
        f.write_bytes(img.astype("<f4").tobytes())
        job["inputs"].append({"file": str(f), "shape": list(img.shape)})
    for k, (x, size) in enumerate(resize):
        f = work / f"resize_{k}.f32"
        f.write_bytes(x.astype("<f4").tobytes())
        job["resize"].append({"file": str(f), "shape": list(x.shape), "size": list(size)})
    (work / "job.json").write_text(json.dumps(job))
    (work / "run.js").write_text(NODE_SCRIPT)
    r = subprocess.run([node, "run.js", "job.json", "out.json"], cwd=work, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"the face-api script failed:\n{r.stderr.strip()[-2000:]}")
    out = json.loads((work / "out.json").read_text())
    out["exact"] = exact_weights(work / "node_modules" / "@vladmandic" / "face-api")
    return out


def main() -> int:
    inputs, resize = make_inputs(), make_resize_cases()
    with tempfile.TemporaryDirectory() as tmp:
        res = run_faceapi(inputs, resize, Path(tmp))
    if res["backend"] != "cpu":
        raise RuntimeError(f"expected tfjs's cpu backend, ran on {res['backend']}")
    arrays: dict[str, np.ndarray] = {"names": np.array(list(inputs)), "labels": np.array(LABELS),
                                     "probs": np.asarray(res["probs"], dtype=np.float32),
                                     "versions": np.array(json.dumps({"packages": PACKAGES, "tfjs": res["versions"],
                                                                      "backend": res["backend"]}))}
    arrays.update(res["exact"])
    for i, img in enumerate(inputs.values()):
        arrays[f"input_{i}"] = img
    for k, (x, size) in enumerate(resize):
        arrays[f"resize_in_{k}"] = x
        arrays[f"resize_out_{k}"] = np.asarray(res["resize"][k], dtype=np.float32).reshape(1, *size, x.shape[-1])
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes); face-api probabilities ({', '.join(LABELS)}):")
    for name, p in zip(inputs, arrays["probs"]):
        print(f"  {name:28s} " + " ".join(f"{v:.4f}" for v in p))
    return 0


if __name__ == "__main__":
    sys.exit(main())
