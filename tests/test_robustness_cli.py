"""The command line on bad input: one line on stderr that names the option or file, a
non-zero exit, never a traceback, and nothing written. ``seglab predict`` predicts what
it can and reports what it skips.

Most cases call ``seglab.cli.main`` in this process (what ``python -m seglab`` runs: an
exception escaping it would be the traceback); one runs ``python -m seglab`` for real,
to check the same in a fresh interpreter where warnings reach stderr too (each fresh
interpreter costs seconds of imports on a 2-core machine, hence only one).
"""
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from seglab.cli import main
from seglab.config import TrainConfig
from seglab.train import fit


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: tiny models, and a busy 2-core machine (see test_robustness_training)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_checkpoint(synthetic_camvid, tmp_path_factory) -> Path:
    """A U-Net (width 4, depth 2) trained for 2 steps on the synthetic CamVid."""
    out = tmp_path_factory.mktemp("tiny-run")
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:  # session fixtures run outside the autouse cache fixture
        mp.setenv("SEGLAB_CACHE", str(tmp_path_factory.getbasetemp() / "seglab-cache"))
        torch.set_num_threads(1)
        try:
            fit(TrainConfig(root=str(synthetic_camvid), out_dir=str(out), size=(60, 80), crop=None, width=4,
                            depth=2, epochs=1, max_steps=2, batch_size=2, workers=0, device="cpu",
                            progress=False))
        finally:
            torch.set_num_threads(threads)
    return out / "last.pt"


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    """``main(argv)`` as the console script runs it: an exit status, stdout, stderr.
    Any exception other than SystemExit escaping main would be a traceback: the test fails."""
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _assert_one_line_error(code, err: str, *expected: str) -> None:
    assert code not in (0, None), f"exit status {code!r}"
    assert "Traceback" not in err
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].strip(), f"not exactly one line: {err!r}"
    assert lines[0].startswith("seglab"), lines[0]
    for text in expected:
        assert text in lines[0], f"{text!r} not in {lines[0]!r}"


# --------------------------------------------------------------------------- invalid options

TRAIN_CASES = {
    "negative epochs": (["--epochs", "-1"], ["--epochs", "at least 1"]),
    "zero epochs": (["--epochs", "0"], ["--epochs"]),
    "zero batch size": (["--batch-size", "0"], ["--batch-size", "at least 1"]),
    "fractional batch size": (["--batch-size", "2.5"], ["--batch-size", "whole number"]),
    "unknown recipe": (["--recipe", "fastest"], ["unknown recipe 'fastest'", "quick"]),
    "unknown optimizer": (["--optimizer", "lion"], ["--optimizer", "'lion'", "adam"]),
    "unknown dataset": (["--dataset", "mnist"], ["--dataset", "'mnist'", "camvid"]),
    "size without width": (["--size", "180x"], ["--size", "180x240"]),
    "size with zero": (["--size", "0x240"], ["--size"]),
    "size with three numbers": (["--size", "60x80x3"], ["--size"]),
    "crop that is not a size": (["--crop", "big"], ["--crop"]),
    "budget that is not a time": (["--budget", "soon"], ["'soon'", "15m"]),
    "negative budget": (["--budget=-5m"], ["--budget", "positive"]),
    "zero budget": (["--budget", "0"], ["--budget"]),
    "infinite budget": (["--budget", "inf"], ["'inf'", "finite"]),
    "zero learning rate": (["--lr", "0"], ["--lr"]),
    "infinite learning rate": (["--lr", "inf"], ["--lr", "finite"]),
    "learning rate not a number": (["--lr", "fast"], ["--lr", "'fast'"]),
    "negative weight decay": (["--weight-decay", "-1"], ["--weight-decay"]),
    "negative workers": (["--workers", "-1"], ["--workers"]),
    "unknown device": (["--device", "gpu0"], ["--device", "'gpu0'", "cpu"]),
    "GPU that is not there": (["--device", "cuda:99"], ["--device", "cuda:99"]),
    "on/off that is neither": (["--skip", "maybe"], ["--skip", "on or off"]),
    "stem stride 3": (["--stem-stride", "3"], ["--stem-stride"]),
    "rebalance without class weights": (["--rebalance", "0.5", "--class-weights", "none"], ["--rebalance", "--class-weights"]),
    "rebalance above one": (["--rebalance", "2", "--class-weights", "sqrt"], ["--rebalance", "between 0 and 1"]),
    "half-resolution share of one": (["--low-res", "1"], ["--low-res", "below 1"]),
}


@pytest.mark.parametrize("case", list(TRAIN_CASES))
def test_invalid_train_option_is_one_line_and_writes_nothing(case, tmp_path, capsys):
    extra, expected = TRAIN_CASES[case]
    out = tmp_path / "run"
    code, stdout, err = _run(["train", "--root", str(tmp_path / "unused"), "--out", str(out), *extra], capsys)
    _assert_one_line_error(code, err, *expected)
    assert code == 2 and not out.exists()


def test_train_with_missing_data_root_names_it_and_the_download(tmp_path, capsys):
    missing = tmp_path / "camvid"
    code, _, err = _run(["train", "--root", str(missing), "--out", str(tmp_path / "run")], capsys)
    _assert_one_line_error(code, err, str(missing), "does not exist", "seglab download camvid")
    assert not (tmp_path / "run").exists()


def test_train_into_a_file_names_it(tmp_path, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    code, _, err = _run(["train", "--out", str(target)], capsys)
    _assert_one_line_error(code, err, "--out", str(target), "is a file")
    assert target.read_text() == "keep me"


def test_resume_from_a_missing_checkpoint_names_it(tmp_path, capsys):
    code, _, err = _run(["train", "--resume", str(tmp_path / "run" / "last.pt")], capsys)
    _assert_one_line_error(code, err, "--resume", str(tmp_path / "run" / "last.pt"), "last.pt")


def test_resume_from_a_file_that_is_not_a_checkpoint_names_it(tmp_path, capsys):
    bogus = tmp_path / "last.pt"
    bogus.write_text("not a checkpoint")
    code, _, err = _run(["train", "--resume", str(bogus), "--out", str(tmp_path / "run")], capsys)
    _assert_one_line_error(code, err, str(bogus), "not a checkpoint")


@pytest.mark.parametrize("extra, expected", [
    (["--batch-size", "100"], ["--batch-size 100", "larger than the training set", "12 images"]),
    (["--depth", "9"], ["--depth 9", "--size 60x80"]),
], ids=["batch larger than the data", "too deep for the image"])
def test_options_that_do_not_fit_the_data_are_one_line(synthetic_camvid, tmp_path, capsys, extra, expected):
    out = tmp_path / "run"
    # the small recipe: the default one (course) would add a line saying its sizing is now fixed
    code, _, err = _run(["train", "--recipe", "lessons", "--root", str(synthetic_camvid), "--out", str(out), "--size", "60x80",
                         "--crop", "48x64", "--width", "4", "--depth", "2", "--workers", "0", "--device", "cpu",
                         "--quiet", *extra], capsys)
    _assert_one_line_error(code, err, *expected)
    assert not out.exists()


def test_evaluate_with_a_missing_checkpoint_names_it(tmp_path, capsys):
    code, _, err = _run(["evaluate", "--checkpoint", str(tmp_path / "best.pt")], capsys)
    _assert_one_line_error(code, err, str(tmp_path / "best.pt"), "does not exist")


def test_evaluate_with_a_text_file_as_checkpoint_names_it(tmp_path, capsys):
    bogus = tmp_path / "best.pt"
    bogus.write_text("hello")
    code, _, err = _run(["evaluate", "--checkpoint", str(bogus)], capsys)
    _assert_one_line_error(code, err, str(bogus), "not a checkpoint")


def test_evaluate_on_a_missing_data_root_or_split_is_one_line(tiny_checkpoint, synthetic_camvid, tmp_path, capsys):
    code, _, err = _run(["evaluate", "--checkpoint", str(tiny_checkpoint), "--root", str(tmp_path / "no")], capsys)
    _assert_one_line_error(code, err, str(tmp_path / "no"), "seglab download camvid")
    code, _, err = _run(["evaluate", "--checkpoint", str(tiny_checkpoint), "--root", str(synthetic_camvid),
                         "--split", "tset"], capsys)
    _assert_one_line_error(code, err, "'tset'", "train, val, test")


def test_evaluate_with_rebalance_on_an_unweighted_run_is_one_line(tiny_checkpoint, synthetic_camvid, capsys):
    code, _, err = _run(["evaluate", "--checkpoint", str(tiny_checkpoint), "--root", str(synthetic_camvid),
                         "--rebalance", "0.5"], capsys)
    _assert_one_line_error(code, err, str(tiny_checkpoint), "without class weights", "--rebalance")


@pytest.mark.parametrize("argv, expected", [
    ([], ["required"]),
    (["trian"], ["invalid choice", "'trian'"]),
    (["evaluate"], ["--checkpoint", "--pretrained"]),
    (["predict", "--checkpoint", "x.pt"], ["--input", "--output"]),
], ids=["no command", "misspelt command", "evaluate without a model", "predict without input"])
def test_missing_or_misspelt_arguments_are_one_line(argv, expected, capsys):
    code, _, err = _run(argv, capsys)
    _assert_one_line_error(code, err, *expected)


def test_predict_with_a_missing_checkpoint_input_or_bad_output_is_one_line(tiny_checkpoint, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (40, 30)).save(images / "a.png")
    out = tmp_path / "labels"
    code, _, err = _run(["predict", "--checkpoint", str(tmp_path / "no.pt"), "--input", str(images),
                         "--output", str(out)], capsys)
    _assert_one_line_error(code, err, str(tmp_path / "no.pt"))
    code, _, err = _run(["predict", "--checkpoint", str(tiny_checkpoint), "--input", str(tmp_path / "nothing"),
                         "--output", str(out)], capsys)
    _assert_one_line_error(code, err, "--input", str(tmp_path / "nothing"))
    (tmp_path / "file").write_text("x")
    code, _, err = _run(["predict", "--checkpoint", str(tiny_checkpoint), "--input", str(images),
                         "--output", str(tmp_path / "file")], capsys)
    _assert_one_line_error(code, err, "--output", "is a file")
    assert not out.exists()


@pytest.mark.slow
def test_python_m_seglab_prints_one_line_errors_in_a_fresh_process(tmp_path):
    """The real console path, ``python -m seglab``, on a file seglab refuses deep inside
    (where torch also emits a warning of its own). One fresh interpreter: each costs
    seconds of imports; argparse's own refusals behave the same in-process."""
    odd = tmp_path / "odd.pt"
    with open(odd, "wb") as f:  # protocol 4: torch warns about it, which must not reach the user
        pickle.dump({"weights": [1, 2, 3]}, f, protocol=4)
    proc = subprocess.run([sys.executable, "-m", "seglab", "evaluate", "--checkpoint", str(odd)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "Warning" not in proc.stderr, proc.stderr
    _assert_one_line_error(proc.returncode, proc.stderr, str(odd), "not a checkpoint")
    assert proc.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odd.pt"], "a failed command wrote files"


# --------------------------------------------------------------------------- predict on odd inputs

def _snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def _odd_inputs(folder: Path) -> dict[str, tuple[int, int]]:
    """Images of several sizes and modes (name -> (width, height)) plus files that are not images."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    sizes = {"street.png": (97, 61), "grey.png": (50, 50), "rgba.png": (90, 70), "photo.jpg": (33, 45),
             "palette.gif": (64, 48), "tall.png": (30, 200)}
    for name, (w, h) in sizes.items():
        pixels = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
        image = Image.fromarray(pixels, "RGBA")
        mode = {"grey.png": "L", "rgba.png": "RGBA", "palette.gif": "P"}.get(name, "RGB")
        image.convert(mode).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    good = (folder / "street.png").read_bytes()
    (folder / "broken.png").write_bytes(good[: len(good) // 3])
    (folder / "empty.png").write_bytes(b"")
    (folder / "nested").mkdir()
    return sizes


def test_predict_handles_odd_images_and_reports_what_it_skips(tiny_checkpoint, tmp_path, capsys):
    inputs, out = tmp_path / "inputs", tmp_path / "labels"
    sizes = _odd_inputs(inputs)
    before = _snapshot(inputs)
    code, stdout, err = _run(["predict", "--checkpoint", str(tiny_checkpoint), "--input", str(inputs),
                              "--output", str(out), "--color", "--device", "cpu"], capsys)
    assert code == 1, "a run that skipped files says so in its exit status"
    for name, (w, h) in sizes.items():
        label = Image.open(out / f"{Path(name).stem}.png")
        assert label.mode == "L" and label.size == (w, h), name
        values = np.asarray(label)
        assert values.min() >= 0 and values.max() <= 10, name
        colour = Image.open(out / f"{Path(name).stem}_color.png")
        assert colour.size == (w, h)
    skipped = {line.split(":")[0] for line in err.strip().splitlines()}
    assert skipped == {f"skipped {inputs / n}" for n in ("notes.txt", "broken.png", "empty.png")}, err
    assert "Traceback" not in err
    assert f"wrote {len(sizes)} label PNG(s)" in stdout and "skipped 3" in stdout
    assert _snapshot(inputs) == before, "an input file was changed"
    assert len(list(out.iterdir())) == 2 * len(sizes)


def test_predict_on_a_folder_without_images_fails_and_says_why(tiny_checkpoint, tmp_path, capsys):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "readme.md").write_text("# no images here")
    code, stdout, err = _run(["predict", "--checkpoint", str(tiny_checkpoint), "--input", str(inputs),
                              "--output", str(tmp_path / "labels")], capsys)
    assert code == 1 and "wrote 0 label PNG(s)" in stdout
    assert f"skipped {inputs / 'readme.md'}" in err and "Traceback" not in err


@pytest.mark.parametrize("single_file", [False, True], ids=["folder", "one file"])
def test_predict_refuses_to_write_over_its_inputs(tiny_checkpoint, tmp_path, capsys, single_file):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    Image.new("RGB", (80, 60), (128, 64, 128)).save(inputs / "road.png")
    Image.new("RGB", (80, 60), (128, 128, 128)).save(inputs / "sky.png")
    before = _snapshot(inputs)
    source = inputs / "road.png" if single_file else inputs
    code, _, err = _run(["predict", "--checkpoint", str(tiny_checkpoint), "--input", str(source),
                         "--output", str(inputs)], capsys)
    _assert_one_line_error(code, err, "--output", "overwrite", str(inputs / "road.png"))
    assert _snapshot(inputs) == before and sorted(p.name for p in inputs.iterdir()) == ["road.png", "sky.png"]


def test_predict_keeps_inputs_with_the_same_name_apart(tiny_checkpoint, tmp_path, capsys):
    inputs, out = tmp_path / "inputs", tmp_path / "labels"
    inputs.mkdir()
    Image.new("RGB", (80, 60)).save(inputs / "frame.png")
    Image.new("RGB", (40, 30)).save(inputs / "frame.jpg")
    code, stdout, err = _run(["predict", "--checkpoint", str(tiny_checkpoint), "--input", str(inputs),
                              "--output", str(out)], capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["frame_jpg.png", "frame_png.png"]
    assert Image.open(out / "frame_jpg.png").size == (40, 30)
    assert Image.open(out / "frame_png.png").size == (80, 60)
