"""Exceptions with messages a learner can act on.

Every error seglab raises on bad input names the file or option at fault and says how to
fix it. The command line prints these as one line (no traceback) and exits non-zero.
"""


class SeglabError(Exception):
    """Base class: a problem with the user's input, data or files, not a bug in seglab."""


class DataError(SeglabError):
    """A data folder or data file is missing, incomplete or not what it should be."""


class DownloadError(SeglabError):
    """A download failed; whatever was fetched and verified so far is kept."""


class CheckpointError(SeglabError):
    """A checkpoint file is missing, damaged, unsafe, or belongs to another model."""


class TrainingError(SeglabError):
    """Training cannot go on (for example the loss became NaN)."""
