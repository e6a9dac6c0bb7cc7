"""The notebooks in an emulated Google Colab runtime, installed by their own bootstrap cell.

The runtime (tests/colab/emulation.py) has Colab's recorded versions of the packages that
matter (ipywidgets 7.7.1, ipykernel 6.17.1, IPython 7.34, notebook 6.5.7, numpy, ...), and
its kernel imports a stand-in ``google.colab`` at start-up. Each notebook runs in a fresh
kernel (as each Colab notebook gets a fresh runtime), in quick mode, with its bootstrap cell
exactly as committed except for two things: the repository URL points at a clone of this
checkout (its HEAD tagged with the release tag the bootstrap installs), and the data URL at
a local server with generated data in CamVid's layout (the clone's manifest lists them).

Checked: the bootstrap changes the version of no package Colab has and brings no
JupyterLab; notebooks 01, 02, 05 and 06 run without an error; the viewers work under Colab's
ipywidgets 7.7; notebook 05 finds a run kept in Google Drive; notebook 06 runs with no
network but the data server (its runner and results ship with seglab). The package diff and the
bootstrap's install time are written to test-artifacts/colab/.

The first run builds the runtime (about 6 GB with torch, a few minutes) into $SEGLAB_CACHE
(or the temp folder) and reuses it afterwards. It runs when SEGLAB_COLAB=1 (``python3
tasks.py test`` sets it) or with ``-m colab``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("filelock")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from colab import emulation  # noqa: E402

from seglab import __version__  # noqa: E402
from seglab import course  # noqa: E402
from seglab.synthetic import make_synthetic_camvid  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
ARTIFACTS = REPO / "test-artifacts" / "colab"
CELL_TIMEOUT = 900

pytestmark = [pytest.mark.colab, pytest.mark.slow]


def _wanted(config) -> bool:
    return os.environ.get("SEGLAB_COLAB") == "1" or "colab" in (config.getoption("markexpr") or "")


@pytest.fixture(scope="module", autouse=True)
def _opt_in(request):
    if not _wanted(request.config):
        pytest.skip("the Colab emulation runs with SEGLAB_COLAB=1 (python3 tasks.py test sets it) or -m colab")


@pytest.fixture(scope="module")
def colab(tmp_path_factory):
    """Everything one emulated Colab session needs: the runtime, a clone of this checkout
    tagged for the bootstrap, the data server and the kernel's environment."""
    tmp = tmp_path_factory.mktemp("colab")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    runtime = emulation.runtime_venv(tmp / "runtime", ARTIFACTS / "runtime-build.log")

    data = make_synthetic_camvid(tmp / "served" / "camvid", 24, 8, 8, (360, 480))
    clone = tmp / "seglab"
    git = ["git", "-C", str(clone), "-c", "user.name=colab-test", "-c", "user.email=colab-test@localhost"]
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    (clone / "seglab" / "manifests" / "camvid.json").write_text(json.dumps(emulation.write_manifest(data, "camvid")))
    subprocess.run([*git, "commit", "--quiet", "-am", "the served test data's manifest"], check=True)
    subprocess.run([*git, "tag", "--force", course.RELEASE_TAG], check=True, capture_output=True)

    home = tmp / "home"
    drive = tmp / "drive"
    standin = emulation.write_standin(tmp / "standin")
    kernels = emulation.kernel_spec(tmp / "kernels", runtime)
    with emulation.serve(data) as url:
        env = emulation.kernel_env(runtime, home, standin, SEGLAB_QUICK="1", SEGLAB_CAMVID_URL=url,
                                   SEGLAB_DRIVE_MOUNT=str(drive), SEGLAB_CACHE=str(tmp / "cache"))
        yield {"runtime": runtime, "clone": clone, "env": env, "kernels": kernels, "drive": drive, "tmp": tmp,
               "before": emulation.pip_freeze(runtime)}


def _bootstrap(nb, clone: Path) -> None:
    """The notebook's bootstrap cell, with the repository URL pointed at the local clone."""
    cell = next(c for c in nb.cells if c.cell_type == "code")
    assert course.REPO_URL in cell.source, "the bootstrap cell no longer names seglab.course.REPO_URL"
    cell.source = cell.source.replace(course.REPO_URL, clone.as_uri())


def run_notebook(colab: dict, nb, workdir: Path) -> tuple[object, float]:
    """Execute ``nb`` in a fresh emulated-Colab kernel; returns it and the seconds taken."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    ksm = KernelSpecManager(kernel_dirs=[str(colab["kernels"])])
    km = KernelManager(kernel_name="colab", kernel_spec_manager=ksm)
    client = nbclient.NotebookClient(nb, km=km, timeout=CELL_TIMEOUT, allow_errors=False,
                                     resources={"metadata": {"path": str(workdir)}})
    workdir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    client.execute(env=colab["env"], cwd=str(workdir))
    return nb, time.perf_counter() - start


def _text(nb) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", "") if "text" in out else json.dumps(out.get("data", {})))
    return "\n".join(parts)


def _diff(before: dict, after: dict) -> tuple[dict, dict]:
    changed = {n: (v, after.get(n)) for n, v in before.items() if after.get(n) != v}
    added = {n: v for n, v in after.items() if n not in before}
    return changed, added


@pytest.fixture(scope="module")
def bootstrapped(colab):
    """The bootstrap cell run once on its own (its install time), then the runtime's package diff."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(course.BOOTSTRAP_SOURCE)])
    _bootstrap(nb, colab["clone"])
    nb, seconds = run_notebook(colab, nb, colab["tmp"] / "content")
    after = emulation.pip_freeze(colab["runtime"])
    changed, added = _diff(colab["before"], after)
    colab_pins = emulation.colab_versions()
    report = {"bootstrap_seconds": round(seconds, 1), "changed": changed, "added": added,
              "added_that_colab_has": {n: (colab_pins[n], v) for n, v in added.items()
                                       if n in colab_pins and colab_pins[n] != v},
              "bootstrap_output": _text(nb)[-4000:]}
    (ARTIFACTS / "package-diff.json").write_text(json.dumps(report, indent=1))
    print(f"\nbootstrap cell: {seconds:.0f} s; changed {changed}; added {sorted(added)}")
    return report


def test_the_bootstrap_changes_no_package_that_colab_has(bootstrapped):
    assert not bootstrapped["changed"], (
        f"the bootstrap changed Colab's own packages (name: (Colab's, now)): {bootstrapped['changed']}")
    assert not bootstrapped["added_that_colab_has"], (
        f"the bootstrap installed packages that Colab has, at other versions (name: (Colab's, now)): "
        f"{bootstrapped['added_that_colab_has']}; add them to tests/colab/emulation.py COLAB_PACKAGES")


def test_the_bootstrap_installs_seglab_and_no_jupyterlab(bootstrapped):
    added = bootstrapped["added"]
    assert added.get("seglab", "").startswith("git+file"), f"seglab was not installed from the clone: {added}"
    assert not [n for n in added if n.startswith("jupyterlab")], f"JupyterLab came along: {sorted(added)}"


# After the setup cell, a notebook reaches nothing but the data server: every other address
# goes to a proxy where nothing listens. (The setup cell itself needs the package index: pip
# builds seglab's wheel with setuptools fetched for the build.)
OFFLINE = {k: "http://127.0.0.1:9" for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")}
OFFLINE.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")


def _offline_after_setup(nb) -> None:
    first = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    nb.cells.insert(first + 1, nbformat.v4.new_code_cell(f"import os\nos.environ.update({OFFLINE!r})"))


@pytest.mark.parametrize("name", ["01_introduction", "02_data", "05_evaluation", "06_lessons_learned"])
def test_notebook_runs_in_the_emulated_colab_runtime(colab, bootstrapped, name):
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    _bootstrap(nb, colab["clone"])
    check = "import ipywidgets, seglab; print('versions:', ipywidgets.__version__, seglab.__version__)\n"
    if name == "02_data":
        check += ("browser.show(1).set_opacity(0.2).set_highlight('Road')\n"
                  "assert browser.image.value[:4] == b'\\x89PNG' and '(2 of' in browser.info.value\n"
                  "print('viewer:', browser.widget._model_module_version)\n")
    if name == "05_evaluation":
        check += ("viewer.show(1).set_highlight('Car')\nviewer.set_show_errors(False)\n"
                  "assert viewer.image.value[:4] == b'\\x89PNG'\n"
                  "print('viewer:', viewer.widget._model_module_version)\n")
        _seed_drive_run(colab)
    nb.cells.append(nbformat.v4.new_code_cell(check))   # drives the viewers as a learner would
    _offline_after_setup(nb)
    nb, seconds = run_notebook(colab, nb, colab["tmp"] / "content")
    text = _text(nb)
    (ARTIFACTS / f"{name}.txt").write_text(f"{seconds:.0f} s\n{text[-20000:]}")
    assert f"versions: 7.7.1 {__version__}" in text
    if name in ("02_data", "05_evaluation"):
        assert "viewer: 1.5.0" in text          # the ipywidgets 7 protocol that Colab's front end renders
    if name == "05_evaluation":
        assert "Google Drive" in text and "U-Net (notebook 04): epoch" in text, "05 did not find the run in Drive"


def _seed_drive_run(colab: dict) -> None:
    """A tiny run of notebook 04 in the stand-in Drive, where 04's Drive cell keeps it."""
    out = colab["drive"] / "MyDrive" / "seglab-runs" / "quick" / "04_training"
    if (out / "best.pt").exists():
        return
    code = ("import sys; from seglab import TrainConfig, fit\n"
            "fit(TrainConfig(dataset='camvid', size=(48, 64), crop=(48, 64), width=4, epochs=1, max_steps=2,"
            " batch_size=2, subset=4, val_subset=2, out_dir=sys.argv[1], progress=False))\n")
    env = {**colab["env"], "SEGLAB_DATA": str(Path(colab["env"]["HOME"]) / "seglab-data" / "camvid")}
    subprocess.run([str(emulation.python(colab["runtime"])), "-c", code, str(out)], check=True, env=env,
                   cwd=colab["tmp"], capture_output=True, timeout=600)


def test_widget_tests_pass_under_colabs_ipywidgets(colab, bootstrapped):
    proc = subprocess.run([str(emulation.python(colab["runtime"])), "-m", "pytest", "-q", "-x", "-p",
                           "no:cacheprovider", "tests/test_widgets.py"], cwd=REPO, capture_output=True,
                          text=True, env={**colab["env"], "MPLBACKEND": "Agg", "PYTHONPATH": ""}, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_a_failed_install_stops_the_bootstrap_with_what_to_do(colab):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(course.BOOTSTRAP_SOURCE),
                                         nbformat.v4.new_code_cell("print('went on')")])
    nb.cells[0].source = nb.cells[0].source.replace(course.REPO_URL, (colab["tmp"] / "no-such-repo").as_uri())
    with pytest.raises(nbclient.exceptions.CellExecutionError) as err:
        run_notebook(colab, nb, colab["tmp"] / "content")
    assert "Installing seglab failed" in str(err.value) and "run this cell again" in str(err.value)
    assert "went on" not in _text(nb)
