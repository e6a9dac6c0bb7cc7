"""Training augmentation and evaluation transforms, defined in one place.

Every transform takes and returns an ``(Image, Mask)`` pair of ``torchvision.tv_tensors``,
so ``transforms.v2`` applies the *same* geometry (scale, crop, flip, rotation, elastic
warp) to both; masks are always resampled with nearest neighbour, colour changes touch
only the image. The last step turns the uint8 image into a normalised float tensor and
the mask into int64 class indices, which is what the model and the loss expect.
"""
from __future__ import annotations

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from .datasets import CAMVID, DatasetSpec, get_spec


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
    - ``elastic`` > 0: elastic deformation, the U-Net paper's key trick for small data.

    ``augment=False`` keeps only the crop and the conversion (for the lessons ablation).
    """
    spec = get_spec(dataset)
    fill = {tv_tensors.Image: 0, tv_tensors.Mask: spec.ignore_index if spec.ignore_index is not None else 0}
    steps: list[v2.Transform] = []
    if augment and crop_size is not None and tuple(scale) != (1.0, 1.0):
        # ScaleJitter resizes image and mask together by min(crop/size) * U(scale):
        # bilinear for the image, nearest neighbour for the mask.
        steps.append(v2.ScaleJitter(target_size=tuple(crop_size), scale_range=tuple(scale)))
    if augment and rotate:
        steps.append(v2.RandomRotation(rotate, fill=fill))
    if augment and elastic:
        steps.append(v2.ElasticTransform(alpha=elastic, sigma=elastic / 5, fill=fill))
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

