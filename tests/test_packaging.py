"""The install lists agree, and the package ships what it needs."""
import re
from pathlib import Path

import pytest

import seglab

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"torch": "pytorch"}  # PyPI name -> conda-forge name


def _split(requirement: str) -> tuple[str, str]:
    name, spec = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", requirement.strip()).groups()
    return name.lower(), spec.replace(" ", "")


def test_environment_yml_lists_the_same_packages_and_ranges_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = project["dependencies"] + extras["course"] + extras["test"] + extras["docs"]
    expected = {CONDA_NAMES.get(n, n): s for n, s in map(_split, wanted)}
    conda = {}
    text = (ROOT / "environment.yml").read_text()
    for line in text.split("dependencies:", 1)[1].splitlines():
        # a conda package ("  - name spec") or one pip installs ("      - name spec  # why")
        m = re.match(r"^(?:  |      )- ([A-Za-z][A-Za-z0-9_.\-]*)\s*([<>=!~][^#]*)?(?:#.*)?$", line)
        if m and m.group(1) not in ("python", "pip"):
            conda[m.group(1).lower()] = (m.group(2) or "").replace(" ", "")
    assert conda == expected


def test_the_package_ships_its_data_manifests():
    manifests = Path(seglab.__file__).parent / "manifests"
    assert (manifests / "camvid.json").is_file() and (manifests / "isbi-em.json").is_file()


def test_pyproject_keeps_torch_ranges_loose_so_colab_keeps_its_own_torch():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    torch_req = [r for r in project["dependencies"] if r.startswith("torch")]
    assert torch_req and all("==" not in r for r in torch_req)


def _colab_versions() -> dict[str, str]:
    lines = (ROOT / "tests" / "colab" / "constraints.txt").read_text().splitlines()
    pins = [x.split("==") for x in lines if x and not x.startswith("#")]
    return {name.lower().replace("_", "-"): version for name, version in pins}


def test_the_colab_extra_is_met_by_the_packages_colab_already_has():
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    colab = _colab_versions()
    unmet = []
    for text in project["dependencies"] + project["optional-dependencies"]["colab"]:
        req = Requirement(text)
        name = req.name.lower().replace("_", "-")
        if name in ("torch", "torchvision"):     # Colab's are installed from its own URLs (no version pin)
            continue
        if name not in colab or not req.specifier.contains(colab[name], prereleases=True):
            unmet.append(f"{text} (Colab: {colab.get(name, 'absent')})")
    assert not unmet, f"on Colab these would install or upgrade a package: {unmet}"


def test_the_colab_extra_leaves_out_jupyterlab_and_the_course_extra_keeps_it():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert not [r for r in extras["colab"] if r.lower().startswith(("jupyterlab", "notebook", "ipykernel"))]
    assert any(r.startswith("jupyterlab") for r in extras["course"])


def test_the_package_ships_notebook_06s_runner_and_results():
    package = Path(seglab.__file__).parent
    assert (package / "lessons.py").is_file() and (package / "results" / "lessons.jsonl").is_file()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "results/*.jsonl" in project["tool"]["setuptools"]["package-data"]["seglab"]
