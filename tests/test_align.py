import numpy as np
import pytest

from aufer.faces import align


def test_similarity_recovers_known_transform(rng):
    src = rng.uniform(0, 100, (5, 2))
    ang, s, t = 0.3, 1.7, np.array([12.0, -4.0])
    r = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    dst = s * src @ r.T + t
    m = align.similarity(src, dst)
    assert np.allclose(m[:, :2], s * r, atol=1e-9) and np.allclose(m[:, 2], t, atol=1e-9)


def test_similarity_never_reflects(rng):
    src = rng.uniform(0, 1, (6, 2))
    m = align.similarity(src, src * [-1, 1])
    assert np.linalg.det(m[:, :2]) > 0


def test_template_scales_with_size():
    t = align.template(224)
    assert t.shape == (5, 2)
    assert np.allclose(align.template(112) * 2, t)
    assert t[0, 0] < t[1, 0] and t[3, 0] < t[4, 0] and t[0, 1] < t[2, 1] < t[3, 1]
    assert (t > 0).all() and (t < 224).all()


def test_five_points_rejects_bad_shape():
    with pytest.raises(ValueError, match="478"):
        align.five_points(np.zeros((68, 2)))


def test_transform_points_scales_depth():
    m = np.array([[2.0, 0, 1], [0, 2.0, 3]])
    p = align.transform_points(np.array([[1.0, 1.0, 5.0]]), m)
    assert np.allclose(p, [[3.0, 5.0, 10.0]])


def test_centre_matrix_maps_the_central_square_onto_the_crop():
    m = align.centre_matrix((360, 640, 3), 90)
    corners = align.transform_points(np.array([[140.0, 0.0], [500.0, 360.0]]), m)
    assert np.allclose(corners, [[0, 0], [90, 90]])
    image = np.zeros((360, 640, 3), np.uint8)
    image[:, 140:500] = 200  # the central square
    crop = align.warp_crop(image, m, 90)
    assert crop.shape == (90, 90, 3) and (crop[2:-2, 2:-2] == 200).all()
