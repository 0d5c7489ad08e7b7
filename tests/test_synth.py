import numpy as np
import pytest

from aufer import vocab
from aufer import synth
from aufer.media import read_image

LEVELS = (0.0, 0.25, 0.5, 0.75, 1.0)


@pytest.fixture(scope="module")
def bases(detector, faces_df):
    paths = list(faces_df.query("set == 'canada'").path[:4]) + list(faces_df.query("set == 'london' and expression == 'neutral'").path[:4])
    out = []
    for p in paths:
        img = read_image(p)
        out.append(synth.BaseFace(img, detector.detect(img)[0].landmarks, identity=p))
    return out


def _projected_motion(detector, base, au):
    """Mean displacement of the AU's target landmarks along the AU's direction, as re-detected by the face
    pipeline, per intensity level (canonical units)."""
    pts, (d_out, d_down) = synth.target_motion(au)
    pts = np.asarray(pts)
    c = base.canonical[pts]
    side = np.sign(c[:, 0]) * (np.abs(c[:, 0]) > 0.05)
    direction = np.stack([d_out * side, np.full(len(pts), d_down)], 1)
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    lin = base.to_canonical[:, :2]
    ref = detector.detect(base.image)[0].landmarks[pts, :2]
    out = []
    for a in LEVELS:
        image, _, _ = synth.render(base, {au: a})
        lm = detector.detect(image)[0].landmarks[pts, :2]
        out.append(float((((lm - ref) @ lin.T) * direction).sum(1).mean()))
    return np.array(out)


def test_required_aus_are_rendered():
    assert {1, 2, 4, 5, 12, 15, 20, 25, 26} <= set(synth.SYNTH_AUS)


@pytest.mark.slow
@pytest.mark.parametrize("au", synth.SYNTH_AUS)
def test_pipeline_sees_each_au_move_monotonically(detector, bases, au):
    """Acceptance test: running the face pipeline on a warped face moves the AU's target landmarks in the AU's
    direction, monotonically with intensity (mean over 8 real faces strictly increasing; most faces individually
    rank-correlated with intensity)."""
    motion = np.stack([_projected_motion(detector, b, au) for b in bases])  # (faces, levels)
    mean = motion.mean(0)
    assert (np.diff(mean) > 0).all(), f"AU{au}: mean motion {mean.round(4)} is not increasing"
    ranks = np.argsort(np.argsort(motion, axis=1), axis=1)
    rho = np.array([np.corrcoef(r, np.arange(len(LEVELS)))[0, 1] for r in ranks])
    assert (rho >= 0.8).mean() >= 0.75, f"AU{au}: per-face rank correlations {rho.round(2)}"


def test_au26_opens_the_mouth_and_is_labelled_lips_part(bases):
    img, lm, shown = synth.render(bases[0], {26: 1.0})
    aus = list(bases[0].aus)
    assert shown[aus.index(26)] == 1.0 and shown[aus.index(25)] > 0.5
    neutral_gap = bases[0].landmarks[14, 1] - bases[0].landmarks[13, 1]
    assert lm[14, 1] - lm[13, 1] > neutral_gap + 0.1 * bases[0].iod_px
    assert not np.array_equal(img, bases[0].image)


def test_render_rejects_unknown_au(bases):
    with pytest.raises(KeyError, match="AU"):
        synth.render(bases[0], {28: 1.0})


def test_zero_intensity_is_identity(bases):
    img, lm, shown = synth.render(bases[0], {})
    assert np.array_equal(img, bases[0].image) and np.allclose(lm, bases[0].landmarks)


def test_intensity_curves_are_onset_apex_offset(rng):
    for _ in range(50):
        c = synth.intensity_curve(16, rng)
        assert c.shape == (16,) and (c >= 0).all() and (c <= 1).all()
        peak = int(np.argmax(c))
        assert (np.diff(c[: peak + 1]) >= -1e-12).all() and (np.diff(c[peak:]) <= 1e-12).all()
    assert synth.intensity_curve(1, rng).shape == (1,)


def test_prototype_sampling_follows_ckplus(rng):
    aus = synth.SYNTH_AUS
    happy = np.stack([synth.sample_expression_peaks(rng, "happiness", source="ckplus") for _ in range(400)]) > 0
    p = vocab.ckplus_prior(["happiness"], aus, missing=0.0)[0]
    assert np.abs(happy.mean(0) - p).max() < 0.08
    emfacs = np.stack([synth.sample_expression_peaks(rng, "surprise", source="emfacs") for _ in range(200)]) > 0
    proto = set(vocab.emfacs_prototypes()["surprise"])
    assert all(not emfacs[:, j].any() for j, a in enumerate(aus) if a not in proto)
    assert all(emfacs[:, j].mean() > 0.8 for j, a in enumerate(aus) if a in proto)
    neutral = np.stack([synth.sample_expression_peaks(rng, "neutral") for _ in range(100)])
    assert (synth.occurrence(neutral) == 0).all()


def test_base_rate_sampling_follows_label_stats(rng):
    aus = synth.SYNTH_AUS
    draws = np.stack([synth.sample_au_peaks(rng, aus, mode="base_rate") for _ in range(3000)]) > 0
    rates = vocab.au_base_rates(aus)
    for j, a in enumerate(aus):
        if a in rates:
            assert abs(draws[:, j].mean() - rates[a]) < 0.04, f"AU{a}"


def test_clips_are_deterministic_and_labelled_synthetic(bases):
    small = bases[:2]
    a = synth.make_au_clips(small, 1, n_frames=4, crop_size=64, seed=7)
    b = synth.make_au_clips(small, 1, n_frames=4, crop_size=64, seed=7)
    c = synth.make_au_clips(small, 1, n_frames=4, crop_size=64, seed=8)
    assert np.array_equal(a.crops, b.crops) and np.array_equal(a.au, b.au)
    assert not np.array_equal(a.au_intensity, c.au_intensity)
    assert a.crops.shape == (2, 4, 64, 64, 3) and a.au.shape == (2, 4, len(synth.SYNTH_AUS))
    assert set(a.source) == {"synthetic"} and synth.SYNTHETIC_NOTE in a.notes
    assert (a.expr == -1).all()
    assert np.array_equal(a.au, synth.occurrence(a.au_intensity))
    e = synth.make_expression_clips(small[:1], 1, crop_size=64, seed=0)
    assert list(e.expr) == list(range(7)) and (e.au == -1).all() and synth.SYNTHETIC_NOTE in e.notes
