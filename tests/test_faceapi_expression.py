"""face-api's expression network ported to PyTorch (aufer.models.faceapi_expression) against face-api itself.

The fixture (tests/fixtures/faceapi_expression_fixture.npz, made by tools/faceapi_fixture.py, which runs face-api
1.7.15 in Node on tfjs's cpu backend) holds six inputs, face-api's probabilities on them, tfjs's resize of tiny
images, and face-api's quantisation grid and float32 biases, with which the exact float32 weights are rebuilt from
aufer's shipped file (float32: face-api's dequantised weights exactly). Nothing here runs Node or downloads anything.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from aufer import vocab
from aufer.models import CheckpointError, create_model, list_models, load_model
from aufer.models.faceapi_expression import (
    FACEAPI_LABELS,
    FALLBACK_BOX,
    MESH_TO_IBUG68,
    FaceExpressionNet,
    clip_box,
    dequantise_weights,
    landmark_boxes,
    pad_to_square,
    resize_bilinear_legacy,
    state_dict_from_faceapi,
    tf_same_pad,
    to_net_input,
)

FIXTURE = Path(__file__).parent / "fixtures" / "faceapi_expression_fixture.npz"
SHIPPED = vocab.data_path("models", "faceapi-expression")


@pytest.fixture(autouse=True)
def _fast_cpu():
    """oneDNN compiles kernels for every new input shape on its first calls (about a second each on a small CPU);
    PyTorch's native kernels on one thread keep this file fast, also on a busy machine. The numbers are the same
    to float32 rounding."""
    onednn, threads = torch.backends.mkldnn.enabled, torch.get_num_threads()
    torch.backends.mkldnn.enabled = False
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = onednn
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def fx():
    with np.load(FIXTURE) as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def shipped():
    return load_model(SHIPPED)


def _framed(fx) -> torch.Tensor:
    return torch.stack([to_net_input(torch.from_numpy(fx[f"input_{i}"])) for i in range(len(fx["names"]))])


# ------------------------------------------------------------------------------------------------ face-api
def test_port_matches_faceapi_probabilities(fx, shipped):
    """The shipped model and the whole face-api computation (pad to square, legacy resize, mean / 255, network,
    softmax) on the six inputs, one of them 171 × 150, against face-api's own output: ≤ 1e-4 absolute (measured
    1.2e-7)."""
    assert tuple(fx["labels"]) == FACEAPI_LABELS
    assert any(fx[f"input_{i}"].shape[:2] != (112, 112) for i in range(len(fx["names"])))
    with torch.no_grad():
        p = shipped.faceapi_probabilities(_framed(fx)).numpy()
    assert np.abs(p - fx["probs"]).max() <= 1e-4
    assert np.allclose(p.sum(1), 1, atol=1e-6)
    assert (p.argmax(1) == fx["probs"].argmax(1)).all()


def test_shipped_weights_are_faceapis_dequantised_weights(fx, shipped):
    """Every quantised tensor of the shipped file lies on face-api's uint8 grid (q · scale + min, q in 0..255), and
    the biases equal face-api's float32 biases: the conversion lost nothing."""
    sd = {k: v.double() for k, v in shipped.state_dict().items()}
    for key, scale, lo in zip(fx["quant_keys"], fx["quant_scale"], fx["quant_min"]):
        q = torch.round((sd[key] - lo) / scale)
        assert q.min() >= 0 and q.max() <= 255
        assert (sd[key] - (q * scale + lo)).abs().max() <= 1e-6 * max(1.0, abs(lo) + 255 * scale)
    for k in fx:
        if k.startswith("bias:"):
            assert torch.equal(shipped.state_dict()[k[5:]], torch.from_numpy(fx[k]).float())


def test_resize_matches_tfjs(fx):
    for k in range(3):
        x = torch.from_numpy(fx[f"resize_in_{k}"]).permute(0, 3, 1, 2)
        want = fx[f"resize_out_{k}"]
        got = resize_bilinear_legacy(x, want.shape[1:3]).permute(0, 2, 3, 1).numpy()
        assert np.abs(got - want).max() <= 1e-4


def test_pad_to_square_and_same_padding():
    x = torch.ones(1, 5, 2)  # (C, H, W): diff 3 → round(1.5) = 2 zero columns after, 1 before
    y = pad_to_square(x)
    assert y.shape == (1, 5, 5) and y[0, 0].tolist() == [0, 1, 1, 0, 0]
    y = pad_to_square(torch.ones(1, 2, 6))  # diff 4 → 2 rows after, 2 before
    assert y[0, :, 0].tolist() == [0, 0, 1, 1, 0, 0]
    assert tf_same_pad(torch.ones(1, 1, 112, 112), 3, 2).shape[-2:] == (113, 113)
    p = tf_same_pad(torch.ones(1, 1, 4, 4), 3, 2)  # TF pads the bottom / right only for stride 2 on even sides
    assert p[0, 0, 0].sum() == 4 and p[0, 0, -1].sum() == 0 and p[0, 0, :, -1].sum() == 0
    assert tf_same_pad(torch.ones(1, 1, 7, 7), 3, 1).shape[-2:] == (9, 9)
    assert torch.equal(to_net_input(torch.full((112, 112, 3), 7, dtype=torch.uint8)), torch.full((3, 112, 112), 7.0))


# ----------------------------------------------------------------------------------------- shipped model
def test_shipped_model_loads_with_card_and_licence(shipped):
    assert shipped.config["name"] == "faceapi_expression.v1_7_15" and not shipped.training
    assert all(p.dtype == torch.float32 for p in shipped.parameters())
    assert sum(p.numel() for p in shipped.parameters()) == 323_687
    meta = json.loads((SHIPPED / "model.json").read_text())
    assert meta["licence"] == "MIT" and "1.7.15" in meta["source"] and meta["stored_dtype"] == "float32"
    licence = (SHIPPED / "LICENSE-face-api.txt").read_text()
    assert licence.startswith("MIT License") and "Vladimir Mandic" in licence
    card = (SHIPPED / "MODEL_CARD.md").read_text()
    assert card.startswith("# ") and "MIT" in card
    assert (SHIPPED / "model.safetensors").stat().st_size < 1_400_000  # 323,687 float32 parameters
    assert "faceapi_expression" in list_models()


def test_missing_or_corrupted_weights_fail_clearly(tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(SHIPPED, folder)
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        load_model(folder)
    weights.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_model(folder)
    weights.unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_model(folder)
    weights.write_bytes(data)
    (folder / "model.json").write_text('{"model": {"name": "faceapi_expression.v1_7_15", "box_pad')
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_model(folder)


# ------------------------------------------------------------------------------------------------ contract
def _mesh(n: int = 1, side: int = 192) -> torch.Tensor:
    """Landmarks (n, 478, 3): every point at the crop centre, the 68 mapped points spread over x 40..140,
    y 50..150 (pixel centres)."""
    lm = torch.full((n, 478, 3), side / 2.0)
    g = torch.linspace(0, 1, 68)
    lm[:, list(MESH_TO_IBUG68), 0] = 40 + 100 * g
    lm[:, list(MESH_TO_IBUG68), 1] = 150 - 100 * g
    return lm


def test_contract_shapes_and_emotion_order():
    torch.manual_seed(0)
    m = create_model("faceapi_expression").eval()
    assert m.aus == () and m.emotions == vocab.EMOTIONS_7 and m.uses_landmarks and m.input_size == 112
    assert m.default_cfg["crop_size"] == 192
    crops = torch.randint(0, 256, (2, 3, 192, 192, 3), dtype=torch.uint8)
    x = m.preprocess(crops)
    assert x.shape == (2, 3, 3, 192, 192) and x.dtype == torch.float32
    lm = _mesh(6).reshape(2, 3, 478, 3)
    with torch.no_grad():
        out = m(x, lm)
        assert out["au"].shape == (2, 3, 0) and out["expr"].shape == (2, 7) and out["features"].shape == (2, 3, 256)
        assert m(x)["expr"].shape == (2, 7)  # no landmarks: the central box
    with pytest.raises(ValueError, match="no AU outputs"):
        create_model("faceapi_expression", aus=[12])
    with pytest.raises(ValueError, match="contempt"):
        create_model("faceapi_expression", emotions=["happy", "contempt"])


def test_emotion_order_follows_aufer_names():
    """A network that always answers face-api class k: aufer's output names it canonically."""
    m = create_model("faceapi_expression").eval()
    for k, label in enumerate(FACEAPI_LABELS):
        with torch.no_grad():
            m.fc.weight.zero_()
            m.fc.bias.copy_(torch.nn.functional.one_hot(torch.tensor(k), 7) * 20.0)
            p = torch.softmax(m(torch.zeros(1, 1, 3, 64, 64))["expr"], -1)[0]
        assert m.emotions[int(p.argmax())] == vocab.canonical_emotion(label)
    sub = create_model("faceapi_expression", emotions=["surprised", "neutral"])
    assert sub.emotions == ("surprise", "neutral") and sub.order.tolist() == [6, 0]


def test_clip_mean_and_probabilities(shipped, fx):
    """softmax(expr) is face-api's probabilities, reordered; T > 1 averages the frames' probabilities."""
    crops = torch.stack([torch.from_numpy(fx["input_0"]), torch.from_numpy(fx["input_1"])])[None]  # (1, 2, 112, 112, 3)
    lm = torch.zeros(1, 2, 478, 3)
    lm[..., 0], lm[..., 1] = torch.linspace(-0.5, 111.5, 478), torch.linspace(111.5, -0.5, 478)
    with torch.no_grad():
        out = shipped(shipped.preprocess(crops), lm)
        p_api = shipped.faceapi_probabilities(_framed(fx)[:2])
    order = [FACEAPI_LABELS.index(e) for e in ("happy", "sad", "neutral", "angry", "surprised", "disgusted", "fearful")]
    want = p_api[:, order].mean(0)
    assert torch.allclose(torch.softmax(out["expr"][0], -1), want, atol=1e-6)


# -------------------------------------------------------------------------------------------------- framing
def test_landmark_box_lands_where_expected():
    """The 68 points span x 40..140, y 50..150 (pixel centres) → corner coordinates 40.5..140.5 → widened by 10 %
    per side: x 30.5, y 40.5, 120 × 120 → whole pixels (30, 40, 120, 120). The other 410 mesh points do not
    count, even far outside."""
    m = create_model("faceapi_expression")
    lm = _mesh()
    others = [i for i in range(478) if i not in set(MESH_TO_IBUG68)]
    lm[0, others, :2] = 1000.0
    assert m.face_boxes(lm, 1, 192) == [(30, 40, 120, 120)]
    crop = torch.randint(0, 256, (1, 1, 192, 192, 3), dtype=torch.uint8)
    framed = m.frame(m.preprocess(crop), lm[None])
    assert torch.equal(framed[0], to_net_input(crop[0, 0, 40:160, 30:150]))


def test_box_clipping_fallback_and_padding():
    m = create_model("faceapi_expression")
    lm = _mesh()
    lm[0, list(MESH_TO_IBUG68), 1] += 60  # y 110..210: the box runs past the bottom of a 192 crop
    (x, y, w, h), = m.face_boxes(lm, 1, 192)
    assert (x, y, w, h) == (30, 100, 120, 91)  # h = floor(192 − 100.5): face-api floors x and w separately
    assert clip_box((-3.2, 5.7, 50.0, 20.0), 40, 40) == (0, 5, 40, 20)
    fb = clip_box([v * 192 for v in FALLBACK_BOX], 192, 192)
    assert m.face_boxes(None, 2, 192) == [fb, fb]
    nan = _mesh()
    nan[0, 5, 0] = float("nan")
    assert m.face_boxes(nan, 1, 192) == [fb]
    b = landmark_boxes(torch.tensor([[[0.0, 0.0], [10.0, 20.0]]]), padding=0.2)[0]
    assert torch.allclose(b, torch.tensor([-1.0, -2.0, 12.0, 24.0], dtype=torch.float64))


# ------------------------------------------------------------------------------------------------ weights
def test_dequantise_and_tf_layouts():
    manifest = [{"paths": ["x.bin"], "weights": [
        {"name": "fc/weights", "shape": [2, 3], "dtype": "float32",
         "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0}},
        {"name": "fc/bias", "shape": [3], "dtype": "float32"}]}]
    shard = bytes([0, 1, 2, 3, 4, 255]) + np.array([0.25, -1.5, 3.0], "<f4").tobytes()
    t = dequantise_weights(manifest, shard)
    assert t["fc/weights"].tolist() == [[-1.0, -0.5, 0.0], [0.5, 1.0, 126.5]]
    assert t["fc/bias"].tolist() == [0.25, -1.5, 3.0]
    with pytest.raises(ValueError, match="too short"):
        dequantise_weights(manifest, shard[:-1])
    with pytest.raises(ValueError, match="describes"):
        dequantise_weights(manifest, shard + b"\x00")
    sd = state_dict_from_faceapi(t)
    assert torch.equal(sd["fc.weight"], torch.from_numpy(t["fc/weights"]).t())
    rng = np.random.default_rng(0)
    conv, dw, pw = (rng.normal(size=s).astype(np.float32) for s in ((3, 3, 3, 32), (3, 3, 32, 1), (1, 1, 32, 64)))
    sd = state_dict_from_faceapi({"dense0/conv0/filters": conv, "dense1/conv2/depthwise_filter": dw,
                                  "dense1/conv2/pointwise_filter": pw, "dense1/conv2/bias": np.zeros(64, np.float32)})
    assert sd["dense0.conv0.weight"][5, 2, 0, 1] == conv[0, 1, 2, 5]  # OIHW ← HWIO
    assert sd["dense1.conv2.depthwise.weight"][7, 0, 2, 1] == dw[2, 1, 7, 0]  # C 1 H W ← H W C 1
    assert sd["dense1.conv2.pointwise.weight"][9, 4, 0, 0] == pw[0, 0, 4, 9]  # Cout Cin 1 1 ← 1 1 Cin Cout
    assert "dense1.conv2.pointwise.bias" in sd
    with pytest.raises(KeyError):
        state_dict_from_faceapi({"dense0/conv0/gamma": conv})
    assert isinstance(create_model("faceapi_expression"), FaceExpressionNet)
