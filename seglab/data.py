"""Finding, checking, decoding and caching a folder-based segmentation data set.

The pipeline, in the order a batch travels:

1. :func:`resolve_root` finds the data folder (argument, else an environment variable,
   else ``data/<name>`` in the repository) and checks that it is complete.
2. :func:`list_pairs` matches each image with its label file, split by split.
3. :func:`load_split` decodes every PNG once, checks it, resizes it, and keeps the result
   as uint8 tensors in a cache file. Decoding PNGs every epoch is what makes a naive
   loader slow on a laptop; the cache is rebuilt by itself when a source file changes.
4. :class:`SegmentationDataset` serves ``(tv_tensors.Image, tv_tensors.Mask)`` pairs from
   memory, so ``torchvision.transforms.v2`` applies the same geometry to both.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as TF

from .datasets import CAMVID, DatasetSpec, check_root, default_root, get_spec, repo_root, resolve_root  # noqa: F401 (re-exported)
from .errors import DataError
from .images import ImageRefused, read_image_file

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
CACHE_VERSION = 2  # 2: masks resized with centred nearest neighbour (resize_mask)


def list_pairs(dataset: str | DatasetSpec, root: Path, split: str) -> list[tuple[Path, Path]]:
    """Match every image of ``split`` with its label file (same file name).

    A split file (CamVid's ``train.txt``) is the truth: a pair it lists that is incomplete
    is an error naming the file; a pair in the folder that it does not list is left out
    with a one-line notice (a copied validation image must not leak into training); a
    missing or empty split file is an error. Without split files, an image without a
    label, or a label without an image, is an error that names the file: silently
    dropping it would change the data set without telling anyone.
    """
    spec = get_spec(dataset)
    if split not in spec.layout:
        raise DataError(f"unknown split {split!r} for {spec.name}: choose one of {', '.join(spec.splits)}")
    root = Path(root)
    image_dir, label_dir = (root / d for d in spec.layout[split])
    if spec.split_members is not None:
        names = list(spec.split_members[split])
        for name in names:
            for folder, kind in ((image_dir, "image"), (label_dir, "label")):
                if not (folder / name).is_file():
                    raise DataError(f"the {split} split of {spec.name} lists {name}, but the {kind} "
                                    f"file {folder / name} is missing. Re-run `{spec.download_command} "
                                    f"--root {root}` to fetch missing files.")
    else:
        images = {p.name for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
        labels = {p.name for p in label_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
        if f"{split}.txt" in spec.split_files:
            listed = _read_split_file(spec, root, split)
            _notice_unlisted(root / f"{split}.txt", image_dir, (images | labels) - set(listed), split)
            images, labels = images & set(listed), labels & set(listed)
            missing = [(line, n) for n, line in listed.items() if n not in images and n not in labels]
            if missing:
                line, name = missing[0]
                raise DataError(f"{root / f'{split}.txt'}, line {line}, lists {name}, but {image_dir / name} "
                                f"is missing. Re-run `{spec.download_command} --root {root}` to fetch missing files.")
        if images - labels:
            name = sorted(images - labels)[0]
            raise DataError(f"image {image_dir / name} has no label: expected {label_dir / name} "
                            f"({len(images - labels)} image(s) without a label). Re-run "
                            f"`{spec.download_command} --root {root}` or remove the stray image.")
        if labels - images:
            name = sorted(labels - images)[0]
            raise DataError(f"label {label_dir / name} has no image: expected {image_dir / name} "
                            f"({len(labels - images)} label(s) without an image). Re-run "
                            f"`{spec.download_command} --root {root}` or remove the stray label.")
        names = sorted(images)
    return [(image_dir / n, label_dir / n) for n in names]


def _read_split_file(spec: DatasetSpec, root: Path, split: str) -> dict[str, int]:
    """The file names a split file lists (``/SegNet/CamVid/train/x.png ...`` per line, the
    image's name taken), each with its line number; a missing or empty file is an error."""
    split_file = root / f"{split}.txt"
    restore = (f"Re-run `{spec.download_command} --root {root} --overwrite`, which restores the "
               f"published file.")
    try:
        text = split_file.read_text()
    except FileNotFoundError:
        raise DataError(f"split file {split_file} is missing: it lists the images of the {split} split. "
                        f"Re-run `{spec.download_command} --root {root}`, which fetches it.") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"split file {split_file} cannot be read ({err}). {restore}") from None
    listed: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if parts:
            listed.setdefault(Path(parts[0]).name, lineno)
    if not listed:
        raise DataError(f"split file {split_file} lists no images, so the {split} split would be empty. "
                        f"{restore}")
    return listed


_NOTICED: set[tuple[str, int]] = set()


def _notice_unlisted(split_file: Path, image_dir: Path, unlisted: set[str], split: str) -> None:
    """One line on stderr (once per process and folder state) for files a split file leaves out."""
    if not unlisted or (str(split_file), len(unlisted)) in _NOTICED:
        return
    _NOTICED.add((str(split_file), len(unlisted)))
    print(f"seglab: {len(unlisted)} file(s) in {image_dir} or its labels are not listed in {split_file} "
          f"and are left out of the {split} split (first: {sorted(unlisted)[0]})", file=sys.stderr)


# --------------------------------------------------------------------------- reading files

def _open(path: Path, kind: str, spec: DatasetSpec = CAMVID) -> Image.Image:
    """Open and fully decode ``path``; a missing, truncated or non-image file becomes a
    :class:`DataError` that names it and the download command that replaces it."""
    fix = f"Delete it and re-run `{spec.download_command}`, which fetches it again."
    try:
        im = Image.open(path)
        im.load()
        return im
    except FileNotFoundError:
        raise DataError(f"{kind} file {path} does not exist. Re-run `{spec.download_command}` "
                        f"to fetch missing files.") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(f"{kind} file {path} is not a readable image ({err}); it is truncated or "
                        f"not an image. {fix}") from None


def read_image(path: str | os.PathLike, dataset: str | DatasetSpec = CAMVID) -> torch.Tensor:
    """Decode an image file to a uint8 tensor ``[C, H, W]`` with the spec's channel count,
    each Pillow mode as :mod:`seglab.images` declares (16-bit scaled, alpha dropped, ...)."""
    spec = get_spec(dataset)
    path = Path(path)
    if not path.exists():
        raise DataError(f"image file {path} does not exist. Re-run `{spec.download_command}` "
                        f"to fetch missing files.")
    try:
        array = read_image_file(path, spec.in_channels)
    except ImageRefused as err:
        raise DataError(f"image file {path}: {err}; it is truncated, not an image, or not a kind seglab "
                        f"reads. Delete it and re-run `{spec.download_command}`, which fetches it again.") from None
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def read_label(path: str | os.PathLike, dataset: str | DatasetSpec = CAMVID) -> torch.Tensor:
    """Decode a label file to a uint8 class-index tensor ``[H, W]``.

    Labels must be 8-bit index maps (PNG mode L or P). A colour-coded RGB label is
    detected and reported with the fix, instead of failing later with "Target 192 is
    out of bounds" inside the loss.
    """
    spec = get_spec(dataset)
    path = Path(path)
    im = _open(path, "label", spec)
    if im.mode in ("RGB", "RGBA"):
        array = np.asarray(im.convert("RGB"))
        if not (np.array_equal(array[..., 0], array[..., 1]) and np.array_equal(array[..., 0], array[..., 2])):
            raise DataError(f"label file {path} is a colour-coded RGB image, but seglab expects an 8-bit "
                            f"index map (one class number per pixel, PNG mode L). Convert it with "
                            f"seglab.data.rgb_to_index(image, palette) and save it as mode L.")
        array = array[..., 0]
    elif im.mode in ("L", "P"):
        array = np.array(im)
    elif im.mode in ("I", "I;16", "I;16B", "I;16L"):
        array = np.asarray(im).astype(np.int64)
        if array.max() > 255:
            raise DataError(f"label file {path} holds values up to {array.max()}; seglab expects "
                            f"8-bit class indices 0-{_max_label(spec)}. Save it as an 8-bit PNG (mode L).")
        array = array.astype(np.uint8)
    else:
        raise DataError(f"label file {path} has PNG mode {im.mode}; seglab expects an 8-bit index map "
                        f"(mode L). Save it as an 8-bit grayscale PNG of class numbers.")
    if spec.label_lut is not None:
        array = np.asarray(spec.label_lut, dtype=np.uint8)[array]
    else:
        top = int(array.max())
        if top > _max_label(spec):
            bad = sorted(int(v) for v in np.unique(array) if v > _max_label(spec))
            raise DataError(f"label file {path} has value(s) {bad[:8]} outside 0-{_max_label(spec)} "
                            f"({spec.num_classes} classes{' plus void ' + str(spec.ignore_index) if spec.ignore_index is not None else ''}). "
                            f"It is probably a grey-level or colour rendering, not a class-index map; "
                            f"re-create it with one class number per pixel.")
    return torch.from_numpy(np.array(array, dtype=np.uint8))


def _max_label(spec: DatasetSpec) -> int:
    return spec.ignore_index if spec.ignore_index is not None else spec.num_classes - 1


def rgb_to_index(image: np.ndarray, palette, unknown: int = 255) -> np.ndarray:
    """Convert a colour-coded label ``[H, W, 3]`` into class indices with ``palette``
    (a list of RGB triples, index = class). Colours not in the palette become ``unknown``."""
    image = np.asarray(image)[..., :3].astype(np.int32)
    codes = (image[..., 0] << 16) | (image[..., 1] << 8) | image[..., 2]
    out = np.full(codes.shape, unknown, dtype=np.uint8)
    for index, (r, g, b) in enumerate(palette):
        out[codes == ((r << 16) | (g << 8) | b)] = index
    return out


# --------------------------------------------------------------------------- decoded cache

def cache_dir() -> Path:
    """Where decoded caches go: ``$SEGLAB_CACHE``, else the user cache folder
    (``$XDG_CACHE_HOME/seglab`` or ``~/.cache/seglab``); never next to the data, which may
    be read-only."""
    if os.environ.get("SEGLAB_CACHE"):
        return Path(os.environ["SEGLAB_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or (Path.home() / ".cache")
    return Path(base) / "seglab"


@dataclass
class DecodedSplit:
    """One split decoded into memory: ``images`` uint8 ``[N, C, H, W]``, ``masks`` uint8
    ``[N, H, W]`` (class indices), and the file names in the same order."""

    images: torch.Tensor
    masks: torch.Tensor
    names: list[str]


def _fingerprint(pairs: list[tuple[Path, Path]], size, spec: DatasetSpec) -> str:
    h = hashlib.sha1(f"v{CACHE_VERSION}|{spec.name}|{size}|{spec.label_lut}".encode())
    for image, label in pairs:
        for p in (image, label):
            st = p.stat()
            h.update(f"{p.name}|{st.st_size}|{st.st_mtime_ns};".encode())
    return h.hexdigest()[:16]


def resize_mask(mask: torch.Tensor, size: tuple[int, int] | list[int]) -> torch.Tensor:
    """A class map ``[..., H, W]`` resized to ``size`` with nearest neighbour, *centred*:
    each output pixel takes the label of the source pixel nearest to its centre, the same
    grid on which bilinear resizing places the image, so the mask stays on the objects.

    Plain ``"nearest"`` (``F.interpolate``'s default, and torchvision's for masks) takes
    source pixel ``floor(i * in / out)`` instead: the mask lands about half a pixel (of the
    new size) down and to the right of its image. Shrinking 360x480 to 240x320 and then scaling
    for augmentation, that was about one pixel of the training resolution, and a model
    trained on such masks predicted its classes a pixel too low (``benchmarks/mask_alignment.py``;
    the runs: ``benchmarks/RESULTS.md``).
    At exactly half (or a third) of the size no source pixel sits at an output pixel's
    centre, and either choice is a quarter of an output pixel off: there centred nearest
    is as good as any single-pixel choice. (A majority vote over each pixel's footprint
    would be centred there too, but it erases poles thinner than a pixel, which a sample
    keeps in proportion to their width.)"""
    mask = torch.as_tensor(mask).as_subclass(torch.Tensor)
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask
    lead = mask.shape[:-2]
    flat = mask.reshape(1, -1, *mask.shape[-2:])
    dtype = flat.dtype
    if dtype not in (torch.uint8, torch.float32, torch.float64):  # interpolate's nearest modes take these
        flat = flat.float()
    out = torch.nn.functional.interpolate(flat, size=list(size), mode="nearest-exact")
    return out.to(dtype).reshape(*lead, *size)


def decode_pairs(pairs: list[tuple[Path, Path]], dataset: str | DatasetSpec,
                 size: tuple[int, int] | None = None, progress: bool = False) -> DecodedSplit:
    """Decode, check and (optionally) resize image/label pairs. Images are resized with
    antialiased bilinear interpolation, masks with centred nearest neighbour (a class index
    must never be averaged with its neighbour; see :func:`resize_mask`)."""
    spec = get_spec(dataset)
    images, masks = [], []
    iterator = pairs
    if progress:
        from tqdm.auto import tqdm
        iterator = tqdm(pairs, desc=f"decoding {spec.name}", unit="img", leave=False)
    for image_path, label_path in iterator:
        image = read_image(image_path, spec)
        mask = read_label(label_path, spec)
        if image.shape[-2:] != mask.shape[-2:]:
            raise DataError(f"image {image_path} is {tuple(image.shape[-2:])} (HxW) but its label "
                            f"{label_path} is {tuple(mask.shape[-2:])}; they must be the same size. "
                            f"Re-download the pair or resize the label with nearest neighbour.")
        if size is not None and tuple(image.shape[-2:]) != tuple(size):
            image = TF.resize(image, list(size), antialias=True)
            mask = resize_mask(mask, size)
        images.append(image)
        masks.append(mask)
    shapes = {tuple(m.shape) for m in masks}
    if len(shapes) > 1:
        raise DataError(f"the images of this split have different sizes {sorted(shapes)[:3]}; "
                        f"pass size=(H, W) to resize them all to one size.")
    return DecodedSplit(torch.stack(images), torch.stack(masks), [p[0].name for p in pairs])


def _cache_path(spec: DatasetSpec, root: Path, split: str, size, pairs) -> Path:
    """``<cache>/<name>/<split>-<HxW>-<folder id>-<fingerprint>.pt``: one cache per data
    folder, so a synthetic test tree and the real data never evict each other."""
    tag = f"{size[0]}x{size[1]}" if size else "native"
    folder_id = hashlib.sha1(str(Path(root).resolve()).encode()).hexdigest()[:6]
    return cache_dir() / spec.name / f"{split}-{tag}-{folder_id}-{_fingerprint(pairs, size, spec)}.pt"


def load_split(dataset: str | DatasetSpec, root: str | os.PathLike | None, split: str,
               size: tuple[int, int] | None = None, use_cache: bool = True,
               progress: bool = True) -> DecodedSplit:
    """Decode one split once and keep it in a cache file; later calls load the cache
    (a few hundred ms instead of tens of seconds). The cache key covers every file's
    name, size and modification time, so an edited or re-downloaded file rebuilds it."""
    spec = get_spec(dataset)
    root = resolve_root(spec, root)
    pairs = list_pairs(spec, root, split)
    size = tuple(size) if size is not None else None
    if not use_cache:
        return decode_pairs(pairs, spec, size, progress)
    path = _cache_path(spec, root, split, size, pairs)
    folder, tag = path.parent, path.name.rsplit("-", 1)[0]
    if path.is_file():
        try:
            blob = torch.load(path, weights_only=True)
            cached = DecodedSplit(blob["images"], blob["masks"], list(blob["names"]))
            # A file that loads but does not hold this split (cut short, edited) is damaged too.
            if (cached.names == [p[0].name for p in pairs] and cached.images.dtype == torch.uint8
                    and cached.masks.dtype == torch.uint8 and len(cached.images) == len(cached.masks) == len(pairs)):
                return cached
        except Exception:  # a damaged cache is rebuilt, never trusted
            pass
        path.unlink(missing_ok=True)
    decoded = decode_pairs(pairs, spec, size, progress)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob(f"{tag}-*.pt"):
            stale.unlink(missing_ok=True)
        torch.save({"images": decoded.images, "masks": decoded.masks, "names": decoded.names}, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:  # a read-only or full cache folder only costs speed
        print(f"seglab: could not write the decoded cache to {folder} ({err}); "
              f"set SEGLAB_CACHE to a writable folder to make later runs faster.", file=sys.stderr)
    finally:
        try:  # never leave a half-written cache file behind
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
    return decoded


# --------------------------------------------------------------------------- dataset

def quick_mode() -> bool:
    """True when ``SEGLAB_QUICK=1``: notebooks and commands use small subsets and few steps."""
    return os.environ.get("SEGLAB_QUICK", "0").strip().lower() not in ("", "0", "false", "no")


def _subset_indices(n: int, k: int | None) -> list[int]:
    """``k`` indices spread evenly over ``range(n)`` (deterministic), or all of them."""
    if k is None or k >= n:
        return list(range(n))
    return [round(i * (n - 1) / max(k - 1, 1)) for i in range(k)] if k > 1 else [0]


class SegmentationDataset(Dataset):
    """Image/mask pairs of one split, decoded once and served from memory.

    ``dataset[i]`` returns ``(tv_tensors.Image, tv_tensors.Mask)``: uint8 ``[C, H, W]`` and
    class indices ``[H, W]`` before ``transform``; whatever ``transform`` returns after
    (see :mod:`seglab.transforms`). ``size=(H, W)`` resizes every pair once, in the cache.
    ``subset=k`` keeps ``k`` pairs spread over the split (quick mode, tests).
    """

    def __init__(self, dataset: str | DatasetSpec = CAMVID, root: str | os.PathLike | None = None,
                 split: str = "train", size: tuple[int, int] | None = None, transform=None,
                 subset: int | None = None, use_cache: bool = True, progress: bool = True):
        self.spec = get_spec(dataset)
        self.root = resolve_root(self.spec, root)
        self.split = split
        size = tuple(size) if size is not None else None
        pairs = list_pairs(self.spec, self.root, split) if subset is not None else None
        if pairs is not None and (not use_cache or not _cache_path(self.spec, self.root, split, size, pairs).is_file()):
            # no cache yet: decode only the pairs we keep (quick mode stays quick on a cold cache)
            chosen = _subset_indices(len(pairs), subset)
            decoded = decode_pairs([pairs[i] for i in chosen], self.spec, size, progress)
            keep = list(range(len(chosen)))
        else:
            decoded = load_split(self.spec, self.root, split, size, use_cache=use_cache, progress=progress)
            keep = _subset_indices(len(decoded.names), subset)
        self.size = tuple(decoded.images.shape[-2:])
        self.images = decoded.images[keep]
        self.masks = decoded.masks[keep]
        self.names = [decoded.names[i] for i in keep]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int):
        image = tv_tensors.Image(self.images[index])
        mask = tv_tensors.Mask(self.masks[index])
        if self.transform is not None:
            image, mask = self.transform(image, mask)
        return image, mask

    def __repr__(self) -> str:
        h, w = self.size
        return (f"SegmentationDataset({self.spec.name}, split={self.split!r}, {len(self)} pairs, "
                f"{h}x{w}, {self.spec.num_classes} classes, root={str(self.root)!r})")


def CamVid(root=None, split: str = "train", size=None, transform=None, subset=None, **kw) -> SegmentationDataset:
    """CamVid (11 classes + void, 360x480 native): a :class:`SegmentationDataset`."""
    return SegmentationDataset("camvid", root, split, size, transform, subset, **kw)


def ISBIEM(root=None, split: str = "train", size=None, transform=None, subset=None, **kw) -> SegmentationDataset:
    """ISBI 2012 EM membranes (2 classes, 1 channel, 512x512 native)."""
    return SegmentationDataset("isbi-em", root, split, size, transform, subset, **kw)


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, workers: int | None = None,
                drop_last: bool = False, seed: int = 0, sampler=None, batches=None) -> DataLoader:
    """A DataLoader with safe defaults: 0 workers inside Jupyter (workers crash there on
    Windows and macOS, and the in-memory cache makes them unnecessary), else up to 2.
    ``batches``: the sample indices of every batch, in order (then ``batch_size``,
    ``shuffle``, ``sampler`` and ``drop_last`` do not apply); ``fit`` passes its own."""
    if workers is None:
        cores = os.cpu_count() or 1
        workers = 0 if ("ipykernel" in sys.modules or cores <= 2) else min(4, cores // 2)
    generator = torch.Generator().manual_seed(seed)
    if batches is not None:
        return DataLoader(dataset, batch_sampler=batches, num_workers=max(workers, 0), generator=generator)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle and sampler is None,
                      sampler=sampler, num_workers=max(workers, 0), drop_last=drop_last,
                      generator=generator, persistent_workers=workers > 0)


def channel_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images ``[N, C, H, W]`` in [0, 1]."""
    x = images.float().div_(255)
    return x.mean(dim=(0, 2, 3)).tolist(), x.std(dim=(0, 2, 3)).tolist()
