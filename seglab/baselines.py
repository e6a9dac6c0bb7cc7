"""Traditional (non-deep) segmentation baselines: what you get *without* a neural network.

A baseline answers the question every deep-learning result should face: how much does
the network actually buy? Two classics, kept small enough to read in one sitting:

- :class:`SuperpixelBaseline` (CamVid): cut the image into superpixels with SLIC
  (Achanta et al., TPAMI 2012), describe each one with hand-made features (colour,
  position, texture, shape), and let a random forest (Breiman 2001; scikit-learn) name
  its class. Every pixel of a superpixel gets the same class. This is the recipe of
  the pre-deep-learning CamVid papers in miniature: the superpixel is the unit, so the
  classifier sees a few hundred regions per image instead of 86,400 pixels, and a
  region has statistics (a texture, a shape) that a single pixel does not.
- :func:`threshold_baseline` (ISBI EM): membranes are darker than the cell interior, so
  a global (Otsu) or local (adaptive) threshold plus a little morphology already finds
  most of them. It fails where other dark structures (mitochondria, vesicles) sit
  inside cells, which is exactly what a U-Net learns to tell apart.

scikit-learn and scikit-image are imported here, at the top: this module belongs to the
``course`` extra and is never imported by ``import seglab``.
"""
from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage
from skimage.color import rgb2lab
from skimage.feature import local_binary_pattern
from skimage.filters import gaussian, sobel_h, sobel_v, threshold_local, threshold_otsu
from skimage.segmentation import slic
from skimage.transform import resize

from .datasets import CAMVID, DatasetSpec, get_spec

LBP_POINTS = 8      # neighbours of the local binary pattern (radius 1): 10 "uniform" codes
LBP_BINS = LBP_POINTS + 2
CONTEXT_SIZE = 0.15   # box around each pixel for the context colour, as a fraction of the image height

FEATURE_NAMES: tuple[str, ...] = (
    ("R mean", "G mean", "B mean", "R std", "G std", "B std",
     "L mean", "a mean", "b mean", "L std", "a std", "b std",
     "centroid y", "centroid x", "spread y", "spread x", "area",
     "|d/dx| mean", "|d/dy| mean", "gradient std")
    + tuple(f"LBP {i}" for i in range(LBP_BINS))
    + ("context L", "context a", "context b")
)


# --------------------------------------------------------------------------- small helpers

def _as_hwc_uint8(image) -> np.ndarray:
    """An RGB image as uint8 ``[H, W, 3]`` from a uint8 tensor/array ``[3, H, W]`` or
    ``[H, W, 3]`` (float images in [0, 1] are scaled)."""
    x = image.detach().cpu().as_subclass(torch.Tensor).numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if x.ndim == 3 and x.shape[0] in (1, 3) and x.shape[-1] not in (1, 3):
        x = np.moveaxis(x, 0, -1)
    if x.ndim == 2:
        x = x[..., None]
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    if x.dtype != np.uint8:
        x = (np.clip(x, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    return np.ascontiguousarray(x[..., :3])


def _as_2d(mask) -> np.ndarray:
    x = mask.detach().cpu().as_subclass(torch.Tensor).numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    return x[0] if x.ndim == 3 and x.shape[0] == 1 else x


def _resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Antialiased resize of uint8 ``[H, W, 3]`` (a no-op at the right size)."""
    if image.shape[:2] == tuple(size):
        return image
    out = resize(image, size, order=1, anti_aliasing=True, preserve_range=True)
    return (out + 0.5).astype(np.uint8)


def _resize_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a class map: a class index is never averaged."""
    if labels.shape == tuple(size):
        return labels
    h, w = labels.shape
    rows = np.minimum((np.arange(size[0]) + 0.5) * h / size[0], h - 1).astype(np.int64)
    cols = np.minimum((np.arange(size[1]) + 0.5) * w / size[1], w - 1).astype(np.int64)
    return labels[rows[:, None], cols[None, :]]


def _region_mean(values: np.ndarray, segments: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Mean of ``values`` ``[H, W, K]`` (or ``[H, W]``) over each superpixel: ``[S, K]``.
    ``np.bincount`` does it in one pass per channel, much faster than a Python loop."""
    flat = segments.ravel()
    v = values.reshape(flat.size, -1)
    return np.stack([np.bincount(flat, v[:, k], minlength=count.size) for k in range(v.shape[1])], 1) / count[:, None]


# --------------------------------------------------------------------------- features

def superpixel_features(image, segments: np.ndarray, lab: np.ndarray | None = None) -> np.ndarray:
    """Describe every superpixel of ``image`` (uint8 RGB) with the features of
    :data:`FEATURE_NAMES`: ``float32 [S, F]`` where ``S = segments.max() + 1``.
    ``lab``: the image in CIE Lab if already computed (it is the slowest conversion).

    Why these features:

    - **colour** (mean and spread, in RGB and in CIE Lab): sky is bright and blue-grey,
      trees green, road grey-purple. Lab separates lightness from colour, so a shadow on
      the road changes one feature, not three.
    - **position** (centroid, normalised to [0, 1]): in a street scene *where* says a
      lot: sky is on top, road at the bottom. Spread (std of y and x) and area describe
      the shape: a pole is tall and thin.
    - **texture**: the mean absolute horizontal and vertical gradient (building edges,
      poles and tree leaves differ) and a histogram of local binary patterns (Ojala et
      al. 2002), a classic, cheap texture descriptor.
    - **context**: the Lab colour of a heavily blurred image (the mean over a box of
      :data:`CONTEXT_SIZE` of the image height) at the superpixel, i.e. what surrounds
      it. A grey patch among green is more likely a fence or a wall than a road.
    """
    rgb = _as_hwc_uint8(image)
    h, w = segments.shape
    segments = np.ascontiguousarray(segments, dtype=np.int64)
    count = np.maximum(np.bincount(segments.ravel()), 1).astype(np.float64)
    rgbf = rgb.astype(np.float32) / 255.0
    lab = (rgb2lab(rgbf) if lab is None else lab).astype(np.float32) / np.float32(100.0)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy /= max(h - 1, 1)
    xx /= max(w - 1, 1)
    gray = rgbf.mean(-1)
    gx, gy = np.abs(sobel_v(gray)), np.abs(sobel_h(gray))
    grad = np.hypot(gx, gy)
    lbp = local_binary_pattern((gray * 255).astype(np.uint8), LBP_POINTS, 1, method="uniform").astype(np.int64)
    box = max(3, int(CONTEXT_SIZE * h) | 1)
    context = ndimage.uniform_filter(lab, size=(box, box, 1), mode="nearest")  # a box blur: O(1) per pixel

    stack = np.concatenate([rgbf, lab, yy[..., None], xx[..., None], gx[..., None], gy[..., None],
                            grad[..., None], context], axis=-1)
    means = _region_mean(stack, segments, count)
    squares = _region_mean(np.concatenate([rgbf, lab, yy[..., None], xx[..., None], grad[..., None]], -1) ** 2,
                           segments, count)
    m_rgb, m_lab, m_pos, m_g, m_ctx = means[:, 0:3], means[:, 3:6], means[:, 6:8], means[:, 8:11], means[:, 11:14]
    second = np.concatenate([m_rgb, m_lab, m_pos, m_g[:, 2:3]], 1)
    spread = np.sqrt(np.maximum(squares - second ** 2, 0.0))
    lbp_hist = np.bincount(segments.ravel() * LBP_BINS + lbp.ravel(),
                           minlength=count.size * LBP_BINS).reshape(count.size, LBP_BINS) / count[:, None]
    area = (count / (h * w))[:, None]
    features = np.concatenate([m_rgb, spread[:, 0:3], m_lab, spread[:, 3:6], m_pos, spread[:, 6:8], area,
                               m_g[:, 0:2], spread[:, 8:9], lbp_hist, m_ctx], axis=1)
    return features.astype(np.float32)


def superpixel_targets(segments: np.ndarray, mask, num_classes: int, ignore_index: int | None) -> np.ndarray:
    """The majority label of each superpixel (``int64 [S]``), or -1 where the majority is
    void (such superpixels are left out of training: we do not know what they are).
    ``ignore_index`` is the void label; any value outside ``0..num_classes-1`` counts as void."""
    labels = _as_2d(mask).astype(np.int64)
    k = num_classes + 1
    labels = np.where((labels < 0) | (labels >= num_classes), num_classes, labels)  # void and strays -> k-1
    n = int(segments.max()) + 1
    votes = np.bincount(segments.ravel().astype(np.int64) * k + labels.ravel(), minlength=n * k).reshape(n, k)
    target = votes.argmax(1)
    target[target == num_classes] = -1
    target[votes.sum(1) == 0] = -1
    return target


# --------------------------------------------------------------------------- the CamVid baseline

class SuperpixelBaseline:
    """SLIC superpixels + hand-made features + a random forest.

    >>> baseline = SuperpixelBaseline().fit(train_images, train_masks)   # about a minute on 2 cores
    >>> label_map = baseline.predict(test_image)   # at the image's own size (nearest upsampling)

    Parameters
    ----------
    n_segments, compactness:
        SLIC settings. About 400 superpixels at 180x240 keeps a pole or a pedestrian in
        a few superpixels of its own; higher compactness gives rounder, more regular
        regions, lower follows colour edges more closely.
    work_size:
        Images are resized to this (H, W) before anything else. Superpixels and features
        at quarter resolution are 4x cheaper and lose little: a superpixel is larger than
        a pixel of the full image anyway.
    n_estimators, min_samples_leaf:
        The forest: many deep, randomised trees whose votes are averaged. Forests need
        almost no tuning, train in parallel, and were the classifier of choice in the
        pre-deep-learning street-scene papers.
    max_per_class:
        At most this many training superpixels per class (a random sample). The 367
        CamVid training images give ~150,000 superpixels, three quarters of them road,
        building or sky; capping those keeps training to seconds and loses almost
        nothing, because the rare classes are kept whole.
    class_weight:
        ``"balanced"`` weights each class by the inverse of its number of superpixels, so
        rare classes (pole, sign, cyclist) are not drowned by road and sky; ``None``
        gives every superpixel the same weight (better pixel accuracy, worse mIoU).
    n_jobs:
        Cores for the forest (-1: all).
    """

    def __init__(self, n_segments: int = 400, compactness: float = 10.0, work_size: tuple[int, int] = (180, 240),
                 n_estimators: int = 100, min_samples_leaf: int = 2, max_per_class: int | None = 10_000,
                 class_weight: str | None = "balanced", n_jobs: int = -1, dataset: str | DatasetSpec = CAMVID,
                 random_state: int = 0):
        self.n_segments = n_segments
        self.compactness = compactness
        self.work_size = tuple(work_size)
        self.n_estimators = n_estimators
        self.min_samples_leaf = min_samples_leaf
        self.max_per_class = max_per_class
        self.class_weight = class_weight
        self.n_jobs = n_jobs
        self.spec = get_spec(dataset)
        self.random_state = random_state
        self.classifier = None
        self.timings: dict[str, float] = {}
        self.n_train_superpixels = 0      # used to train the forest (after max_per_class)
        self.n_labelled_superpixels = 0   # found in the training images (void-majority ones skipped)

    # -- the pieces
    def segment(self, image) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Resize ``image`` to ``work_size`` and cut it into SLIC superpixels. Returns the
        resized uint8 RGB image, the same in CIE Lab (SLIC clusters in Lab, where
        distances match perceived colour differences) and the superpixel map ``[h, w]``."""
        rgb = _resize_image(_as_hwc_uint8(image), self.work_size)
        # slic stretches the image to [0, 1] and converts it to Lab itself, so the same
        # compactness works for dark and bright images; pass it RGB, not Lab.
        segments = slic(rgb, n_segments=self.n_segments, compactness=self.compactness, start_label=0,
                        convert2lab=True, enforce_connectivity=True, channel_axis=-1)
        return rgb, rgb2lab(rgb), segments

    def features(self, image) -> tuple[np.ndarray, np.ndarray]:
        """(features ``[S, F]``, superpixel map ``[h, w]`` at ``work_size``) of one image."""
        rgb, lab, segments = self.segment(image)
        return superpixel_features(rgb, segments, lab), segments

    def _training_rows(self, image, mask) -> tuple[np.ndarray, np.ndarray]:
        feats, segments = self.features(image)
        labels = _resize_labels(_as_2d(mask), self.work_size)
        target = superpixel_targets(segments, labels, self.spec.num_classes, self.spec.ignore_index)
        keep = target >= 0
        return feats[keep], target[keep]

    # -- training and prediction
    def fit(self, images: Sequence, masks: Sequence, progress: bool = False) -> "SuperpixelBaseline":
        """Train on image/mask pairs (uint8 RGB ``[3, H, W]`` or ``[H, W, 3]``; class-index
        masks): one row per superpixel, labelled with its majority class; superpixels
        that are mostly void are skipped."""
        from sklearn.ensemble import RandomForestClassifier

        if len(images) != len(masks):
            raise ValueError(f"{len(images)} images but {len(masks)} masks")
        if len(images) == 0:
            raise ValueError("fit needs at least one image")
        start = time.perf_counter()
        iterator = range(len(images))
        if progress:
            from tqdm.auto import tqdm
            iterator = tqdm(iterator, desc="superpixel features", unit="img", leave=False)
        rows = [self._training_rows(images[i], masks[i]) for i in iterator]
        X = np.concatenate([r[0] for r in rows])
        y = np.concatenate([r[1] for r in rows])
        if X.shape[0] == 0:
            raise ValueError("no labelled superpixels: are all masks void?")
        self.timings["features"] = time.perf_counter() - start
        self.n_labelled_superpixels = int(X.shape[0])
        if self.max_per_class is not None:
            rng = np.random.default_rng(self.random_state)
            keep = np.concatenate([rng.permutation(np.flatnonzero(y == c))[: self.max_per_class]
                                   for c in np.unique(y)])
            X, y = X[np.sort(keep)], y[np.sort(keep)]
        start = time.perf_counter()
        self.classifier = RandomForestClassifier(
            n_estimators=self.n_estimators, min_samples_leaf=self.min_samples_leaf, max_features="sqrt",
            class_weight=self.class_weight, n_jobs=self.n_jobs, random_state=self.random_state)
        self.classifier.fit(X, y)
        self.timings["classifier"] = time.perf_counter() - start
        self.n_train_superpixels = int(X.shape[0])
        return self

    def _check_fitted(self) -> None:
        if self.classifier is None:
            raise RuntimeError("the baseline is not trained yet: call .fit(images, masks) first")

    def predict(self, image, size: tuple[int, int] | None = None) -> np.ndarray:
        """A class-index map (uint8) for one image, at ``size`` (default: the image's own
        size). The map is predicted at ``work_size`` and upsampled with nearest neighbour,
        so it can be scored pixel for pixel against a full-resolution label."""
        self._check_fitted()
        rgb = _as_hwc_uint8(image)
        size = tuple(size) if size is not None else rgb.shape[:2]
        feats, segments = self.features(rgb)
        classes = self.classifier.predict(feats).astype(np.uint8)
        return _resize_labels(classes[segments], size)

    def predict_many(self, images: Sequence, size: tuple[int, int] | None = None,
                     progress: bool = False) -> np.ndarray:
        """:meth:`predict` for a batch: uint8 ``[N, H, W]``."""
        iterator = range(len(images))
        if progress:
            from tqdm.auto import tqdm
            iterator = tqdm(iterator, desc="superpixel baseline", unit="img", leave=False)
        return np.stack([self.predict(images[i], size) for i in iterator])

    def __repr__(self) -> str:
        state = (f"trained on {self.n_train_superpixels} of {self.n_labelled_superpixels} labelled superpixels"
                 if self.classifier is not None else "not trained")
        return (f"SuperpixelBaseline(n_segments={self.n_segments}, compactness={self.compactness}, "
                f"work_size={self.work_size}, {len(FEATURE_NAMES)} features, "
                f"RandomForest(n_estimators={self.n_estimators}), class_weight={self.class_weight!r}; {state})")


# --------------------------------------------------------------------------- the ISBI EM baseline

def remove_small_components(mask: np.ndarray, min_size: int) -> np.ndarray:
    """Drop the connected components (8-connected) of a boolean mask smaller than
    ``min_size`` pixels: specks of noise, not membranes."""
    if min_size <= 1:
        return mask
    components, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if n == 0:
        return mask
    sizes = np.bincount(components.ravel())
    keep = sizes >= min_size
    keep[0] = False
    return keep[components]


def threshold_baseline(image, method: str = "otsu", sigma: float = 1.0, block_size: int = 51,
                       offset: float = 0.08, closing_radius: int = 1, min_size: int = 300) -> np.ndarray:
    """Membranes by thresholding: a 0/1 map (uint8, 1 = membrane) of a grayscale EM image.

    Membranes are the dark lines between cells, so "dark" is already a decent detector:

    1. **smooth** with a Gaussian (``sigma`` pixels; 0 to skip): EM images are grainy,
       and single noisy pixels would otherwise flip across the threshold;
    2. **threshold**: ``"otsu"`` picks one global level that best splits the histogram
       into two groups (Otsu 1979); ``"adaptive"`` compares each pixel with the mean of
       its ``block_size`` x ``block_size`` neighbourhood (minus ``offset``, in units of
       the image scaled to [0, 1]), which copes with uneven illumination across the
       section. Pixels *below* the threshold are membrane;
    3. **close** with a disk of ``closing_radius`` (0 to skip): reconnects membranes
       broken by a bright pixel or two (closing = dilation then erosion);
    4. **remove small components** under ``min_size`` pixels: isolated dark specks
       (vesicles, noise) are not membranes, which form a long connected network.

    The defaults were chosen on the 20 ISBI training sections (never the test ones):
    on them ``"adaptive"`` beats ``"otsu"``, an ``offset`` near 0.08 keeps the grey
    cytoplasm out, and ``min_size=300`` drops most dark organelles.

    What it cannot do: tell a membrane from a mitochondrion or another dark organelle
    inside a cell. That needs shape and context, which is what a U-Net learns.
    """
    x = _as_2d(image)
    if x.ndim != 2:
        raise ValueError(f"threshold_baseline needs a grayscale image [H, W], got shape {x.shape}")
    x = x.astype(np.float32)
    if x.max() > 1.0:
        x = x / 255.0
    if sigma > 0:
        x = gaussian(x, sigma=sigma)
    if method == "otsu":
        membrane = x < threshold_otsu(x)
    elif method == "adaptive":
        if block_size % 2 == 0 or block_size < 3:
            raise ValueError(f"block_size must be an odd number >= 3 (got {block_size})")
        membrane = x < threshold_local(x, block_size, method="mean", offset=offset)
    else:
        raise ValueError(f"method must be 'otsu' or 'adaptive' (got {method!r})")
    if closing_radius > 0:
        r = closing_radius
        disk = (np.add.outer(np.arange(-r, r + 1) ** 2, np.arange(-r, r + 1) ** 2) <= r * r)
        padded = np.pad(membrane, r, mode="edge")   # so the image border is not eroded away
        membrane = ndimage.binary_closing(padded, structure=disk)[r:-r, r:-r]
    membrane = remove_small_components(membrane, min_size)
    return membrane.astype(np.uint8)


__all__ = ["FEATURE_NAMES", "SuperpixelBaseline", "remove_small_components", "superpixel_features",
           "superpixel_targets", "threshold_baseline"]
