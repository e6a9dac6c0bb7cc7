"""Run the grading kernels in a sandbox: their own user id, no network, and the course
folder and the inbox hidden, so that student code cannot read the solutions (`source/`),
classmates' notebooks or the gradebook, nor write any of them.

Built from util-linux, which every Debian system has: `unshare` gives the kernel its own
network namespace (no interface but a loopback that is down) and mount namespace (an
empty tmpfs over each hidden folder), then `setpriv` drops root for an unused user id
before Python starts. The kernel talks to nbgrader through Unix sockets (ZeroMQ's `ipc`
transport) in a private folder, since TCP does not cross network namespaces.

Needs root (the graders' CI runs as root); elsewhere :func:`available` says why not.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# Each graded notebook gets its own user id from this range, so two kernels graded at the
# same time cannot read each other's scratch folders either.
FIRST_UID = 61000
UID_COUNT = 1000

# Runs as root inside the new namespaces: hide folders, hand the connection file to the
# kernel's user, leave the course folder, drop every privilege, start the kernel.
_INNER = r"""
set -e
uid=$1; scratch=$2; conn=$3; shift 3
while [ "$1" != "--" ]; do
  [ -e "$1" ] && mount -t tmpfs -o size=64k,mode=000 seglab-hidden "$1"
  shift
done
shift
chown "$uid:$uid" "$conn"
cd "$scratch/home"
export HOME="$scratch/home" MPLCONFIGDIR="$scratch/home" IPYTHONDIR="$scratch/home/.ipython" TMPDIR="$scratch/home"
exec setpriv --reuid="$uid" --regid="$uid" --clear-groups --no-new-privs --inh-caps=-all --bounding-set=-all -- "$@"
"""


def available() -> str:
    """'' when kernels can be sandboxed here, otherwise the reason why not."""
    if os.name != "posix" or not hasattr(os, "geteuid"):
        return "sandboxing needs Linux"
    if os.geteuid() != 0:
        return "sandboxing needs root (it switches the kernel to another user id)"
    for tool in ("unshare", "setpriv", "mount"):
        if shutil.which(tool) is None:
            return f"sandboxing needs {tool} (Debian package util-linux)"
    try:
        subprocess.run(["unshare", "--net", "--mount", "--fork", "true"], check=True, capture_output=True, timeout=30)
    except (subprocess.SubprocessError, OSError) as err:
        return f"this machine does not allow new namespaces ({err})"
    return ""


def prepare(slot: int, hide: list[Path]) -> tuple[Path, dict]:
    """A private folder for one grading kernel, and the environment variables that make
    nbgrader (run with the course's nbgrader_config.py) start its kernel in the sandbox.
    Remove the folder with :func:`cleanup` afterwards."""
    uid = FIRST_UID + slot % UID_COUNT
    scratch = Path(tempfile.mkdtemp(prefix="seglab-sandbox-"))
    os.chmod(scratch, 0o711)                       # the kernel may pass, not list
    runtime, home, kernel = scratch / "runtime", scratch / "home", scratch / "kernels" / "python3"
    for folder in (runtime, home):
        folder.mkdir()
        os.chown(folder, uid, uid)
        os.chmod(folder, 0o700)
    kernel.mkdir(parents=True)
    argv = ["unshare", "--net", "--mount", "--fork", "--", "/bin/sh", "-c", _INNER, "seglab-sandbox",
            str(uid), str(scratch), "{connection_file}", *[str(p) for p in hide], "--",
            sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (kernel / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "Python 3 (sandboxed)",
                                                    "language": "python"}))
    env = {
        "JUPYTER_PATH": str(scratch),              # its kernels/python3 replaces the usual one
        "JUPYTER_RUNTIME_DIR": str(runtime),
        "SEGLAB_SANDBOX_IPC": str(runtime / "kernel"),   # read by nbgrader_config.py
    }
    return scratch, env


def cleanup(scratch: Path) -> None:
    shutil.rmtree(scratch, ignore_errors=True)
