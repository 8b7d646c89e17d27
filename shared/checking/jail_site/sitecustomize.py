"""A learner's code, while it is graded, stays in its submission's folder.

Python imports this module at start-up when its folder is on PYTHONPATH (``shared.checking.jail`` puts it there
for the notebook's kernel and the Python commands the notebook starts; the graded functions' process calls
``install`` itself). With FT_JAIL set -- {"root": folder, "deny": [folders]} -- an audit hook (PEP 578) refuses:

* reading anything under a denied folder (the other submissions, the grading results, the hidden tests, the
  solutions), unless it is inside the submission's own folder;
* writing, renaming, deleting or linking anything outside the submission's own folder (and /dev);
* the notebook's own code starting a program other than Python or a few read-only system probes, or a Python
  without the jail. A library may start what it likes (torch's environment report runs shell commands; the
  program runs, the library's code is not the learner's).

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
# Programs libraries start to look around -- ctypes.util.find_library (ldconfig, gcc, objdump), GPU probes,
# matplotlib's font list, lm-evaluation-harness recording the git commit it ran at: refusing them would fail a
# notebook under grading that passes under `make check` (bench/jail_audit.py runs every solution under the jail
# and lists what it would refuse).
PROBES = {"ldconfig", "ldconfig.real", "uname", "nvidia-smi", "gcc", "cc", "ld", "objdump", "lscpu", "nvcc",
          "fc-list", "fc-match", "git", "hostname", "which", "lsb_release"}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_OWN_FOLDER = os.path.dirname(os.path.abspath(__file__))
_STANDARD_LIBRARY = os.path.dirname(os.__file__)
# Jupyter's own code runs what the learner types (`!cat ...`): it is the learner's hand, not a library.
_SHELL_PACKAGES = tuple(os.sep + name + os.sep for name in ("IPython", "ipykernel", "pexpect", "ptyprocess"))
# Code that is not the learner's: installed packages, and the course's own package (shared/).
_LIBRARIES = (os.sep + "site-packages" + os.sep, os.sep + "dist-packages" + os.sep,
              os.path.dirname(os.path.dirname(_OWN_FOLDER)) + os.sep)


class _Jail:
    def __init__(self, root, deny, log_only=False):
        self.root = os.path.realpath(root)
        self.deny = [os.path.realpath(path) for path in deny]
        self.log_only = log_only   # note what would be refused, refuse nothing (bench/jail_audit.py)
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
        if name in PROBES or _started_by_a_library():
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
        if not self.log_only:
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


def _started_by_a_library():
    """Whether the code that asked for a program (the first frame above the standard library's subprocess and os
    machinery, Jupyter's shell and this hook) is a library's rather than the notebook's."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        inside_machinery = filename == __file__ or any(shell in filename for shell in _SHELL_PACKAGES) or (
            filename.startswith(_STANDARD_LIBRARY) and not any(library in filename for library in _LIBRARIES[:2]))
        if not inside_machinery:
            return any(library in filename for library in _LIBRARIES)
        frame = frame.f_back
    return False


def _refuse_shell(jail, args):
    if _started_by_a_library():
        return
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
    sys.addaudithook(_Jail(settings["root"], settings.get("deny", []), settings.get("log_only", False)))
    return True


install()
