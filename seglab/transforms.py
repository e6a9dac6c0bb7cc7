"""Training augmentation and evaluation transforms, defined in one place.

Every transform takes and returns an ``(Image, Mask)`` pair of ``torchvision.tv_tensors``,
so ``transforms.v2`` applies the *same* geometry (scale, crop, flip, rotation, elastic
warp) to both; masks are always resampled with nearest neighbour (centred, see
:func:`seglab.data.resize_mask`), colour changes touch only the image. The last step turns
the uint8 image into a normalised float tensor and the mask into int64 class indices, which
is what the model and the loss expect.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from .data import resize_mask
from .datasets import CAMVID, DatasetSpec, get_spec


class RandomScale:
    """Rescale an (image, mask) pair by ``min(target / size) * U(scale_range)``: the image
    with antialiased bilinear interpolation, the mask with centred nearest neighbour
    (:func:`seglab.data.resize_mask`), so the mask stays on the objects at every scale.

    torchvision's ``v2.ScaleJitter`` draws the same factor but resamples masks with plain
    ``"nearest"``, which moves them half a pixel of the new size down and to the right of
    their image at each call."""

    def __init__(self, target_size: tuple[int, int], scale_range: tuple[float, float]):
        self.target_size, self.scale_range = tuple(target_size), tuple(scale_range)

    def __call__(self, image: tv_tensors.Image, mask: tv_tensors.Mask) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        h, w = image.shape[-2:]
        low, high = self.scale_range
        factor = min(self.target_size[0] / h, self.target_size[1] / w) * (low + (high - low) * torch.rand(()).item())
        size = [max(1, int(h * factor)), max(1, int(w * factor))]
        image = tv_tensors.Image(TF.resize(image.as_subclass(torch.Tensor), size, antialias=True))
        return image, tv_tensors.Mask(resize_mask(mask, size))

    def __repr__(self) -> str:
        return (f"RandomScale(target_size={self.target_size}, scale_range={self.scale_range}, "
                f"image: bilinear antialiased, mask: centred nearest)")


def elastic_field(height: int, width: int, std: float, grid: int = 3) -> torch.Tensor:
    """A smooth random displacement field of shape ``(2, height, width)`` in pixels (down,
    right): a displacement drawn from N(0, ``std``^2) per axis at each node of a coarse
    ``grid`` x ``grid`` lattice spanning the image, interpolated bicubically to every pixel
    (Ronneberger et al. 2015, section 3.1: 3 x 3 grid, 10 pixels standard deviation)."""
    coarse = torch.randn(1, 2, grid, grid) * std
    return F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=True)[0]


def warp(x: torch.Tensor, field: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """``x`` (``(..., H, W)``, any dtype) resampled so that output pixel p shows input pixel
    p + ``field[:, p]``. Outside the image it reflects, so a label keeps only the classes it
    had; ``mode="nearest"`` for labels (never a blend of two classes)."""
    h, w = x.shape[-2:]
    rows, cols = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                                indexing="ij")
    # grid_sample wants (x, y) in [-1, 1], pixel centres at the ends (align_corners=True)
    where = torch.stack([(cols + field[1]) * 2 / max(w - 1, 1) - 1, (rows + field[0]) * 2 / max(h - 1, 1) - 1], -1)
    flat = x.reshape(1, -1, h, w).float()
    out = F.grid_sample(flat, where[None], mode=mode, padding_mode="reflection", align_corners=True)
    if not x.is_floating_point():
        out = out.round().clamp(torch.iinfo(x.dtype).min, torch.iinfo(x.dtype).max)
    return out.to(x.dtype).reshape(x.shape)


class ElasticDeform:
    """The U-Net paper's elastic deformation of an (image, mask) pair: one random field from
    :func:`elastic_field` moves both, the image bilinear, the mask nearest. ``std`` is the
    standard deviation of the displacement in pixels at the grid's nodes; the mean
    displacement of a pixel is about that size (``tests/test_transforms.py`` measures it).

    torchvision's ``v2.ElasticTransform`` instead smooths per-pixel noise with a Gaussian,
    which averages most of it away: ``alpha=40, sigma=8`` moves pixels about half a pixel."""

    def __init__(self, std: float, grid: int = 3):
        self.std, self.grid = float(std), int(grid)

    def __call__(self, image: tv_tensors.Image, mask: tv_tensors.Mask) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        field = elastic_field(*image.shape[-2:], self.std, self.grid)
        return (tv_tensors.Image(warp(image.as_subclass(torch.Tensor), field)),
                tv_tensors.Mask(warp(mask.as_subclass(torch.Tensor), field, mode="nearest")))

    def __repr__(self) -> str:
        return f"ElasticDeform(std={self.std:g} px, grid={self.grid}x{self.grid}, image: bilinear, mask: nearest)"


def to_model_input(dataset: str | DatasetSpec = CAMVID) -> v2.Transform:
    """uint8 image -> float in [0, 1] -> normalised with the data set's channel stats;
    mask -> int64 (what ``cross_entropy`` wants)."""
    spec = get_spec(dataset)
    return v2.Compose([
        v2.ToDtype({tv_tensors.Image: torch.float32, tv_tensors.Mask: torch.int64, "others": None},
                   scale=True),
        v2.Normalize(mean=list(spec.mean), std=list(spec.std)),
    ])


def train_transforms(dataset: str | DatasetSpec = CAMVID, crop_size: tuple[int, int] | None = None,
                     scale: tuple[float, float] = (0.75, 1.5), hflip: bool = True,
                     color_jitter: float = 0.2, rotate: float = 0.0, vflip: bool = False,
                     elastic: float = 0.0, augment: bool = True) -> v2.Transform:
    """Joint augmentation for training.

    - random scale in ``scale`` (relative to the cached size), then a random crop of
      ``crop_size`` (padded with void where the scaled image is smaller), so the network
      sees objects at several sizes;
    - horizontal flip (a street scene mirrored is still a street scene; ``vflip`` and
      ``rotate`` are for microscopy, where there is no "up");
    - light colour jitter on the image only;
    - ``elastic`` > 0: elastic deformation (:class:`ElasticDeform`), the U-Net paper's key
      trick for small data: displacements of ``elastic`` pixels (standard deviation) on a
      3 x 3 grid, smoothly interpolated; the paper uses 10.

    ``augment=False`` keeps only the crop and the conversion (for the lessons ablation).
    """
    spec = get_spec(dataset)
    fill = {tv_tensors.Image: 0, tv_tensors.Mask: spec.ignore_index if spec.ignore_index is not None else 0}
    steps: list[v2.Transform] = []
    if augment and crop_size is not None and tuple(scale) != (1.0, 1.0):
        steps.append(RandomScale(crop_size, scale))
    if augment and rotate:
        steps.append(v2.RandomRotation(rotate, fill=fill))
    if augment and elastic:
        steps.append(ElasticDeform(elastic))
    if crop_size is not None:
        steps.append(v2.RandomCrop(list(crop_size), pad_if_needed=True, fill=fill))
    if augment and hflip:
        steps.append(v2.RandomHorizontalFlip())
    if augment and vflip:
        steps.append(v2.RandomVerticalFlip())
    if augment and color_jitter:
        steps.append(v2.ColorJitter(brightness=color_jitter, contrast=color_jitter,
                                    saturation=color_jitter if spec.in_channels == 3 else 0))
    steps.append(to_model_input(spec))
    return v2.Compose(steps)


def eval_transforms(dataset: str | DatasetSpec = CAMVID) -> v2.Transform:
    """Evaluation: no randomness, only the conversion the model needs."""
    return to_model_input(dataset)

