"""Import a script from a folder that is not a package (benchmarks/, classroom/) as a
module, for the tests of those scripts."""
import importlib.util
from pathlib import Path


def load_script(path: Path, name: str | None = None):
    """The module of the script at ``path``, named ``name`` (default: the file's stem)."""
    spec = importlib.util.spec_from_file_location(name or path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
