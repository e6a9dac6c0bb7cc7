"""Nothing a learner made is overwritten, deleted or written through without their say:
run folders, prediction outputs and JSON results are refused when they exist (unless
``--overwrite``), a symbolic link in an output folder is replaced, never followed, and
one bad image does not end a prediction run."""
import json
import struct
import zlib
from pathlib import Path

import pytest
import torch
from PIL import Image

from test_robustness_cli import _run as run_cli
from seglab.config import TrainConfig
from seglab.train import fit


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TINY = dict(size=(60, 80), crop=None, width=4, depth=2, epochs=1, max_steps=2, batch_size=2, workers=0,
            device="cpu", progress=False)
TINY_FLAGS = ["--recipe", "lessons", "--size", "60x80",   # a small run, not the 15-minute default
              "--crop", "60x80", "--width", "4", "--depth", "2", "--epochs", "1",
              "--max-steps", "1", "--batch-size", "2", "--workers", "0", "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def two_runs(synthetic_camvid, tmp_path_factory) -> tuple[Path, Path]:
    """Two finished tiny runs, A and B, in folders of their own."""
    base = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEGLAB_CACHE", str(tmp_path_factory.getbasetemp() / "seglab-cache"))
        for name, seed in (("A", 0), ("B", 1)):
            fit(TrainConfig(root=str(synthetic_camvid), out_dir=str(base / name), seed=seed, **TINY))
    return base / "A", base / "B"


def _run(argv, capsys) -> tuple[int, str, str]:
    return run_cli([str(a) for a in argv], capsys)


def _one_line_error(code, err: str, *expected: str) -> str:
    assert code not in (0, None), f"exit status {code!r}"
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("seglab") and "Traceback" not in err, err
    for text in expected:
        assert text in lines[0], f"{text!r} not in {lines[0]!r}"
    return lines[0]


def _files(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


# --------------------------------------------------------------------------- seglab train

def test_resume_into_a_folder_holding_another_run_is_refused_and_changes_nothing(two_runs, synthetic_camvid,
                                                                                 capsys):
    a, b = two_runs
    before = _files(b)
    code, _, err = _run(["train", "--resume", a / "last.pt", "--out", b, "--root", synthetic_camvid,
                         "--more-epochs", "1", "--quiet"], capsys)
    _one_line_error(code, err, str(b), "another run", "--overwrite")
    assert _files(b) == before


def test_new_run_into_a_folder_with_best_pt_and_history_but_no_last_pt_is_refused(two_runs, synthetic_camvid,
                                                                                  tmp_path, capsys):
    out = tmp_path / "old-run"
    out.mkdir()
    (out / "best.pt").write_bytes((two_runs[0] / "best.pt").read_bytes())
    (out / "history.json").write_text("[]")
    before = _files(out)
    code, _, err = _run(["train", "--root", synthetic_camvid, "--out", out, *TINY_FLAGS], capsys)
    _one_line_error(code, err, str(out), "best.pt", "history.json", "--overwrite")
    assert _files(out) == before


def test_overwrite_replaces_the_old_run_and_keeps_the_learners_other_files(synthetic_camvid, tmp_path, capsys):
    out = tmp_path / "old-run"
    out.mkdir()
    (out / "best.pt").write_bytes(b"an older run's best model")
    (out / "notes.txt").write_text("mine")
    code, _, err = _run(["train", "--root", synthetic_camvid, "--out", out, "--overwrite", *TINY_FLAGS], capsys)
    assert code == 0, err
    assert (out / "notes.txt").read_text() == "mine", "only the run's own files are replaced"
    assert (out / "best.pt").read_bytes() != b"an older run's best model"


def test_training_replaces_a_symlink_in_its_run_folder_never_the_file_it_points_to(two_runs, synthetic_camvid,
                                                                                 tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("last.pt", "config.json"):
        (run / name).write_bytes((two_runs[0] / name).read_bytes())
    outside = tmp_path / "precious.json"
    outside.write_text("a learner's notes")
    (run / "history.json").symlink_to(outside)
    code, _, err = _run(["train", "--resume", run / "last.pt", "--root", synthetic_camvid, "--more-epochs", "1",
                         "--quiet"], capsys)
    assert code == 0, err
    assert outside.read_text() == "a learner's notes"
    assert not (run / "history.json").is_symlink() and json.loads((run / "history.json").read_text())


# --------------------------------------------------------------------------- seglab predict

def _images(folder: Path, *names: str) -> Path:
    folder.mkdir(exist_ok=True)
    for i, name in enumerate(names):
        Image.new("RGB", (40 + 8 * i, 30), (128, 64 + 20 * i, 128)).save(folder / name)
    return folder


def test_predict_refuses_to_replace_an_existing_output_without_overwrite(two_runs, tmp_path, capsys):
    inputs, out = _images(tmp_path / "in", "a.png", "b.png"), tmp_path / "out"
    out.mkdir()
    (out / "b.png").write_bytes(b"my own work")
    argv = ["predict", "--checkpoint", two_runs[0] / "last.pt", "--input", inputs, "--output", out]
    code, _, err = _run(argv, capsys)
    _one_line_error(code, err, str(out / "b.png"), "--overwrite")
    assert _files(out) == {"b.png": b"my own work"}, "nothing is written when an output exists"
    code, _, err = _run([*argv, "--overwrite"], capsys)
    assert code == 0, err
    assert Image.open(out / "b.png").size == (48, 30)


def test_predict_colour_image_never_replaces_the_label_of_an_input_named_x_color(two_runs, tmp_path, capsys):
    inputs, out = _images(tmp_path / "in", "x.png", "x_color.png"), tmp_path / "out"
    code, _, err = _run(["predict", "--checkpoint", two_runs[0] / "last.pt", "--input", inputs,
                         "--output", out, "--color"], capsys)
    _one_line_error(code, err, str(out / "x_color.png"), str(inputs / "x.png"), str(inputs / "x_color.png"))
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("dangling", [False, True], ids=["link to a file", "dangling link"])
def test_predict_replaces_a_symlink_in_its_output_folder_never_the_file_it_points_to(two_runs, tmp_path, capsys,
                                                                                    dangling):
    inputs, out = _images(tmp_path / "in", "a.png"), tmp_path / "out"
    out.mkdir()
    outside = tmp_path / "elsewhere" / "thesis.png"
    outside.parent.mkdir()
    if not dangling:
        outside.write_bytes(b"a file outside the output folder")
    (out / "a.png").symlink_to(outside)
    argv = ["predict", "--checkpoint", two_runs[0] / "last.pt", "--input", inputs, "--output", out]
    code, _, err = _run(argv, capsys)
    _one_line_error(code, err, str(out / "a.png"), "symbolic link", "--overwrite")
    code, _, err = _run([*argv, "--overwrite"], capsys)
    assert code == 0, err
    if dangling:
        assert not outside.exists(), "a file was created outside the output folder"
    else:
        assert outside.read_bytes() == b"a file outside the output folder"
    assert not (out / "a.png").is_symlink() and Image.open(out / "a.png").mode == "L"
    assert sorted(p.name for p in out.iterdir()) == ["a.png"], "a temporary file was left behind"


def _png_declaring(path: Path, width: int, height: int) -> None:
    """A small valid PNG whose header (IHDR, with a correct CRC) declares width x height."""
    Image.new("RGB", (8, 8)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4:ihdr + 12] = struct.pack(">II", width, height)
    data[ihdr + 17:ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr:ihdr + 17])))
    path.write_bytes(bytes(data))


def test_predict_skips_an_oversized_image_names_it_finishes_the_others_and_exits_non_zero(two_runs, tmp_path,
                                                                                         capsys):
    inputs, out = _images(tmp_path / "in", "a.png", "c.png"), tmp_path / "out"
    _png_declaring(inputs / "b_huge.png", 20000, 20000)
    (inputs / "d_broken.png").write_bytes((inputs / "a.png").read_bytes()[:40])
    code, stdout, err = _run(["predict", "--checkpoint", two_runs[0] / "last.pt", "--input", inputs,
                              "--output", out], capsys)
    assert code == 1 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 2, err
    assert lines[0].startswith(f"skipped {inputs / 'b_huge.png'}: ") and "pixels" in lines[0]
    assert lines[1].startswith(f"skipped {inputs / 'd_broken.png'}: ")
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "c.png"]
    assert "wrote 2 label PNG(s)" in stdout and "skipped 2" in stdout


def test_predict_help_states_the_pixel_limit(capsys):
    code, stdout, _ = _run(["predict", "--help"], capsys)
    assert code == 0 and "50,000,000" in " ".join(stdout.split()) and "pixels" in stdout


# --------------------------------------------------------------------------- seglab evaluate --json FILE

def test_evaluate_writes_json_to_a_file_and_never_replaces_one_without_overwrite(two_runs, synthetic_camvid,
                                                                                tmp_path, capsys):
    target = tmp_path / "result.json"
    argv = ["evaluate", "--checkpoint", two_runs[0] / "last.pt", "--root", synthetic_camvid, "--split", "val",
            "--device", "cpu", "--json", target]
    code, _, err = _run(argv, capsys)
    assert code == 0, err
    assert 0 <= json.loads(target.read_text())["miou"] <= 1
    target.write_text("my notes")
    code, _, err = _run(argv, capsys)
    _one_line_error(code, err, str(target), "--overwrite")
    assert target.read_text() == "my notes"
    code, _, err = _run([*argv, "--overwrite"], capsys)
    assert code == 0 and "miou" in json.loads(target.read_text())


def test_files_written_atomically_get_the_permissions_of_an_ordinary_new_file(tmp_path):
    from seglab.outputs import write_text
    ordinary = tmp_path / "ordinary.txt"
    ordinary.write_text("x")
    assert (write_text(tmp_path / "atomic.txt", "x").stat().st_mode & 0o777) == (ordinary.stat().st_mode & 0o777)
