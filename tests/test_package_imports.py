"""The package's public names load lazily: the torch-free parts import without torch."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_importing_the_download_module_does_not_import_torch():
    code = ("import sys, seglab.download, seglab.datasets; "
            "assert 'torch' not in sys.modules, 'seglab.download imported torch'")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)


def test_public_names_still_work_after_lazy_loading():
    import seglab
    import seglab.data
    import seglab.datasets
    assert seglab.data.resolve_root is seglab.datasets.resolve_root is seglab.resolve_root
    assert callable(seglab.download) and callable(seglab.fit) and callable(seglab.CamVid)
    assert set(seglab.__all__) <= set(dir(seglab))
    for name in seglab.__all__:
        assert getattr(seglab, name) is not None
