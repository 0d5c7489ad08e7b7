import numpy as np
import pytest
import torch

from aufer import vocab
from aufer.synth import ClipSet
from aufer.demo import HAPPY, NEUTRAL, DemoSettings, real_photo_metrics, split_identities

LONDON = [f"london/{i:03d}" for i in range(102)]
CANADA = [f"canada/{i:03d}f" for i in range(40)]


def test_split_is_subject_exclusive_and_seeded():
    cfg = DemoSettings()
    a, b = split_identities(LONDON, CANADA, cfg), split_identities(LONDON[::-1], CANADA, cfg)
    assert a == b  # independent of input order
    assert {k: len(v) for k, v in a.items()} == {"test": 34, "val": 14, "au_train": 40, "fe_train": 54}
    every = [i for v in a.values() for i in v]
    assert len(every) == len(set(every)) == 142
    assert split_identities(LONDON, CANADA, cfg, seed=1)["test"] != a["test"]
    with pytest.raises(ValueError, match="FE-train"):
        split_identities(LONDON, CANADA, DemoSettings(n_test_people=60, n_val_people=42))


class _Fake(torch.nn.Module):
    """P(happy) and AU12 follow the crop brightness: bright = smiling."""

    aus, emotions, uses_landmarks = (1, 12), vocab.EMOTIONS_7, False

    def preprocess(self, crops):
        return crops.float().permute(0, 1, 4, 2, 3) / 255

    def forward(self, x, landmarks=None):
        b = x.mean((2, 3, 4))  # (B, T)
        expr = torch.zeros(x.shape[0], 7)
        expr[:, HAPPY] = 10 * (b.mean(1) - 0.5)
        au = torch.stack([torch.zeros_like(b), 10 * (b - 0.5)], -1)
        return {"au": au, "expr": expr}



def test_real_photo_metrics(tmp_path):
    # 3 people; person 2's smiling photo is darker than the neutral one (a miss for both metrics)
    bright = {("p0", HAPPY): 200, ("p0", NEUTRAL): 50, ("p1", HAPPY): 180, ("p1", NEUTRAL): 40,
              ("p2", HAPPY): 60, ("p2", NEUTRAL): 90}
    keys = list(bright)
    n = len(keys)
    crops = np.stack([np.full((1, 8, 8, 3), bright[k], np.uint8) for k in keys])
    cs = ClipSet(crops, np.zeros((n, 1, 478, 3), np.float32), np.full((n, 1, 2), -1, np.int8),
                 np.full((n, 1, 2), np.nan, np.float32), np.array([k[1] for k in keys]), np.array([k[0] for k in keys]),
                 np.full(n, "real"), np.ones((n, 1), bool), (1, 12), vocab.EMOTIONS_7)
    from aufer.datasets.clips import ExprClipDataset
    from aufer.store.facestore import FaceStore

    store = FaceStore(tmp_path / "s.sqlite", "a", crop_size=8, codec="png")  # lossless: brightness kept exactly
    records = cs.to_store(store, "real", "expr")
    assert records.table["source"].tolist() == ["real"] * n  # where each clip comes from travels with the records
    real = ExprClipDataset(store, records, num_segments=1, aus=(1, 12))
    m = real_photo_metrics(_Fake().eval(), real)
    # neutral logit is 0; happy logit > 0 iff brightness > 127.5: p0, p1 smiles right, all neutrals right, p2 smile wrong
    assert m["happy_vs_neutral_accuracy"] == pytest.approx(5 / 6)
    assert m["au12_smile_gt_neutral"] == pytest.approx(2 / 3) and m["n_people_paired"] == 3
    from aufer.demo.metrics import clip_au_probability, smile_pair_share

    au12 = clip_au_probability(_Fake().eval(), real)  # by clip name, as the CV scripts map it onto their tables
    assert sorted(au12.index) == sorted(records.table["clip"]) and au12.between(0, 1).all()
    # a person with one photo only is not paired; a tie is not a win
    assert smile_pair_share(["a", "a", "b", "c", "c"], [True, False, True, True, False], [0.9, 0.1, 0.5, 0.4, 0.4]) \
        == (0.5, 2)


def test_synthetic_classes_left_out_of_fe_train():
    from aufer import vocab
    from aufer.demo.data import DemoSettings, synth_excluded

    idx = vocab.EMOTIONS_7.index
    assert synth_excluded(DemoSettings()) == []
    assert synth_excluded(DemoSettings(fe_synth_exclude=["happiness"])) == [idx("happiness")]
    assert synth_excluded(DemoSettings(fe_synth_real_classes=False, fe_synth_exclude=["fear"])) == sorted(
        [idx("happiness"), idx("neutral"), idx("fear")])
    with pytest.raises(ValueError, match="fe_synth_exclude.*not emotions"):
        synth_excluded(DemoSettings(fe_synth_exclude=["joy"]))
    from aufer.demo.data import without_excluded

    n = 7
    stills = ClipSet(np.zeros((n, 1, 8, 8, 3), np.uint8), np.zeros((n, 1, 478, 3), np.float32),
                     np.full((n, 1, 2), -1, np.int8), np.full((n, 1, 2), np.nan, np.float32), np.arange(n),
                     np.array(["london/001"] * n), np.full(n, "synthetic"), np.ones((n, 1), bool), (1, 12),
                     vocab.EMOTIONS_7)
    assert without_excluded(stills, DemoSettings()) is stills
    kept = without_excluded(stills, DemoSettings(fe_synth_exclude=["happiness", "fear"]))
    assert sorted(kept.expr) == sorted(set(range(n)) - {idx("happiness"), idx("fear")})
