"""`make lab` (shared/lab.py): the command it builds on each kind of machine, and a real server it starts.

The integration tests start JupyterLab exactly as `make lab` does, on a free port and with temporary
Jupyter folders, so they never touch your own lab, its settings or its running servers.
"""

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

import pytest

from shared import lab

DESKTOP = {"DISPLAY": ":0"}
HEADLESS = {}


@pytest.fixture
def not_in_container(monkeypatch):
    monkeypatch.setattr(lab, "in_container", lambda: False)


def _command(monkeypatch, euid, env):
    """The command on a Linux machine whose effective user id is `euid`, with environment `env`."""
    if hasattr(os, "geteuid"):
        monkeypatch.setattr(lab.os, "geteuid", lambda: euid)
    monkeypatch.setattr(lab.sys, "platform", "linux")
    return lab.lab_command(8888, env=env)


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="no root user on Windows")
def test_root_gets_allow_root(monkeypatch, not_in_container):
    assert "--allow-root" in _command(monkeypatch, 0, DESKTOP)
    assert "--allow-root" not in _command(monkeypatch, 1000, DESKTOP)


def test_a_desktop_opens_the_browser(monkeypatch, not_in_container):
    assert "--no-browser" not in _command(monkeypatch, 1000, DESKTOP)
    assert "--no-browser" not in _command(monkeypatch, 1000, {"WAYLAND_DISPLAY": "wayland-0"})
    assert lab.can_open_browser(HEADLESS, platform="darwin")  # macOS and Windows need no $DISPLAY
    assert lab.can_open_browser(HEADLESS, platform="win32")


def test_no_browser_where_nobody_would_see_it(monkeypatch, not_in_container):
    assert "--no-browser" in _command(monkeypatch, 1000, HEADLESS)  # Linux without a display server
    assert "--no-browser" in _command(monkeypatch, 1000, {**DESKTOP, "SSH_CONNECTION": "10.0.0.1 22 10.0.0.2 22"})
    assert not lab.can_open_browser({"SSH_TTY": "/dev/pts/0"}, platform="darwin")
    assert "--no-browser" in _command(monkeypatch, 1000, {**DESKTOP, "container": "podman"})
    monkeypatch.setattr(lab, "in_container", lambda: True)
    assert "--no-browser" in _command(monkeypatch, 1000, DESKTOP)


def test_the_command_runs_this_python_on_the_repo_on_one_port(monkeypatch, not_in_container):
    command = lab.lab_command(8899, ["--ip=0.0.0.0"], env=DESKTOP)
    assert command[:3] == [sys.executable, "-m", "jupyterlab"]
    assert f"--ServerApp.root_dir={lab.REPO_ROOT}" in command
    assert "--port=8899" in command and "--ServerApp.port_retries=0" in command
    assert command[-1] == "--ip=0.0.0.0"  # the learner's own arguments come last, so they win


def test_free_port_skips_a_port_in_use():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        taken = busy.getsockname()[1]
        assert lab.free_port(taken, tries=5) != taken


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def lab_env(tmp_path):
    """This environment, with Jupyter's runtime, config and data folders in a temporary directory."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "JUPYTER_TOKEN")}
    for name in ("RUNTIME", "CONFIG", "DATA"):
        env[f"JUPYTER_{name}_DIR"] = str(tmp_path / name.lower())
    return env


def _get(url, token):
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10) as response:
        return response.status, response.read()


def test_the_lab_serves_the_first_exercise(lab_env):
    started = time.monotonic()
    process, url = lab.start(port=_free_port(), env=lab_env, timeout=60)
    try:
        parts = urllib.parse.urlsplit(url)
        token = urllib.parse.parse_qs(parts.query)["token"][0]
        assert parts.path == "/lab/tree/rungs/01-when-to-fine-tune/exercise.ipynb"
        base = f"{parts.scheme}://{parts.netloc}/"

        status, body = _get(base + "api/contents/rungs/01-when-to-fine-tune/exercise.ipynb", token)
        notebook = json.loads(body)
        assert status == 200 and notebook["type"] == "notebook"
        cells = notebook["content"]["cells"]
        assert len(cells) > 5 and cells[0]["source"].startswith("# Rung 01")

        status, page = _get(url, token)  # the page the printed URL opens (its JavaScript then loads the notebook)
        assert status == 200 and b"JupyterLab" in page
    finally:
        returncode = lab.stop(process)
    assert process.poll() is not None and returncode == 0
    assert time.monotonic() - started < 60


class _Output:
    """What a process prints, read by a thread: a plain readline waits forever on a pipe that a child of the
    process keeps open after the process itself has gone."""

    def __init__(self, stream):
        self.lines: queue.Queue = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=lambda: [self.lines.put(line) for line in stream] + [self.lines.put(None)],
                         daemon=True).start()

    def until(self, marker: str | None, timeout: float) -> str:
        """Everything printed so far, once a line holds `marker`, the output ends, or `timeout` seconds pass."""
        deadline = time.monotonic() + timeout
        while marker is None or not any(marker in line for line in self.seen):
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            self.seen.append(line)
        return "".join(self.seen)


def _block_ctrl_c():
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})


@pytest.mark.skipif(sys.platform == "win32", reason="Ctrl-C is not a signal one process can send on Windows")
@pytest.mark.parametrize("blocked", [False, True], ids=["plain", "started-with-ctrl-c-blocked"])
def test_ctrl_c_stops_the_lab_cleanly(lab_env, blocked):
    """`python -m shared.lab` as `make lab` runs it: it prints the URL, and Ctrl-C ends it with exit code 0 --
    also when whatever started it had Ctrl-C blocked (inherited: the test suite, after some multiprocessing work,
    once left the launcher deaf to it)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "shared.lab", "--port", str(_free_port())],
        cwd=lab.REPO_ROOT, env=lab_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # its own process group: whatever happens, the finally below leaves no server behind
        preexec_fn=_block_ctrl_c if blocked else None,
    )
    output = _Output(process.stdout)
    try:
        printed = output.until("?token=", timeout=90)
        urls = [line.strip() for line in printed.splitlines() if "?token=" in line]
        if not urls:
            os.killpg(process.pid, signal.SIGKILL)
            pytest.fail(f"no URL printed (exit code {process.wait()}); it printed {printed!r}, and on stderr "
                        f"{process.stderr.read()[-2000:]!r}")
        assert "Open the course in your browser:" in printed
        assert urls[0].startswith("http://localhost:")
        assert "/lab/tree/rungs/01-when-to-fine-tune/exercise.ipynb?token=" in urls[0]
        process.send_signal(signal.SIGINT)  # what Ctrl-C sends
        process.wait(timeout=30)
        out, err = output.until(None, timeout=10), process.stderr.read()
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # the launcher and the server it started, if any is left
        except ProcessLookupError:
            pass
    assert process.returncode == 0
    assert "JupyterLab stopped." in out
    assert "Traceback" not in out + err
