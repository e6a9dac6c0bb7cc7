"""seglab: the helper package of a hands-on course in semantic segmentation.

The notebooks import from here instead of hiding long logic in cells. One job per module:

- ``datasets``   what each data set is (classes, colours, folders, source)
- ``data``       finding, checking, decoding and caching the files; the Dataset class
- ``download``   verified, resumable downloads and imports of local copies
- ``transforms`` joint image/mask augmentation and evaluation transforms
- ``models``     the U-Net
- ``losses``     cross-entropy, Dice, class weights
- ``metrics``    confusion matrix, IoU, pixel accuracy, Dice
- ``engine``     training (fit), evaluation, prediction, learning-rate range test
- ``checkpoint`` safe, atomic checkpoints; the shipped pretrained model
- ``hardware``   device and CPU class; the fastest correct settings per machine
- ``predict``    prediction for files on disk, overlap-tile prediction
- ``baselines``  traditional (non-deep) baselines: superpixels + classifier, thresholding
- ``analysis``   failure analysis: per-image scores, object-size recall, confusions
- ``course``     the notebooks' plumbing (Colab badge and bootstrap, re-execution)
- ``viz`` / ``widgets``  plots and ipywidgets viewers
- ``cli``        the ``seglab`` command
"""
from ._version import __version__
from .checkpoint import load_checkpoint, load_model, load_pretrained
from .data import CamVid, ISBIEM, SegmentationDataset, quick_mode, resolve_root
from .download import download, download_camvid, download_isbi_em
from .datasets import CAMVID, ISBI_EM, DatasetSpec, get_spec
from .engine import TrainConfig, evaluate, evaluate_checkpoint, fit, predict_logits, set_seed
from .errors import CheckpointError, DataError, DownloadError, SeglabError, TrainingError
from .metrics import ConfusionMatrix
from .models import UNet, count_parameters


__all__ = [
    "__version__", "CAMVID", "ISBI_EM", "CamVid", "ISBIEM", "CheckpointError", "ConfusionMatrix", "DataError",
    "DatasetSpec", "DownloadError", "SeglabError", "SegmentationDataset", "TrainConfig", "TrainingError", "UNet",
    "count_parameters", "download", "download_camvid", "download_isbi_em", "evaluate", "evaluate_checkpoint", "fit", "get_spec",
    "load_checkpoint", "load_model", "load_pretrained", "predict_logits", "quick_mode", "resolve_root", "set_seed",
]
