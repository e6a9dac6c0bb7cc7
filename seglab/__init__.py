"""seglab: the helper package of a hands-on course in semantic segmentation.

The notebooks import from here instead of hiding long logic in cells. One job per module:

- ``datasets``   what each data set is (classes, colours, folders, source)
- ``data``       finding, checking, decoding and caching the files; the Dataset class
- ``download``   verified, resumable downloads and imports of local copies
- ``transforms`` joint image/mask augmentation and evaluation transforms
- ``models``     the U-Net
- ``losses``     cross-entropy, Dice, class weights
- ``metrics``    confusion matrix, IoU, pixel accuracy, Dice
- ``config``     TrainConfig: every training option, once (the CLI's flags are built from it)
- ``train``      train_step and fit, the training loop
- ``budget``     sizing a run to a wall-clock budget
- ``batches``    the batch order and seeded augmentation of each epoch
- ``optim`` / ``lr_finder``  optimisers, the learning-rate schedule, the range test
- ``inference``  predicting with a model; LoadedModel, a checkpoint ready to predict
- ``evaluate``   scoring a model or a checkpoint on a split
- ``distributed`` torchrun: sums and agreements across processes
- ``checkpoint`` safe, atomic checkpoints and what they hold; the shipped pretrained model
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
from .config import TrainConfig
from .evaluate import evaluate, evaluate_checkpoint
from .inference import LoadedModel, predict_logits
from .train import fit, set_seed, train_step
from .errors import CheckpointError, DataError, DownloadError, SeglabError, TrainingError
from .metrics import ConfusionMatrix
from .models import UNet, count_parameters


__all__ = [
    "__version__", "CAMVID", "ISBI_EM", "CamVid", "ISBIEM", "CheckpointError", "ConfusionMatrix", "DataError",
    "DatasetSpec", "DownloadError", "LoadedModel", "SeglabError", "SegmentationDataset", "TrainConfig", "TrainingError", "UNet",
    "count_parameters", "download", "download_camvid", "download_isbi_em", "evaluate", "evaluate_checkpoint", "fit", "get_spec",
    "load_checkpoint", "load_model", "load_pretrained", "predict_logits", "quick_mode", "resolve_root", "set_seed", "train_step",
]
