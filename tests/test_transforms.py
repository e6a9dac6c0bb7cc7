"""Resizing keeps a mask on its image: after any resize the labels sit where the pixels
they describe went, to a small fraction of a pixel (centred nearest neighbour)."""
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from seglab.data import resize_mask
from seglab.transforms import ElasticDeform, RandomScale


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


def _displacement(std: float, size: int = 128, draws: int = 16) -> tuple[float, float]:
    """(mean, largest) distance in pixels that ElasticDeform(std) moves a pixel, measured by
    warping an image of its own row and column numbers (bilinear reproduces a linear ramp
    exactly, so the warped value of each pixel is where it came from)."""
    rows, cols = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                                indexing="ij")
    coords = tv_tensors.Image(torch.stack([rows, cols]))
    mask = tv_tensors.Mask(torch.zeros(size, size, dtype=torch.uint8))
    warp = ElasticDeform(std)
    means, largest = [], 0.0
    for seed in range(draws):
        torch.manual_seed(seed)
        moved, _ = warp(coords, mask)
        inner = (slice(size // 8, -size // 8),) * 2     # away from the border, where it reflects
        shift = ((moved[0] - rows) ** 2 + (moved[1] - cols) ** 2).sqrt()[inner]
        means.append(shift.mean().item())
        largest = max(largest, shift.max().item())
    return sum(means) / len(means), largest


def test_elastic_setting_is_the_displacement_in_pixels():
    mean, largest = _displacement(10.0)
    # the U-Net paper's setting moves a pixel about 10 pixels on average, some by twice that
    assert 6.0 < mean < 14.0 and 15.0 < largest < 60.0, (mean, largest)
    mean5, _ = _displacement(5.0)
    assert abs(mean5 - mean / 2) < 0.05 * mean, (mean5, mean)       # the displacement scales with the setting
    assert max(_displacement(0.0, draws=2)) < 1e-3                  # 0 is off
    # torchvision's per-pixel field smoothed by a Gaussian (the old setting) moves it about half a pixel
    rows, cols = torch.meshgrid(torch.arange(128.0), torch.arange(128.0), indexing="ij")
    torch.manual_seed(0)
    old = TF.elastic(tv_tensors.Image(torch.stack([rows, cols])),
                     v2.ElasticTransform(40.0, 8.0).make_params([torch.zeros(1, 128, 128)])["displacement"])
    assert ((old[0] - rows) ** 2 + (old[1] - cols) ** 2).sqrt()[16:-16, 16:-16].mean() < 2.0


def test_elastic_warp_is_smooth_and_moves_image_and_labels_together():
    image, mask = _pair(96, 128, seed=5)
    mask = mask.clone()
    mask[:8, :8] = 11                                             # a void corner: a third label value
    for seed in range(6):
        torch.manual_seed(seed)
        warped_image, warped_mask = ElasticDeform(8.0)(image, tv_tensors.Mask(mask))
        assert warped_image.dtype == image.dtype and warped_mask.dtype == mask.dtype
        assert warped_image.shape == image.shape and warped_mask.shape == mask.shape
        assert set(warped_mask.unique().tolist()) <= {0, 1, 11}    # nearest, reflected: no new label
        assert not torch.equal(warped_mask, mask)                   # it did move
        labelled = warped_mask != 11
        agree = ((warped_image[0] > 127) == (warped_mask == 1))[labelled].float().mean().item()
        assert agree > 0.9, agree      # the image still says what the label says, up to edge pixels
