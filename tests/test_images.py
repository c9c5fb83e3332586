"""The image and mask reader: values by bit depth, channel layouts, resizing and every error."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from softras.images import read_image, read_mask, read_masks, resize_image

# a 3 x 4 mask with every kind of value: 0, 1 and fractions exact in 8 and 16 bits
MASK8 = np.array([[0, 255, 51, 102], [255, 0, 153, 204], [17, 34, 255, 0]], dtype=np.uint8)
MASK = MASK8.astype(np.float64) / 255.0


def _write(path, arr):
    iio.imwrite(path, arr)
    return path


def test_8_and_16_bit_give_the_same_values(tmp_path):
    p8 = _write(tmp_path / "m8.png", MASK8)
    p16 = _write(tmp_path / "m16.png", MASK8.astype(np.uint16) * 257)  # 255 * 257 = 65535
    a, b = read_image(p8, "m"), read_image(p16, "m")
    assert a.dtype == torch.float32 and a.shape == (3, 4, 1)
    assert torch.equal(a, b)
    np.testing.assert_allclose(a[..., 0].numpy(), MASK, rtol=0, atol=1e-7)
    assert float(a.max()) == 1.0 and float(a.min()) == 0.0


def test_rgb_rgba_and_grey_masks_agree(tmp_path):
    grey = _write(tmp_path / "grey.png", MASK8)
    rgb = _write(tmp_path / "rgb.png", np.repeat(MASK8[..., None], 3, axis=2))
    opaque = _write(tmp_path / "opaque.png", np.dstack([MASK8] * 3 + [np.full_like(MASK8, 255)]))
    alpha = _write(tmp_path / "alpha.png", np.dstack([np.full_like(MASK8, 10)] * 3 + [MASK8]))
    grey_la = _write(tmp_path / "la.png", np.dstack([np.full_like(MASK8, 200), MASK8]))
    for p in (grey, rgb, opaque, alpha, grey_la):
        m = read_mask(p, "target.mask")
        assert m.shape == (3, 4), p
        np.testing.assert_allclose(m.numpy(), MASK, rtol=0, atol=1e-7, err_msg=str(p))


def test_rgb_values_and_channels(tmp_path):
    rgb = np.zeros((2, 2, 3), dtype=np.uint8)
    rgb[0, 0] = (255, 0, 51)
    img = read_image(_write(tmp_path / "c.png", rgb), "img")
    assert img.shape == (2, 2, 3)
    assert img[0, 0].tolist() == pytest.approx([1.0, 0.0, 0.2], abs=1e-7)
    # an RGB mask is the mean of its channels
    assert float(read_mask(tmp_path / "c.png", "m")[0, 0]) == pytest.approx(0.4, abs=1e-7)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_float_images_as_they_are(tmp_path):
    f = np.array([[0.25, 1.5], [-0.5, 0.0]], dtype=np.float32)
    tiff = _write(tmp_path / "f.tiff", f)
    assert read_image(tiff, "img")[..., 0].tolist() == [[0.25, 1.5], [-0.5, 0.0]]


def test_read_masks_stacks_and_names_the_odd_size(tmp_path):
    a = _write(tmp_path / "a.png", MASK8)
    b = _write(tmp_path / "b.png", MASK8[::-1].copy())
    c = _write(tmp_path / "c.png", MASK8[:2])
    out = read_masks([a, b], "target.masks")
    assert out.shape == (2, 3, 4)
    np.testing.assert_allclose(out[1].numpy(), MASK[::-1], rtol=0, atol=1e-7)
    with pytest.raises(ValueError, match=r"target.masks: expected every mask 3x4 \(as .*a.png\), got 2x4 in .*c.png"):
        read_masks([a, b, c], "target.masks")
    with pytest.raises(ValueError, match="target.masks: expected at least one mask file, got none"):
        read_masks([], "target.masks")


def test_errors_name_the_argument_and_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"target.image: no such file .*missing.png"):
        read_image(tmp_path / "missing.png", "target.image")
    with pytest.raises(ValueError, match=r"target.image: cannot read .* \(not a file\)"):
        read_image(tmp_path, "target.image")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"target.image: cannot read .*empty.png \(.+\)$"):
        read_image(empty, "target.image")
    good = _write(tmp_path / "big.png", np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"target.mask: cannot read .*truncated.png \(.+\)$"):
        read_mask(truncated, "target.mask")
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"not an image at all\n" * 10)
    with pytest.raises(ValueError, match=r"m: cannot read .*garbage.png \(.+\)$"):
        read_image(garbage, "m")


def test_resize_area_when_shrinking_bilinear_when_growing():
    img = torch.arange(16.0).reshape(1, 4, 4)
    # area: the mean of each 2x2 block, by hand
    assert resize_image(img, (2, 2))[0].tolist() == [[2.5, 4.5], [10.5, 12.5]]
    assert resize_image(img, (4, 4)) is img
    # bilinear with half-pixel centres: a 2-pixel ramp [0, 1] grown to 4 is [0, .25, .75, 1]
    ramp = torch.tensor([[[0.0, 1.0]]])
    assert resize_image(ramp, (1, 4))[0, 0].tolist() == pytest.approx([0.0, 0.25, 0.75, 1.0])
    with pytest.raises(ValueError, match=r"img: expected a tensor \[C, H, W\], got torch.Size\(\[4, 4\]\)"):
        resize_image(img[0], (2, 2))
    with pytest.raises(ValueError, match=r"size: expected \(H, W\) positive ints, got \(0, 2\)"):
        resize_image(img, (0, 2))


def test_float64_conversion_is_exact(tmp_path):
    p = _write(tmp_path / "m16.png", np.array([[1, 65534]], dtype=np.uint16))
    out = read_image(p, "m", dtype=torch.float64)
    assert out.dtype == torch.float64
    assert out[0, :, 0].tolist() == [1 / 65535, 65534 / 65535]
    with pytest.raises(ValueError, match="dtype: expected torch.float32 or torch.float64, got torch.int32"):
        read_image(p, "m", dtype=torch.int32)


def test_a_corrupt_texture_of_an_obj_is_one_line_naming_it(tmp_path):
    from softras.io import load_obj

    (tmp_path / "tex.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (tmp_path / "m.mtl").write_text("newmtl a\nmap_Kd tex.png\n")
    (tmp_path / "m.obj").write_text(
        "mtllib m.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nvt 1 0\nvt 0 1\nusemtl a\nf 1/1 2/2 3/3\n"
    )
    with pytest.raises(ValueError, match=r"map_Kd: cannot read .*tex.png \(.+\)$"):
        load_obj(tmp_path / "m.obj", load_texture=True)
