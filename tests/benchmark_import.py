"""Import a script from benchmarks/ as a module (that folder is not a package), for the
tests of the benchmark scripts."""
import importlib.util
from pathlib import Path


def load_benchmark(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
