"""A learner's code, while it is graded, stays in its submission's folder.

Python imports this module at start-up when its folder is on PYTHONPATH (``shared.checking.jail`` puts it there
for the notebook's kernel and the Python commands the notebook starts; the graded functions' process calls
``install`` itself). With FT_JAIL set -- {"root": folder, "deny": [folders]} -- an audit hook (PEP 578) refuses:

* reading anything under a denied folder (the other submissions, the grading results, the hidden tests, the
  solutions), unless it is inside the submission's own folder;
* writing, renaming, deleting or linking anything outside the submission's own folder (and /dev);
* starting a program other than Python or a few read-only system probes, or a Python without the jail.

An audit hook cannot be removed once installed, but it is not a security boundary: code that reaches C
(ctypes, a compiled extension) is not watched. It keeps honest mistakes and casual copying out of a grading
run; untrusted code needs a container as well (docs/grading.md gives the command). Standard library only: it
also starts inside the fine-tuning frameworks' own environments, where the course's package is not installed.
"""

import json
import os
import sys

JAIL_VAR = "FT_JAIL"
REFUSED_LOG = "refused.log"   # in the root: each refusal, for the grading report (a notebook may hide the error)
# Programs some libraries start to look around (ctypes.util.find_library, GPU probes): harmless, and refusing
# them would fail a notebook under grading that passes under `make check`.
PROBES = {"ldconfig", "ldconfig.real", "uname", "nvidia-smi", "gcc", "cc", "ld", "objdump", "lscpu", "nvcc"}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_OWN_FOLDER = os.path.dirname(os.path.abspath(__file__))


class _Jail:
    def __init__(self, root, deny):
        self.root = os.path.realpath(root)
        self.deny = [os.path.realpath(path) for path in deny]
        self.spec = os.environ.get(JAIL_VAR, "")

    # -- paths -------------------------------------------------------------------------------------
    @staticmethod
    def _real(path, dir_fd=None):
        """The absolute, link-free path an operation reaches (relative to `dir_fd` when one is given, as
        shutil.rmtree does)."""
        if isinstance(path, int):
            return None   # an open file descriptor: what it names was checked when it was opened
        try:
            name = os.fsdecode(os.fspath(path))
            if isinstance(dir_fd, int) and not os.path.isabs(name):
                name = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), name)
            return os.path.realpath(name)
        except (TypeError, ValueError, OSError):
            return None

    @staticmethod
    def _under(path, folder):
        return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)

    def _check_read(self, path, dir_fd=None):
        real = self._real(path, dir_fd)
        if real is None or self._under(real, self.root):
            return
        if any(self._under(real, folder) for folder in self.deny):
            self._refuse(f"grading: {real} is outside this submission's folder, and may not be read while it "
                         "is graded")

    def _check_write(self, path, dir_fd=None):
        real = self._real(path, dir_fd)
        if real is None or self._under(real, self.root) or self._under(real, "/dev"):
            return
        self._refuse(f"grading: {real} is outside this submission's folder; a graded notebook writes only there "
                     "(outputs_dir() does)")

    # -- programs ----------------------------------------------------------------------------------
    def _check_program(self, executable, env):
        name = os.path.basename(os.fsdecode(executable or ""))
        if name in PROBES:
            return
        if not (name.startswith("python") or self._python_script(executable)):
            self._refuse(f"grading: a graded notebook may start Python commands only, not {name!r}")
        if env is not None and (env.get(JAIL_VAR) != self.spec or _OWN_FOLDER not in env.get("PYTHONPATH", "")):
            self._refuse("grading: a Python command started with an environment of its own must keep "
                         f"{JAIL_VAR} and PYTHONPATH (pass env={{**os.environ, ...}})")

    @staticmethod
    def _python_script(executable):
        """A console script (trl, accelerate): a text file whose first line runs Python."""
        try:
            with open(executable, "rb") as script:
                return b"python" in script.readline(200)
        except OSError:
            return False

    def _refuse(self, message):
        """Note the refusal where the grader reads it, then raise it: a notebook that catches the error (as
        glob does) still shows in the report as having tried."""
        try:
            with open(os.path.join(self.root, REFUSED_LOG), "a", encoding="utf-8") as log:
                log.write(message.replace("\n", " ") + "\n")
        except OSError:
            pass
        raise PermissionError(message)

    # -- the hook ----------------------------------------------------------------------------------
    def __call__(self, event, args):
        if event not in _WATCHED:
            return
        _WATCHED[event](self, args)


def _open(jail, args):
    path, mode, flags = args
    writing = (isinstance(mode, str) and any(m in mode for m in "wax+")) or bool((flags or 0) & WRITE_FLAGS)
    (jail._check_write if writing else jail._check_read)(path)


def _popen(jail, args):
    executable, argv, _cwd, env = args
    program = executable or (argv[0] if isinstance(argv, (list, tuple)) and argv else argv)
    if isinstance(program, (str, bytes)) and os.sep not in os.fsdecode(program):
        import shutil

        program = shutil.which(os.fsdecode(program)) or program
    jail._check_program(program, env)


def _refuse_shell(jail, args):
    jail._refuse("grading: os.system is not allowed while a notebook is graded (use subprocess.run with a list, "
                 "for a Python command)")


def _glob(jail, args):
    """glob swallows the errors of the folders it lists: refuse the pattern itself when its fixed part (up to
    the first wildcard) lies in a denied folder."""
    pattern, root_dir = os.fsdecode(args[0]), (args[2] if len(args) > 2 else None)
    fixed = pattern[:min([pattern.find(c) for c in "*?[" if c in pattern] or [len(pattern)])]
    if root_dir is not None and not os.path.isabs(fixed):
        fixed = os.path.join(os.fsdecode(root_dir), fixed)
    jail._check_read(os.path.dirname(fixed) or ".")


_WATCHED = {
    "open": _open,
    "os.listdir": lambda jail, args: jail._check_read(args[0] if args[0] is not None else "."),
    "os.scandir": lambda jail, args: jail._check_read(args[0] if args[0] is not None else "."),
    # (the events' arguments: path first, dir_fd last -- https://docs.python.org/3/library/audit_events.html)
    "os.remove": lambda jail, args: jail._check_write(args[0], args[-1]),
    "os.rmdir": lambda jail, args: jail._check_write(args[0], args[-1]),
    "os.mkdir": lambda jail, args: jail._check_write(args[0], args[-1]),
    "os.rename": lambda jail, args: (jail._check_write(args[0], args[2]), jail._check_write(args[1], args[3])),
    "os.replace": lambda jail, args: (jail._check_write(args[0], args[2]), jail._check_write(args[1], args[3])),
    "os.link": lambda jail, args: (jail._check_read(args[0], args[2]), jail._check_write(args[1], args[3])),
    "os.symlink": lambda jail, args: jail._check_write(args[1], args[-1]),
    "os.truncate": lambda jail, args: jail._check_write(args[0]),
    "os.chmod": lambda jail, args: jail._check_write(args[0], args[-1]),
    "os.chown": lambda jail, args: jail._check_write(args[0], args[-1]),
    "os.utime": lambda jail, args: jail._check_write(args[0], args[-1]),
    "shutil.rmtree": lambda jail, args: jail._check_write(args[0], args[-1]),
    "os.system": _refuse_shell,
    "glob.glob": _glob,
    "glob.glob/2": _glob,
    "subprocess.Popen": _popen,
    "os.exec": lambda jail, args: jail._check_program(args[0], args[2]),
    "os.posix_spawn": lambda jail, args: jail._check_program(args[0], args[2]),
    "os.spawn": lambda jail, args: jail._check_program(args[1], args[3]),
}


def install(spec=None):
    """Install the hook from `spec` (FT_JAIL's JSON) or the environment; nothing when neither is set."""
    spec = spec if spec is not None else os.environ.get(JAIL_VAR)
    if not spec:
        return False
    settings = json.loads(spec)
    os.environ[JAIL_VAR] = spec
    sys.addaudithook(_Jail(settings["root"], settings.get("deny", [])))
    return True


install()
