"""``make lab``: start JupyterLab on the course, wherever you are, and print the one URL to open.

    python -m shared.lab                 # what `make lab` runs
    python -m shared.lab --port 8899     # `make lab PORT=8899`; other arguments go to `jupyter lab`

Plain `jupyter lab` stops on a machine where you are root (most containers) and tries to open a browser
on a machine that has none. This launcher adds the flags those machines need, then prints the URL to open,
token included: JupyterLab's own log is long, and it writes `token=...` in place of a token it did not
generate itself. Ctrl-C stops the server and exits cleanly.

Only the standard library is imported here, so the module can be read and tested without JupyterLab.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# The notebook a new learner starts with; the printed URL opens it (the file browser shows the rest).
FIRST_NOTEBOOK = "rungs/01-when-to-fine-tune/exercise.ipynb"
DEFAULT_PORT = 8888  # JupyterLab's own default, so the URL looks the way tutorials show it
READY_TIMEOUT_S = 60


def is_root() -> bool:
    # JupyterLab refuses to run as root unless told --allow-root; Windows has no geteuid and no such check.
    return hasattr(os, "geteuid") and os.geteuid() == 0


def in_container() -> bool:
    # Docker and Podman leave these marks; a browser opened inside a container is one nobody can see.
    return Path("/.dockerenv").exists() or Path("/run/.containerenv").exists()


def can_open_browser(env: dict | None = None, platform: str | None = None) -> bool:
    """True on a desktop, False where a browser would open out of sight (or fail to open at all)."""
    env = os.environ if env is None else env
    platform = sys.platform if platform is None else platform
    if env.get("SSH_CONNECTION") or env.get("SSH_TTY"):
        return False  # a browser would open on the remote machine, not in front of you
    if env.get("container") or in_container():
        return False  # systemd-nspawn and Podman set $container
    if platform.startswith(("linux", "freebsd")):
        return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))  # no display server, no browser
    return True  # macOS and Windows always have a desktop


def lab_command(port: int, extra_args: Sequence[str] = (), env: dict | None = None) -> list[str]:
    """The `jupyter lab` command line, with the flags this machine needs."""
    # `python -m jupyterlab` with this interpreter runs the lab (and its kernels) from the course's .venv.
    command = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={REPO_ROOT}"]
    # Exactly this port or fail: the URL printed below must be the one the server listens on.
    command += [f"--port={port}", "--ServerApp.port_retries=0"]
    if is_root():
        command.append("--allow-root")
    if not can_open_browser(env):
        command.append("--no-browser")
    return command + list(extra_args)  # last, so an argument you pass wins over ours


def free_port(first: int = DEFAULT_PORT, tries: int = 50) -> int:
    # Like JupyterLab: take 8888, or the next port if another server (perhaps an earlier lab) has it.
    for port in range(first, first + tries):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise SystemExit(f"make lab: ports {first}-{first + tries - 1} are all in use; pick one with PORT=...")


def answers(base_url: str, token: str) -> bool:
    """Does the server answer an authenticated request yet?"""
    request = urllib.request.Request(base_url + "api/status", headers={"Authorization": f"token {token}"})
    # No proxy: an http_proxy setting must not send a request for localhost somewhere else.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=2) as response:
            return response.status == 200
    except OSError:  # refused while it starts up (urllib's errors are OSErrors)
        return False


def stop(process: subprocess.Popen, timeout: float = 20) -> int:
    """Stop the server the way Ctrl-C would: it shuts its kernels down and removes its runtime files."""
    if process.poll() is None:
        process.terminate()  # SIGTERM; JupyterLab treats it as a clean shutdown
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


def wait_until_ready(process: subprocess.Popen, base_url: str, token: str, timeout: float) -> None:
    # Printing the URL before the server answers would send you to an error page.
    deadline = time.monotonic() + timeout
    while not answers(base_url, token):
        if process.poll() is not None:
            raise SystemExit(f"make lab: JupyterLab stopped (exit code {process.returncode}); its log is above.")
        if time.monotonic() > deadline:
            raise SystemExit(f"make lab: JupyterLab did not answer at {base_url} within {timeout:.0f} s.")
        time.sleep(0.25)


def start(port: int | None = None, extra_args: Sequence[str] = (), env: dict | None = None,
          timeout: float = READY_TIMEOUT_S) -> tuple[subprocess.Popen, str]:
    """Start the server, wait until it answers, and return (process, URL of the first notebook with token)."""
    env = dict(os.environ if env is None else env)
    port = free_port() if port is None else port
    # Our own token (or yours, if you set JUPYTER_TOKEN), handed over in the environment rather than on
    # the command line, where `ps` shows it to everyone: knowing it lets us print a URL that logs you in.
    token = env.setdefault("JUPYTER_TOKEN", secrets.token_hex(24))
    # stdin from /dev/null: the server never asks "Shut down this server (y/[n])?" on Ctrl-C.
    process = subprocess.Popen(lab_command(port, extra_args, env), env=env, stdin=subprocess.DEVNULL)
    base_url = f"http://localhost:{port}/"
    try:
        wait_until_ready(process, base_url, token, timeout)
    except BaseException:  # not ready in time, or Ctrl-C while it starts: leave no server behind
        stop(process)
        raise
    page = f"lab/tree/{FIRST_NOTEBOOK}" if (REPO_ROOT / FIRST_NOTEBOOK).exists() else "lab"
    return process, f"{base_url}{page}?token={token}"


def _stop_on_signals() -> None:
    """Ctrl-C (SIGINT), closing the terminal (SIGHUP) and `kill` (SIGTERM) all stop the server.

    A process inherits its parent's blocked and ignored signals: started by a program that blocks SIGINT (a test
    runner after some multiprocessing work, an IDE's run button), the launcher would never hear Ctrl-C. So it
    unblocks them and handles each itself, and the server it starts inherits that."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt
    stops = [getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)]
    if hasattr(signal, "pthread_sigmask"):  # not on Windows
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)
    for signum in stops:
        signal.signal(signum, interrupt)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.lab", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, help=f"port to use (default: {DEFAULT_PORT}, or the next free one)")
    args, extra_args = parser.parse_known_args(argv)
    _stop_on_signals()
    process = None
    try:
        process, url = start(args.port, extra_args)
        print(f"\nOpen the course in your browser:\n\n    {url}\n\nCtrl-C stops JupyterLab.\n", flush=True)
        return process.wait()
    except KeyboardInterrupt:
        # Ctrl-C reaches JupyterLab too (same terminal), so it is already shutting down; wait for it,
        # and let a second, impatient Ctrl-C not turn a clean stop into a traceback.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if process is not None:
            stop(process)
        print("\nJupyterLab stopped.", flush=True)
        return 0


if __name__ == "__main__":
    sys.exit(main())
