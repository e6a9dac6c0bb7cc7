"""Resizing keeps a mask on its image: after any resize the labels sit where the pixels
they describe went, to a small fraction of a pixel (centred nearest neighbour)."""
import torch
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as TF

from seglab.data import resize_mask
from seglab.transforms import RandomScale


def _stripes(n: int, seed: int) -> torch.Tensor:
    """Rows (or columns) 0/1 in stripes of random widths 1 to 7: many edges at every phase."""
    g = torch.Generator().manual_seed(seed)
    widths = torch.randint(1, 8, (n,), generator=g)
    return (torch.arange(n).repeat_interleave(widths)[:n] % 2).to(torch.uint8)


def _pair(h: int = 360, w: int = 480, seed: int = 0):
    """A mask of class-1 stripes across the rows and an image that is white exactly there."""
    rows = _stripes(h, seed)[:, None].expand(h, w)
    cols = _stripes(w, seed + 1)[None, :].expand(h, w)
    mask = (rows * cols).contiguous()
    image = (mask * 255).expand(3, h, w).contiguous()
    return tv_tensors.Image(image), tv_tensors.Mask(mask)


def _offset(image: torch.Tensor, mask: torch.Tensor) -> tuple[float, float]:
    """(down, right): how far, in pixels, the mask's class 1 lies from where the image is
    white. A mask moved down by d is about the image's whiteness f moved down by d, that is
    f - d * df/dy, so the least-squares d is -sum((mask - f) * df/dy) / sum((df/dy)**2)."""
    f = image[0].double() / 255
    residual = (mask == 1).double() - f
    gy, gx = torch.zeros_like(f), torch.zeros_like(f)
    gy[1:-1] = (f[2:] - f[:-2]) / 2
    gx[:, 1:-1] = (f[:, 2:] - f[:, :-2]) / 2
    return float(-(residual * gy).sum() / (gy * gy).sum()), float(-(residual * gx).sum() / (gx * gx).sum())


def test_shrunk_mask_stays_centred_on_its_shrunk_image():
    image, mask = _pair()
    # Not 180x240: at exactly half size every output pixel covers 2x2 source pixels, and any
    # one of them is off centre by half a source pixel (resize_mask's docstring).
    for size in [(240, 320), (288, 384), (216, 288)]:
        small_image = TF.resize(image.as_subclass(torch.Tensor), list(size), antialias=True)
        dy, dx = _offset(small_image, resize_mask(mask, size))
        # plain "nearest" (torchvision's for masks) is about half a pixel down and right here
        assert abs(dy) < 0.15 and abs(dx) < 0.15, (size, dy, dx)


def test_random_scale_moves_image_and_mask_together():
    image, mask = _pair(240, 320, seed=3)
    scale = RandomScale((224, 320), (0.9, 1.2))
    offsets = []
    for seed in range(12):
        torch.manual_seed(seed)
        scaled_image, scaled_mask = scale(image, mask)
        assert isinstance(scaled_mask, tv_tensors.Mask) and scaled_mask.dtype == mask.dtype
        assert scaled_image.shape[-2:] == scaled_mask.shape[-2:]
        assert set(scaled_mask.unique().tolist()) <= {0, 1}     # nearest: no label is invented
        offsets.append(_offset(scaled_image, scaled_mask))
    mean_dy = sum(o[0] for o in offsets) / len(offsets)
    mean_dx = sum(o[1] for o in offsets) / len(offsets)
    # torchvision's ScaleJitter (plain "nearest" for masks) averages about +0.6 pixel on both axes
    assert abs(mean_dy) < 0.1 and abs(mean_dx) < 0.1, (mean_dy, mean_dx)


def test_resize_mask_keeps_shape_prefix_and_dtype():
    mask = torch.randint(0, 12, (2, 36, 48), dtype=torch.uint8)
    out = resize_mask(mask, (24, 32))
    assert out.shape == (2, 24, 32) and out.dtype == torch.uint8
    assert resize_mask(mask.long(), (24, 32)).dtype == torch.int64
    assert resize_mask(mask, (36, 48)) is not None and torch.equal(resize_mask(mask, (36, 48)), mask)
