"""Reading images and masks from files: the one reader of the project.

Values are float32 in [0, 1] whatever the file's bit depth (8-bit / 255, 16-bit / 65535, so a
16-bit copy of a mask gives the same values as the 8-bit one; float files as they are). Every
failure is a ``FileNotFoundError`` or ``ValueError`` whose message starts with the name of the
argument (a config key, say) and names the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["read_image", "read_mask", "read_masks", "resize_image"]

_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


def _reason(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def read_image(path: str | Path, name: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The image at ``path`` as float32 [H, W, C] in [0, 1] with C = 1 (grey), 3 (RGB) or 4
    (RGBA; a grey image with alpha becomes RGBA). ``name`` starts every error message;
    ``dtype`` float64 converts in double precision."""
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype: expected torch.float32 or torch.float64, got {dtype}")
    np_dtype = np.float64 if dtype == torch.float64 else np.float32
    import imageio.v3 as iio

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{name}: no such file {path}")
    if not path.is_file():
        raise ValueError(f"{name}: cannot read {path} (not a file)")
    try:
        img = np.asarray(iio.imread(path))
    except Exception as err:  # noqa: BLE001 - the image plugins fail in many ways on a bad file
        raise ValueError(f"{name}: cannot read {path} ({_reason(err)})") from None
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] not in (1, 2, 3, 4) or img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(f"{name}: expected a grey, RGB or RGBA image in {path}, got shape {list(img.shape)}")
    if img.shape[2] == 2:  # grey + alpha
        img = np.concatenate([np.repeat(img[:, :, :1], 3, axis=2), img[:, :, 1:]], axis=2)
    if img.dtype in _SCALE:
        out = torch.from_numpy(img.astype(np_dtype)) / _SCALE[img.dtype]
    elif img.dtype == np.bool_ or img.dtype.kind == "f":
        out = torch.from_numpy(img.astype(np_dtype))
    else:
        raise ValueError(f"{name}: expected an 8-bit, 16-bit, boolean or float image in {path}, got {img.dtype}")
    return out.contiguous()


def read_mask(path: str | Path, name: str) -> torch.Tensor:
    """The mask at ``path`` as float32 [H, W] in [0, 1]: the alpha channel of an RGBA image
    (its colour's mean when the alpha is opaque everywhere), the channel mean of an RGB image,
    a grey image as it is; so RGBA, RGB and grey copies of a mask agree."""
    img = read_image(path, name)
    if img.shape[2] == 4 and not bool((img[..., 3] == 1).all()):
        return img[..., 3].contiguous()
    if img.shape[2] >= 3:
        return img[..., :3].mean(-1)
    return img[..., 0].contiguous()


def read_masks(paths: Sequence[str | Path], name: str) -> torch.Tensor:
    """The masks at ``paths`` (see :func:`read_mask`) stacked as [N, H, W]; every file must
    have the size of the first."""
    paths = list(paths)
    if not paths:
        raise ValueError(f"{name}: expected at least one mask file, got none")
    masks = [read_mask(paths[0], name)]
    for p in paths[1:]:
        m = read_mask(p, name)
        if m.shape != masks[0].shape:
            (h, w), (H, W) = m.shape, masks[0].shape
            raise ValueError(f"{name}: expected every mask {H}x{W} (as {paths[0]}), got {h}x{w} in {p}")
        masks.append(m)
    return torch.stack(masks)


def resize_image(
    img: torch.Tensor,  # [C, H, W]
    size: tuple[int, int] | Sequence[int],
) -> torch.Tensor:
    """``img`` [C, H, W] resized to ``size`` (H', W') -> [C, H', W']: area averaging when
    shrinking in both directions, bilinear otherwise; the same tensor when the size matches."""
    if not isinstance(img, torch.Tensor) or img.dim() != 3:
        raise ValueError(f"img: expected a tensor [C, H, W], got {getattr(img, 'shape', type(img).__name__)}")
    try:
        size = tuple(int(s) for s in size)
    except (TypeError, ValueError):
        raise ValueError(f"size: expected (H, W) positive ints, got {size!r}") from None
    if len(size) != 2 or min(size) <= 0:
        raise ValueError(f"size: expected (H, W) positive ints, got {size!r}")
    if tuple(img.shape[1:]) == size:
        return img
    mode = "area" if img.shape[1] >= size[0] and img.shape[2] >= size[1] else "bilinear"
    kw = {} if mode == "area" else {"align_corners": False}
    return F.interpolate(img[None], size=size, mode=mode, **kw)[0]
