"""nbgrader settings of the seglab classroom. The course root is this folder, wherever it
is (a clone, a temporary copy in the tests, a JupyterHub home), so every nbgrader command
run from here, and `classroom.py`, find the same gradebook and folders."""
from pathlib import Path

c = get_config()  # noqa: F821 (nbgrader defines get_config when it loads this file)

HERE = Path(__file__).resolve().parent

c.CourseDirectory.root = str(HERE)
c.CourseDirectory.course_id = "seglab"
# The gradebook is a SQLite file inside the course folder (ignored by git).
c.CourseDirectory.db_url = f"sqlite:///{HERE / 'gradebook.db'}"

# What a student sees where the solution was.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}

# nbgrader's default of 30 s per cell kills slow cells on a busy grading machine; no graded
# cell trains for long, but a shared CPU can be slow. This is per cell, not per notebook.
c.Execute.timeout = 300
c.ExecutePreprocessor.timeout = 300

# A submission that lost a test cell (deleted, or edited in a tool that drops cell
# metadata) gets it back from the gradebook instead of failing to grade.
c.OverwriteCells.add_missing_cells = True
