"""nbgrader settings of the seglab classroom. The course root is this folder, wherever it
is (a clone, a temporary copy in the tests, a JupyterHub home), so every nbgrader command
run from here, and `classroom.py`, find the same gradebook and folders."""
import os
import sys
from pathlib import Path

c = get_config()  # noqa: F821 (nbgrader defines get_config when it loads this file)

HERE = Path(__file__).resolve().parent

c.CourseDirectory.root = str(HERE)
c.CourseDirectory.course_id = "seglab"
# The gradebook is a SQLite file inside the course folder (ignored by git).
c.CourseDirectory.db_url = f"sqlite:///{HERE / 'gradebook.db'}"
# Notebooks are graded several at a time, each by its own nbgrader process: wait for the
# gradebook instead of failing when another process is writing to it.
c.CourseDirectory.db_url += "?timeout=120"

# What a student sees where the solution was.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}

# Per cell, not per notebook: the slowest graded cell needs about 2 s, so 60 s leaves room
# for a busy machine and stops an endless loop soon (`classroom.py autograde --timeout N`).
c.Execute.timeout = 60
c.ExecutePreprocessor.timeout = 60

# A warning printed by student code (a UserWarning from torch, a DeprecationWarning) goes
# to stderr, and nbgrader gives 0 to a test cell with any stderr output. Warnings are not
# errors: drop those outputs before grading. Any other stderr output still fails the cell.
c.IgnorePattern.enabled = True
c.IgnorePattern.pattern = r"\w*Warning: "

# The feedback shows the visible tests and every test's result, not the hidden tests' code.
from nbgrader.preprocessors import ClearHiddenTests, GetGrades  # noqa: E402
from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor  # noqa: E402
c.GenerateFeedback.preprocessors = [ClearHiddenTests, GetGrades, CSSHTMLHeaderPreprocessor]

# Late work: nbgrader compares each submission's time with the due date in the gradebook
# (`classroom.py autograde` writes it there from deadlines.csv, extensions from
# extensions.csv). The penalty: this share of the score per started day late.
sys.path.insert(0, str(HERE))
c.AssignLatePenalties.plugin_class = "late.PerDayPenalty"
c.PerDayPenalty.percent_per_day = 0.0

# Grading kernels in the sandbox (classroom.py sets this per notebook; see sandbox.py).
if os.environ.get("SEGLAB_SANDBOX_IPC"):
    c.KernelManager.transport = "ipc"
    c.KernelManager.ip = os.environ["SEGLAB_SANDBOX_IPC"]

# A submission that lost a test cell (deleted, or edited in a tool that drops cell
# metadata) gets it back from the gradebook instead of failing to grade.
c.OverwriteCells.add_missing_cells = True
