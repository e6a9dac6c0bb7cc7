"""seglab: the helper package of a hands-on course in semantic segmentation.

The notebooks import from here instead of hiding long logic in cells. One job per module:

- ``datasets``   what each data set is (classes, colours, folders, source)
- ``data``       finding, checking, decoding and caching the files; the Dataset class
- ``download``   verified, resumable downloads (pooch) and imports of local copies;
                 its parts: ``manifest``, ``fetch``, ``safe_files``, ``archives``
- ``transforms`` joint image/mask augmentation and evaluation transforms
- ``models``     the U-Net
- ``losses``     cross-entropy, Dice, class weights
- ``metrics``    confusion matrix, IoU, pixel accuracy, Dice
- ``config``     TrainConfig: every training option, once (the CLI's flags are built from it)
- ``train``      train_step and fit, the training loop
- ``budget``     sizing a run to a wall-clock budget
- ``batches``    the batch order and seeded augmentation of each epoch
- ``optim`` / ``lr_finder``  optimisers, the learning-rate schedule, the range test
- ``verdict``    the rule that decides between settings from repeated seeds (notebook 04)
- ``inference``  predicting with a model; LoadedModel, a checkpoint ready to predict
- ``evaluation`` scoring a model or a checkpoint on a split
- ``distributed`` torchrun: sums and agreements across processes
- ``checkpoint`` safe, atomic checkpoints and what they hold; the shipped pretrained model
- ``hardware``   device and CPU class; the fastest correct settings per machine
- ``predict``    prediction for files on disk, overlap-tile prediction
- ``baselines``  traditional (non-deep) baselines: superpixels + classifier, thresholding
- ``analysis``   failure analysis: per-image scores, object-size recall, confusions
- ``course``     the notebooks' plumbing (Colab badge and bootstrap, re-execution)
- ``render``     pictures as NumPy arrays (class colours, overlays, error maps)
- ``viz`` / ``figures`` / ``curves`` / ``widgets``  plots, their style, curves, ipywidgets viewers
- ``cli``        the ``seglab`` command
"""
import importlib
import importlib.util

from ._version import __version__
from .datasets import CAMVID, ISBI_EM, DatasetSpec, get_spec, resolve_root
from .download import download, download_camvid, download_isbi_em
from .errors import CheckpointError, DataError, DownloadError, SeglabError, TrainingError

# The names below need torch: they are imported on first use (PEP 562), so that
# `import seglab.download` (or the data-set specs) does not pay for torch.
_LAZY = {
    "load_checkpoint": "checkpoint", "load_model": "checkpoint", "load_pretrained": "checkpoint",
    "CamVid": "data", "ISBIEM": "data", "SegmentationDataset": "data", "quick_mode": "data",
    "TrainConfig": "config", "evaluate": "evaluation", "evaluate_checkpoint": "evaluation",
    "fit": "train", "set_seed": "train", "train_step": "train",
    "LoadedModel": "inference", "predict_logits": "inference",
    "ConfusionMatrix": "metrics",
    "UNet": "models", "count_parameters": "models",
}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    elif importlib.util.find_spec(f"{__name__}.{name}") is not None:  # a submodule: seglab.data
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

__all__ = [
    "__version__", "CAMVID", "ISBI_EM", "CamVid", "ISBIEM", "CheckpointError", "ConfusionMatrix", "DataError",
    "DatasetSpec", "DownloadError", "LoadedModel", "SeglabError", "SegmentationDataset", "TrainConfig", "TrainingError", "UNet",
    "count_parameters", "download", "download_camvid", "download_isbi_em", "evaluate", "evaluate_checkpoint", "fit", "get_spec",
    "load_checkpoint", "load_model", "load_pretrained", "predict_logits", "quick_mode", "resolve_root", "set_seed", "train_step",
]
