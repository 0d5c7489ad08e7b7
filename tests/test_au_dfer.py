"""AU-DFER's loss (aufer.methods.au_dfer.loss) and AU pseudo-label rules (aufer.store.clip_rules), against hand computations
and the reference data (au_dfer.json)."""

import inspect
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from aufer import vocab
from aufer.methods.au_dfer import clip_labels_count, clip_labels_mean
from aufer.readers.toolkits import read_openface_au_presence
from aufer.training.losses import LossContext, masked_bce
from aufer.methods.au_dfer.loss import (AU_DFER_AUS, au_dfer_au_loss, au_dfer_loss, au_dfer_matrices,
                                  pos_weight_for)

REF = vocab.reference("au_dfer")
FIXTURE = Path(__file__).parent / "fixtures" / "openface_2x_sample.csv"
# aufer's EMOTIONS_7 names -> au_dfer.json's row names, written out here (not via vocab.canonical_emotion)
JSON_NAME = {"happiness": "happy", "sadness": "sad", "neutral": "neutral", "anger": "angry", "surprise": "surprise",
             "disgust": "disgust", "fear": "fear"}
CTX = LossContext()


def _variant(dataset, host, rows):
    """The au_dfer.json W key that the (dataset, host, rows) setting must use (methods.md §4.3)."""
    if dataset == "FERV39K" and host == "former_dfer":
        return "FERV39K_former_dfer"
    return "DFEW" if rows == "majority" else "DFEW_former_dfer_variant"


def _hand_pos_weight(posw, dataset, emotion_name):
    pw = REF["pos_weight"]
    if posw == "global":
        return pw["global"][dataset]
    if posw == "minor" and JSON_NAME[emotion_name] not in pw["minor"]["minor_classes"]:
        return [1.0] * 18
    return pw["distinct"][dataset][JSON_NAME[emotion_name]]


def _hand_l_au(z, y, emo, dataset, host, rows, posw, scale=5.0):
    """Plain-Python mean over known entries of −w·[p·y·log σ(z) + (1−y)·log(1−σ(z))]."""
    W = REF["W"][_variant(dataset, host, rows)]["rows"]
    total, n = 0.0, 0
    for i in range(len(z)):
        if emo[i] < 0:
            continue
        name = vocab.EMOTIONS_7[emo[i]]
        w_row, p_row = W[JSON_NAME[name]], _hand_pos_weight(posw, dataset, name)
        for j in range(18):
            if y[i][j] not in (0, 1):
                continue
            zz = float(z[i][j])
            log_s, log_1ms = -math.log1p(math.exp(-zz)), -math.log1p(math.exp(zz))
            total += -scale * w_row[j] * (p_row[j] * y[i][j] * log_s + (1 - y[i][j]) * log_1ms)
            n += 1
    return total / n if n else 0.0


def _hand_ce(logits, emo):
    vals = []
    for i, row in enumerate(logits):
        if emo[i] < 0:
            continue
        m = max(row)
        lse = m + math.log(sum(math.exp(v - m) for v in row))
        vals.append(lse - row[emo[i]])
    return sum(vals) / len(vals)


def _data(seed, b=6, unknown=False):
    g = torch.Generator().manual_seed(seed)
    z = 2 * torch.randn(b, 18, generator=g)
    y = torch.randint(0, 2, (b, 18), generator=g)
    if unknown:
        y[torch.rand(b, 18, generator=g) < 0.3] = -1
    emo = torch.arange(b) % 7
    return z, y, emo


SETTINGS = [("DFEW", "m3dfel", "majority"), ("DFEW", "former_dfer", "former_dfer"), ("DFEW", "mae_dfer", "majority"),
            ("FERV39K", "m3dfel", "majority"), ("FERV39K", "m3dfel", "former_dfer"),
            ("FERV39K", "former_dfer", "majority")]


# --------------------------------------------------------------------------------------------- reference data
def test_au_order_is_the_reconstructed_openface_order():
    assert AU_DFER_AUS == (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 28, 45)
    assert AU_DFER_AUS == vocab.openface_aus() == tuple(REF["au_order"])
    assert REF["au_order_status"] == "reconstructed"
    import aufer.methods.au_dfer.loss as mod
    assert "RECONSTRUCTED" in mod.__doc__ and "[RECON]" in mod.__doc__


def test_default_constants_are_the_reference_ones():
    sig = inspect.signature(au_dfer_loss).parameters
    assert sig["ratio"].default == REF["au_ratio"] == 0.25
    assert sig["scale"].default == REF["weight_scale"] == inspect.signature(au_dfer_au_loss).parameters["scale"].default
    assert tuple(JSON_NAME[e] for e in vocab.EMOTIONS_7) == tuple(REF["emotions"])  # same order, other spelling


@pytest.mark.parametrize("dataset,host,rows", SETTINGS)
def test_matrices_are_the_reference_rows_in_emotions7_order(dataset, host, rows):
    W, pg, pd = au_dfer_matrices(dataset, host, rows)
    assert W.shape == (7, 18) and pg.shape == (18,) and pd.shape == (7, 18) and W.dtype == torch.float32
    Wj = REF["W"][_variant(dataset, host, rows)]["rows"]
    for i, e in enumerate(vocab.EMOTIONS_7):
        np.testing.assert_array_equal(W[i].numpy(), np.float32(Wj[JSON_NAME[e]]))
        np.testing.assert_array_equal(pd[i].numpy(), np.float32(REF["pos_weight"]["distinct"][dataset][JSON_NAME[e]]))
    np.testing.assert_array_equal(pg.numpy(), np.float32(REF["pos_weight"]["global"][dataset]))


def test_former_dfer_rows_are_the_documented_permutation():
    maj, _, _ = au_dfer_matrices("DFEW", rows="majority")
    fd, _, _ = au_dfer_matrices("DFEW", rows="former_dfer")
    e = {n: i for i, n in enumerate(vocab.EMOTIONS_7)}
    # Former-DFER_AU/main_DFEW.py: sad <- neutral row, neutral <- surprise, surprise <- fear, fear <- sad
    for mine, theirs in (("sadness", "neutral"), ("neutral", "surprise"), ("surprise", "fear"), ("fear", "sadness"),
                         ("happiness", "happiness"), ("anger", "anger"), ("disgust", "disgust")):
        assert torch.equal(fd[e[mine]], maj[e[theirs]])
    # majority rows: surprise has the largest AU2 and AU5, fear the largest AU20 and AU26 (methods.md §4.3);
    # the largest AU1 is fear's (0.342 vs surprise 0.334), not surprise's as methods.md / au_dfer.json's note say
    col = lambda au: maj[:, AU_DFER_AUS.index(au)]  # noqa: E731
    assert [int(col(a).argmax()) for a in (2, 5, 20, 26, 1)] == [e["surprise"]] * 2 + [e["fear"]] * 3


def test_ferv39k_matrix_depends_on_the_host():
    dfew = au_dfer_matrices("DFEW")[0]
    assert torch.equal(au_dfer_matrices("FERV39K", "m3dfel")[0], dfew)
    assert torch.equal(au_dfer_matrices("FERV39K", "mae-dfer")[0], dfew)
    fv = au_dfer_matrices("FERV39K", "former_dfer")[0]
    assert not torch.equal(fv, dfew)
    assert fv[0, AU_DFER_AUS.index(12)] == pytest.approx(0.0038333838772364385)  # happy·AU12 (methods.md §4.3)
    assert torch.allclose(fv[:, -2:], torch.tensor(1.74694374224107))  # AU28, AU45 constant


@pytest.mark.parametrize("kw", [{"dataset": "MAFW"}, {"host": "s2d"}, {"rows": "minority"}])
def test_matrices_reject_unknown_options(kw):
    with pytest.raises(ValueError):
        au_dfer_matrices(**kw)


def test_pos_weight_variants():
    _, pg, pd = au_dfer_matrices("DFEW")
    emo = torch.tensor([0, 1, 2, 3, 4, 5, 6, -1])
    g = pos_weight_for("global", emo, pg, pd)
    assert g.shape == (8, 18) and all(torch.equal(r, pg) for r in g)
    d = pos_weight_for("distinct", emo, pg, pd)
    assert all(torch.equal(d[i], pd[i]) for i in range(7)) and torch.equal(d[7], torch.ones(18))
    m = pos_weight_for("minor", emo, pg, pd)
    for i, e in enumerate(vocab.EMOTIONS_7):
        want = pd[i] if e in ("disgust", "surprise", "fear") else torch.ones(18)
        assert torch.equal(m[i], want), e
    with pytest.raises(ValueError):
        pos_weight_for("balanced", emo, pg, pd)


# ------------------------------------------------------------------------------------------------- the loss
@pytest.mark.parametrize("posw", ["global", "distinct", "minor"])
@pytest.mark.parametrize("dataset,host,rows", SETTINGS)
def test_au_loss_matches_a_hand_computation(posw, dataset, host, rows):
    z, y, emo = _data(1)
    W, pg, pd = au_dfer_matrices(dataset, host, rows)
    got = au_dfer_au_loss(z, y, emo, W, pos_weight_for(posw, emo, pg, pd))
    want = _hand_l_au(z.tolist(), y.tolist(), emo.tolist(), dataset, host, rows, posw)
    assert got.dtype == torch.float32 and float(got) == pytest.approx(want, rel=1e-5)
    if posw == "global":  # an (18,) pos_weight works too, and this is torch's BCEWithLogitsLoss (mean over B × 18)
        assert float(au_dfer_au_loss(z, y, emo, W, pg)) == pytest.approx(want, rel=1e-5)
        crit = torch.nn.BCEWithLogitsLoss(weight=5 * W[emo].double(), pos_weight=pg.double())
        assert float(crit(z.double(), y.double())) == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("posw", ["global", "distinct", "minor"])
@pytest.mark.parametrize("dataset,host,rows", SETTINGS[:2] + SETTINGS[-1:])
def test_recipe_loss_mixes_075_ce_and_025_au(posw, dataset, host, rows):
    z, y, emo = _data(2)
    logits = torch.randn(len(emo), 7, generator=torch.Generator().manual_seed(3))
    out = au_dfer_loss(None, {"au": z, "expr": logits}, None, {"au": y, "expr": emo}, ctx=CTX, posw=posw,
                       dataset=dataset, host=host, rows=rows)
    l_au = _hand_l_au(z.tolist(), y.tolist(), emo.tolist(), dataset, host, rows, posw)
    l_ce = _hand_ce(logits.tolist(), emo.tolist())
    assert float(out["loss_au_dfer"]) == pytest.approx(l_au, rel=1e-5)
    assert float(out["loss_expr"]) == pytest.approx(l_ce, rel=1e-5)
    assert float(out["loss"]) == pytest.approx(0.75 * l_ce + 0.25 * l_au, rel=1e-5)
    assert set(out) == {"loss", "loss_expr", "loss_au_dfer"}
    ls = au_dfer_loss(None, {"au": z, "expr": logits}, None, {"au": y, "expr": emo}, ctx=CTX, ratio=0.5,
                      label_smoothing=0.1)
    assert float(ls["loss_expr"]) == pytest.approx(float(F.cross_entropy(logits, emo, label_smoothing=0.1)), rel=1e-6)
    assert float(ls["loss"]) == pytest.approx(0.5 * float(ls["loss_expr"]) + 0.5 * float(ls["loss_au_dfer"]), rel=1e-6)


def test_unknown_au_labels_and_clips_without_emotion_are_masked():
    z, y, emo = _data(4, unknown=True)
    emo[2] = -1
    W, pg, pd = au_dfer_matrices("DFEW")
    got = au_dfer_au_loss(z, y, emo, W, pos_weight_for("distinct", emo, pg, pd))
    want = _hand_l_au(z.tolist(), y.tolist(), emo.tolist(), "DFEW", "m3dfel", "majority", "distinct")
    assert float(got) == pytest.approx(want, rel=1e-5)
    keep = emo >= 0  # dropping the clip by hand gives the same value; changing its labels changes nothing
    assert float(au_dfer_au_loss(z[keep], y[keep], emo[keep], W, pos_weight_for("distinct", emo[keep], pg, pd))) \
        == pytest.approx(float(got), rel=1e-6)
    y2 = y.clone()
    y2[2] = 1 - y2[2].clamp(0, 1)
    assert float(au_dfer_au_loss(z, y2, emo, W, pg)) == pytest.approx(float(au_dfer_au_loss(z, y, emo, W, pg)))
    logits = torch.randn(len(emo), 7)
    out = au_dfer_loss(None, {"au": z, "expr": logits}, None, {"au": y, "expr": emo}, ctx=CTX)
    assert float(out["loss_expr"]) == pytest.approx(_hand_ce(logits.tolist(), emo.tolist()), rel=1e-5)


def test_no_known_label_gives_an_exact_zero_with_a_graph():
    z = torch.randn(3, 18, requires_grad=True)
    W, pg, _ = au_dfer_matrices()
    l0 = au_dfer_au_loss(z, torch.full((3, 18), -1), torch.tensor([0, 1, 2]), W, pg)
    l1 = au_dfer_au_loss(z, torch.ones(3, 18, dtype=torch.long), torch.full((3,), -1), W, pg)
    for loss in (l0, l1):
        assert float(loss.detach()) == 0.0
        loss.backward()
    with pytest.raises(ValueError):
        au_dfer_au_loss(z, torch.ones(3, 18), torch.tensor([0, 7, 1]), W, pg)


def test_model_aus_in_another_order_and_subset_are_reordered_and_masked():
    z, y, emo = _data(5)
    logits = torch.randn(len(emo), 7)
    model_aus = [45, 27, 12, 6, 4, 2, 1, 25, 26, 17, 15, 14, 10, 7, 5, 23, 20]  # reversed-ish, no AU9/AU28, + AU27
    cols = [AU_DFER_AUS.index(a) if a in AU_DFER_AUS else None for a in model_aus]
    zm = torch.stack([z[:, c] if c is not None else torch.full((len(emo),), 9.0) for c in cols], 1)
    out = au_dfer_loss(None, {"au": zm, "expr": logits}, None, {"au": y, "expr": emo}, ctx=CTX, model_aus=model_aus)
    y_masked = y.clone()
    y_masked[:, [AU_DFER_AUS.index(9), AU_DFER_AUS.index(28)]] = -1
    want = _hand_l_au(z.tolist(), y_masked.tolist(), emo.tolist(), "DFEW", "m3dfel", "majority", "global")
    assert float(out["loss_au_dfer"]) == pytest.approx(want, rel=1e-5)
    # labels in another order (label_aus) and the model's list from its output ("aus") give the same
    perm = torch.randperm(18, generator=torch.Generator().manual_seed(0))
    label_aus = [AU_DFER_AUS[i] for i in perm]
    out2 = au_dfer_loss(None, {"au": zm, "expr": logits, "aus": model_aus}, None, {"au": y[:, perm], "expr": emo},
                        ctx=CTX, label_aus=label_aus)
    assert float(out2["loss_au_dfer"]) == pytest.approx(want, rel=1e-5)
    zg = zm.clone().requires_grad_(True)
    au_dfer_loss(None, {"au": zg, "expr": logits}, None, {"au": y, "expr": emo}, ctx=CTX,
                 model_aus=model_aus)["loss"].backward()
    assert torch.all(zg.grad[:, model_aus.index(27)] == 0) and torch.all(zg.grad[:, model_aus.index(12)] != 0)
    with pytest.raises(ValueError, match="model_aus"):
        au_dfer_loss(None, {"au": zm, "expr": logits}, None, {"au": y, "expr": emo}, ctx=CTX)


@pytest.mark.parametrize("rule", ["mean", "count"])
def test_per_frame_labels_and_logits_become_clip_level(rule):
    g = torch.Generator().manual_seed(6)
    B, T = 4, 6
    zt = torch.randn(B, T, 18, generator=g)
    yt = torch.randint(0, 2, (B, T, 18), generator=g)
    valid = torch.ones(B, T, dtype=torch.bool)
    valid[1, 4:] = False
    emo = torch.tensor([0, 3, 5, 6])
    logits = torch.randn(B, 7, generator=g)
    out = au_dfer_loss(None, {"au": zt, "expr": logits}, None, {"au": yt, "expr": emo, "valid": valid}, ctx=CTX,
                       clip_rule=rule)
    yv = torch.where(valid.unsqueeze(-1), yt, torch.full_like(yt, -1))
    y_clip = clip_labels_mean(yv) if rule == "mean" else clip_labels_count(yv)
    z_clip = torch.stack([zt[i, valid[i]].mean(0) for i in range(B)])
    ref = au_dfer_loss(None, {"au": z_clip, "expr": logits}, None, {"au": y_clip, "expr": emo}, ctx=CTX)
    assert float(out["loss"]) == pytest.approx(float(ref["loss"]), rel=1e-6)
    want = _hand_l_au(z_clip.tolist(), y_clip.tolist(), emo.tolist(), "DFEW", "m3dfel", "majority", "global")
    assert float(out["loss_au_dfer"]) == pytest.approx(want, rel=1e-5)


def test_au_batch_is_ignored_unless_weighted():
    z, y, emo = _data(7)
    oe, eb = {"au": z, "expr": torch.randn(len(emo), 7)}, {"au": y, "expr": emo}
    g = torch.Generator().manual_seed(8)
    oa = {"au": torch.randn(2, 3, 12, generator=g), "expr": torch.randn(2, 7, generator=g)}
    ab = {"au": torch.randint(-1, 2, (2, 3, 12), generator=g), "expr": torch.full((2,), -1)}
    base = au_dfer_loss(None, oe, None, eb, ctx=CTX)
    assert float(au_dfer_loss(oa, oe, ab, eb, ctx=CTX)["loss"]) == float(base["loss"])
    w = au_dfer_loss(oa, oe, ab, eb, ctx=CTX, au_batch_weight=0.5)
    assert float(w["loss_au"]) == pytest.approx(float(masked_bce(oa["au"], ab["au"])))
    assert float(w["loss"]) == pytest.approx(float(base["loss"]) + 0.5 * float(w["loss_au"]), rel=1e-6)
    only_au = au_dfer_loss(oa, None, ab, None, ctx=CTX)
    assert float(only_au["loss"]) == 0.0 and set(only_au) == {"loss", "loss_expr", "loss_au_dfer"}


def test_registry_entry():
    from aufer.training import LOSSES

    assert LOSSES["au_dfer"] is au_dfer_loss


# ------------------------------------------------------------------------------------------ pseudo-labels
def test_mean_rule_boundary_unknowns_and_shapes():
    T = 8
    x = np.zeros((T, 5))
    x[:4, 0] = 1                  # mean exactly 0.5 -> 1
    x[:3, 1] = 1                  # 0.375 -> 0
    x[:, 2] = np.nan              # all unknown -> -1
    x[:, 3] = [1, 1, -1, -1, -1, -1, 0, np.nan]   # mean over the 3 known frames = 2/3 -> 1
    x[:, 4] = [0.6, 0.4, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]  # probabilities, mean exactly 0.5 -> 1
    out = clip_labels_mean(x)
    assert isinstance(out, np.ndarray) and out.dtype == np.int64
    assert out.tolist() == [1, 0, -1, 1, 1]
    assert clip_labels_mean(x, threshold=0.6).tolist() == [0, 0, -1, 1, 0]
    b = clip_labels_mean(np.stack([x, 1 - np.nan_to_num(x, nan=1.0)]))
    assert b.shape == (2, 5) and b[0].tolist() == [1, 0, -1, 1, 1]
    t = clip_labels_mean(torch.tensor(x))
    assert isinstance(t, torch.Tensor) and t.dtype == torch.int64 and t.tolist() == [1, 0, -1, 1, 1]
    with pytest.raises(ValueError):
        clip_labels_mean(np.zeros(4))


def test_count_rule_boundary_unknowns_and_shapes():
    T = 16
    x = np.zeros((T, 6))
    x[:8, 0] = 1                  # exactly T/2 frames -> 1 (>=)
    x[:7, 1] = 1                  # T/2 - 1 -> 0
    x[:8, 2] = 0.01               # value exactly 0.01 counts (>=)
    x[:8, 3] = 0.009              # below 0.01 does not
    x[:, 4] = -1                  # all unknown -> -1
    x[:, 5] = [2.5] * 3 + [np.nan] * 10 + [0] * 3   # intensities; 3 of the 6 known frames -> 1
    out = clip_labels_count(x)
    assert out.dtype == np.int64 and out.tolist() == [1, 0, 1, 0, -1, 1]
    assert clip_labels_count(x, min_frames=9).tolist() == [0, 0, 0, 0, -1, 0]
    assert clip_labels_count(x, min_value=0.5).tolist() == [1, 0, 0, 0, -1, 1]
    odd = np.array([[1], [1], [0], [0], [0]], dtype=float)   # T = 5: T/2 = 2.5, 2 frames are not enough
    assert clip_labels_count(odd).tolist() == [0]
    assert clip_labels_count(np.array([[1], [1], [1], [0], [0]], dtype=float)).tolist() == [1]
    t = clip_labels_count(torch.tensor(x).unsqueeze(0).repeat(3, 1, 1))
    assert t.shape == (3, 6) and t.dtype == torch.int64 and t[2].tolist() == [1, 0, 1, 0, -1, 1]


def test_the_two_rules_differ_where_documented():
    x = np.array([[0.3], [0.3], [0.3], [0.3]])   # every frame >= 0.01 but mean 0.3
    assert clip_labels_count(x).tolist() == [1] and clip_labels_mean(x).tolist() == [0]


# --------------------------------------------------------------------------------------------- OpenFace
def test_openface_presence_from_the_fixture():
    import csv
    with open(FIXTURE, newline="") as f:
        raw = [{k.strip(): v.strip() for k, v in r.items()} for r in csv.DictReader(f)]
    frames, aus, values = read_openface_au_presence(FIXTURE)
    assert aus == vocab.openface_aus() and values.shape == (len(raw), 18) and values.dtype == np.float64
    assert frames.tolist() == [int(r["frame"]) - 1 for r in raw]      # 0-based
    for i, r in enumerate(raw):
        want = [float(r[f"AU{a:02d}_c"]) if r["success"] == "1" else np.nan for a in aus]
        np.testing.assert_array_equal(values[i], want)
    f0, _, v0 = read_openface_au_presence(FIXTURE, face_id=0)
    assert f0.tolist() == [0, 1, 2] and np.isfinite(v0).all()
    f1, _, v1 = read_openface_au_presence(FIXTURE, face_id=1)
    assert f1.tolist() == [0]                                        # its failed frame has no face id
    assert clip_labels_mean(v0).tolist() == [int(2 * v0[:, j].sum() >= 3) for j in range(18)]


def test_openface_presence_from_a_small_csv(tmp_path):
    path = tmp_path / "clip.csv"
    header = "frame, face_id, timestamp, confidence, success, AU12_r, AU04_r, AU45_c, AU12_c, AU04_c, AU28_c"
    rows = ["1, 0, 0.000, 0.98, 1, 2.1, 0.0, 0, 1, 0, 0",
            "2, 0, 0.040, 0.97, 1, 1.8, 0.3, 1, 1, 0, 0",
            "3, 0, 0.080, 0.10, 0, 0.0, 0.0, 0, 0, 0, 0",
            "4, 0, 0.120, 0.95, 1, 0.2, 1.2, 0, 0, 1, 0"]
    path.write_text("\n".join([header, *rows]) + "\n")
    frames, aus, values = read_openface_au_presence(path)
    assert frames.tolist() == [0, 1, 2, 3] and aus == (4, 12, 28, 45)
    np.testing.assert_array_equal(values, [[0, 1, 0, 0], [0, 1, 0, 1], [np.nan] * 4, [1, 0, 0, 0]])
    assert clip_labels_mean(values).tolist() == [0, 1, 0, 0]      # AU12: 2/3 of the known frames
    assert clip_labels_count(values).tolist() == [0, 1, 0, 0]
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="OpenFace"):  # ToolkitLayoutError
        read_openface_au_presence(bad)
    with pytest.raises(FileNotFoundError):
        read_openface_au_presence(tmp_path / "missing.csv")
