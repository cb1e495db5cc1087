"""Start the worker processes that run a submission, with limits, inside a sandbox when one is available.

Two modes, chosen automatically (or with ATTNLAB_SANDBOX=bwrap|none):

* ``bwrap`` (bubblewrap, from Debian's ``bubblewrap`` package): new mount, PID, network, IPC and UTS
  namespaces. The worker sees only the operating system's read-only files, the Python installation, a
  private /tmp, a read-only *copy* of the submission's ``attnlab/`` and the worker's three files, and
  (``cuda`` profile only) the NVIDIA device nodes and a read-only /sys. The repository, ``solutions/``,
  ``autograde/`` (hidden tests, references), other students' folders and the results folder are not
  mounted at all. No network.
* ``none``: a plain child process. Every resource limit below still applies, the environment is still
  scrubbed, output is still capped, and the submission still runs from a temporary copy; but the file
  system is *not* hidden (the code could read files its user may read) and the network is not cut. When the
  grader runs as root it drops to the ``nobody`` user, so the code cannot write into the results folder.

Limits in both modes: wall time per exercise (SIGKILL of the whole process group, so SIGINT handlers do
not help); CPU seconds per exercise, read by the judge from /proc (a kernel RLIMIT_CPU sized for all of a
worker's exercises is the backstop); address space; for memory-budget cases, an address-space limit set
inside the worker and confirmed by the judge from /proc/<pid>/limits; number of processes (as ``nobody``);
file size; captured output.
"""
import json
import os
import pwd
import resource
import select
import shutil
import signal
import site
import struct
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from . import profiles, wire
from .errors import SandboxError, WorkerGone

GRADER_DIR = Path(__file__).resolve().parent
WORKER_FILES = ("worker.py", "wire.py", "profiles.py")  # what the sandbox gets of the grader
WORKER_DIR = "_grader"                                    # their folder, next to the submission's attnlab/


@dataclass
class Limits:
    wall_s: float = 20.0           # per exercise: time spent waiting for the submission
    cpu_s: float = 60.0            # per exercise: CPU seconds of the worker (all its threads)
    memory_mb: int = 4096          # address space (RLIMIT_AS)
    processes: int = 64            # RLIMIT_NPROC for the sandbox user
    file_mb: int = 16              # largest file the code may write (RLIMIT_FSIZE)
    output_kb: int = 64            # captured stdout+stderr kept; the rest is counted and dropped
    submission_mb: int = 20        # largest submission copied
    dep_calls: int = 2000          # calls to the reference of a dependency within one learner call
    start_s: float = 60.0          # a worker's start-up (imports torch or matplotlib): not the learner's time


def bwrap_path():
    return shutil.which("bwrap")


def _bwrap_works(path):
    try:
        r = subprocess.run([path, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "true"],
                           capture_output=True, timeout=20)
        return r.returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


_MODE = []


def sandbox_mode():
    """'bwrap' or 'none' (cached). ATTNLAB_SANDBOX=bwrap|none forces a mode."""
    forced = os.environ.get("ATTNLAB_SANDBOX")
    if forced in ("bwrap", "none"):
        if forced == "bwrap" and not (bwrap_path() and _bwrap_works(bwrap_path())):
            raise SandboxError("ATTNLAB_SANDBOX=bwrap but bubblewrap is not installed or cannot run here")
        return forced
    if not _MODE:
        path = bwrap_path()
        _MODE.append("bwrap" if path and _bwrap_works(path) else "none")
    return _MODE[0]


DROPPED_WITHOUT_BWRAP = (
    "no bubblewrap: the submission's code is not hidden from the file system (it could read files such as "
    "solutions/ that its user may read) and has network access; time, CPU, memory, output limits, "
    "the scrubbed environment and data-only results still apply"
)
DROPPED_AS_ROOT = ("it also runs as the grader's own user (root), because `nobody` cannot run this Python: it could "
                   "write wherever the grader can")


def dropped_guarantees(mode):
    """What the unsandboxed mode gives up, in words (None in bwrap mode)."""
    if mode != "none":
        return None
    text = DROPPED_WITHOUT_BWRAP
    if os.getuid() == 0 and not can_drop_to_nobody():
        text += "; " + DROPPED_AS_ROOT
    return text


def _nobody():
    try:
        pw = pwd.getpwnam("nobody")
        return pw.pw_uid, pw.pw_gid
    except KeyError:
        return 65534, 65534


def _drop_privileges():
    uid, gid = _nobody()
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)


_NOBODY_OK = []


def can_drop_to_nobody():
    """True when we run as root and `nobody` can still run this interpreter (it cannot when Python
    lives under /root, as with pyenv); only then does the unsandboxed mode switch users."""
    if os.getuid() != 0:
        return False
    if not _NOBODY_OK:
        try:
            r = subprocess.run([sys.executable, "-I", "-S", "-c", "import numpy"], capture_output=True,
                               timeout=60, preexec_fn=_drop_privileges, cwd="/")
            _NOBODY_OK.append(r.returncode == 0)
        except (OSError, subprocess.SubprocessError):
            _NOBODY_OK.append(False)
    return _NOBODY_OK[0]


# ------------------------------------------------------------------------------ the submission copy
COPY_PREFIX = "attnlab-sub-"


def remove_stale_copies():
    """Delete submission copies left in the temp folder by graders that were killed (their pid is gone)."""
    for path in Path(tempfile.gettempdir()).glob(f"{COPY_PREFIX}*"):
        try:
            pid = int(path.name[len(COPY_PREFIX):].split("-", 1)[0])
        except ValueError:
            continue
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except PermissionError:
            pass


def copy_submission(package_dir, limits):
    """Copy the submission's attnlab/ (regular files only, no links) into a fresh world-readable folder,
    with the worker's files in _grader/ beside it."""
    package_dir = Path(package_dir)
    tmp = Path(tempfile.mkdtemp(prefix=f"{COPY_PREFIX}{os.getpid()}-"))
    os.chmod(tmp, 0o755)
    dest = tmp / "attnlab"
    total = 0
    for src in sorted(package_dir.rglob("*")):
        rel = src.relative_to(package_dir)
        if src.is_symlink() or "__pycache__" in rel.parts:
            continue
        target = dest / rel
        if src.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        if not src.is_file():
            continue
        total += src.stat().st_size
        if total > limits.submission_mb * 1024 * 1024:
            shutil.rmtree(tmp, ignore_errors=True)
            raise SandboxError(f"submission is larger than {limits.submission_mb} MB")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
    dest.mkdir(exist_ok=True)
    (tmp / WORKER_DIR).mkdir()
    for name in WORKER_FILES:
        shutil.copyfile(GRADER_DIR / name, tmp / WORKER_DIR / name)
    for path in [tmp, *tmp.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    return tmp


# ------------------------------------------------------------------------------ matplotlib's cache
_FONT_CACHE_LOCK = threading.Lock()
_FONT_CACHE = []


def font_cache_dir():
    """A folder holding matplotlib's font list, built once per grader installation (about a second), so
    that no worker ever rebuilds it. Returns None when matplotlib is not installed."""
    with _FONT_CACHE_LOCK:
        if _FONT_CACHE:
            return _FONT_CACHE[0]
        try:
            import matplotlib
        except ImportError:
            _FONT_CACHE.append(None)
            return None
        base = Path(os.environ.get("ATTNLAB_CACHE") or GRADER_DIR.parent / ".attnlab")
        target = base / f"mpl-fontcache-{matplotlib.__version__}"
        if not any(target.glob("fontlist*.json")):
            try:
                base.mkdir(parents=True, exist_ok=True)
                building = Path(tempfile.mkdtemp(prefix="building-", dir=base))
            except OSError:  # a read-only installation: build in the temp folder instead
                building = Path(tempfile.mkdtemp(prefix="attnlab-mpl-"))
                target = building
            env = dict(os.environ, MPLCONFIGDIR=str(building), MPLBACKEND="Agg")
            subprocess.run([sys.executable, "-c", "import matplotlib.font_manager"], env=env,
                           capture_output=True, timeout=300, check=False)
            if building != target:
                try:
                    os.rename(building, target)  # atomic: a concurrent grader's copy wins, ours goes
                except OSError:
                    shutil.rmtree(building, ignore_errors=True)
        for path in [target, *target.glob("*")]:
            try:
                os.chmod(path, 0o755 if path.is_dir() else 0o644)
            except OSError:
                pass
        _FONT_CACHE.append(str(target))
        return _FONT_CACHE[0]


# ------------------------------------------------------------------------------------------ GPUs
def nvidia_device_nodes():
    return sorted(str(p) for p in Path("/dev").glob("nvidia*") if not p.is_dir())


_CUDA = []


def host_cuda():
    """(available, reason): can the judge's own PyTorch use a CUDA device? Cached."""
    if not _CUDA:
        try:
            import torch

            if torch.cuda.is_available():
                _CUDA.append((True, torch.cuda.get_device_name(0)))
            else:
                _CUDA.append((False, "no CUDA device (torch.cuda.is_available() is False in the grader)"))
        except Exception as exc:
            _CUDA.append((False, f"PyTorch cannot use CUDA here ({type(exc).__name__}: {exc})"))
    return _CUDA[0]


# ----------------------------------------------------------------------------------- the process
def _site_dirs():
    dirs = []
    for p in [*site.getsitepackages(), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]:
        if p not in dirs and os.path.isdir(p):
            dirs.append(p)
    return dirs


_HIDE = ("autograde", "attnlab", "attention_course", "__editable__")


def _bwrap_argv(copy_dir, config_json, profile, font_cache):
    # Mount order matters: the private /tmp first, so that a Python installed under /tmp (a venv in a
    # fresh clone there) is bound on top of it rather than hidden by it.
    argv = [bwrap_path(), "--unshare-all", "--die-with-parent", "--new-session", "--hostname", "sandbox",
            "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    if os.getuid() == 0:
        argv += ["--uid", "65534", "--gid", "65534"]
    for d in ("/usr", "/etc/alternatives", "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d"):
        if os.path.exists(d):
            argv += ["--ro-bind", d, d]
    for link in ("lib", "lib64", "bin", "sbin", "lib32"):
        p = Path("/") / link
        if p.is_symlink():
            argv += ["--symlink", os.readlink(p), str(p)]
        elif p.is_dir():
            argv += ["--ro-bind", str(p), str(p)]
    prefixes = []
    for p in (sys.base_prefix, sys.prefix, os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))):
        p = os.path.realpath(p)
        if not any(p == q or p.startswith(q + os.sep) for q in prefixes) and not p.startswith("/usr"):
            prefixes.append(p)
    for p in prefixes:
        argv += ["--ro-bind", p, p]
    if os.path.abspath(sys.prefix) != os.path.realpath(sys.prefix):
        argv += ["--ro-bind", os.path.abspath(sys.prefix), os.path.abspath(sys.prefix)]
    for sdir in _site_dirs():
        for entry in sorted(os.listdir(sdir)):
            if entry.startswith(_HIDE) or entry.split("-", 1)[0].split(".", 1)[0] in profile.unavailable:
                full = os.path.join(sdir, entry)
                argv += (["--tmpfs", full] if os.path.isdir(full) else ["--ro-bind", "/dev/null", full])
    if profile.gpu:
        for node in nvidia_device_nodes():
            argv += ["--dev-bind", node, node]
        argv += ["--ro-bind", "/sys", "/sys"]
    if font_cache:
        argv += ["--ro-bind", font_cache, "/mplcache"]
    argv += ["--ro-bind", str(copy_dir), "/submission", "--chdir", "/submission", "--clearenv"]
    for k, v in _clean_env("/tmp", profile).items():
        argv += ["--setenv", k, v]
    argv += [sys.executable, "-I", "-S", "-B", f"/submission/{WORKER_DIR}/worker.py", config_json]
    return argv


def _clean_env(home, profile):
    threads = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")}
    env = {"PATH": "/usr/bin:/bin", "HOME": home, "LANG": "C.UTF-8", "PYTHONHASHSEED": "0",
           "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg", "TMPDIR": "/tmp", **threads}
    passed = ["OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"]  # needed on some CPUs (see machine notes)
    if profile.gpu:
        passed += ["CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "LD_LIBRARY_PATH"]
    for k in passed:
        if k in os.environ:
            env[k] = os.environ[k]
    return env


def _children(pid):
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                found += [int(c) for c in fh.read().split()]
    except OSError:
        pass
    return found


def _find_worker_pid(root_pid):
    """The pid (as the judge sees it) of the Python worker under `root_pid` (bwrap forks twice)."""
    todo, seen = [root_pid], set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                argv = fh.read().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"/worker.py") for a in argv) and not argv[0].endswith(b"bwrap"):
            return pid
        todo += _children(pid)
    return None


def _cpu_seconds(pid):
    """User + system CPU seconds of a process, all its threads (from /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def address_space_limit(pid):
    """(soft, hard) 'Max address space' of a process in bytes, read from /proc/<pid>/limits (None = unlimited)."""
    with open(f"/proc/{pid}/limits") as fh:
        for line in fh:
            if line.startswith("Max address space"):
                parts = line.split()
                return tuple(None if v == "unlimited" else int(v) for v in parts[3:5])
    raise OSError(f"no address-space limit in /proc/{pid}/limits")


class _Channel:
    """The judge's end of a pipe: every read and write gives up at the deadline (and, while the worker
    computes, when it has used its CPU budget), so no worker can hang the grader."""

    def __init__(self, fd, worker):
        self.fd, self.worker, self.deadline = fd, worker, None
        os.set_blocking(fd, False)

    def _wait(self, readable):
        left = (self.deadline or time.monotonic() + 30) - time.monotonic()
        if left <= 0:
            raise WorkerGone("timed out", timed_out=True)
        r, w, _ = select.select([self.fd] if readable else [], [] if readable else [self.fd], [], min(left, 0.5))
        if not (r or w):
            self.worker.check_cpu()
        return bool(r or w)

    def read_exact(self, n):
        chunks, left = [], n
        while left:
            if not self._wait(True):
                continue
            try:
                chunk = os.read(self.fd, min(left, 1 << 20))
            except BlockingIOError:
                continue
            if not chunk:
                raise EOFError("peer closed the channel")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def write_all(self, data):
        view = memoryview(data)
        while view:
            if not self._wait(False):
                continue
            try:
                written = os.write(self.fd, view)
            except BlockingIOError:
                continue
            view = view[written:]


class Worker:
    """One sandboxed worker process of one profile, serving requests into a submission's package."""

    def __init__(self, copy_dir, limits, mode, profile="numpy", memory_budget_mb=None, exercises=1):
        self.copy_dir, self.limits, self.mode = Path(copy_dir), limits, mode
        self.profile = profiles.get(profile)
        self.memory_budget_mb = memory_budget_mb
        self.exercises = max(1, int(exercises))  # how many exercises it will serve: sizes the CPU backstop
        self.proc = None
        self.pid = None            # the Python worker's own pid (under bwrap: a grandchild)
        self.info = {}             # what the worker reported when ready (versions, CUDA, memory limit)
        self.output = bytearray()
        self.output_total = 0
        self.cpu_mark = None       # CPU seconds used when the current exercise began

    # -- lifetime ------------------------------------------------------------------------
    def start(self):
        cmd_r, cmd_w = os.pipe()
        res_r, res_w = os.pipe()
        out_r, out_w = os.pipe()
        limits = self.limits
        in_sandbox = self.mode == "bwrap"
        font_cache = font_cache_dir() if "matplotlib" in self.profile.preload else None
        root = "/submission" if in_sandbox else str(self.copy_dir)
        config = {"submission": root, "site": _site_dirs(), "fds": [cmd_r, res_w], "profile": self.profile.name,
                  "memory_budget_mb": self.memory_budget_mb,
                  "mpl_cache": ("/mplcache" if in_sandbox else font_cache) if font_cache else None,
                  "mpl_config_dir": "/tmp/mplconfig" if in_sandbox else str(self.copy_dir / ".mplconfig")}
        config_json = json.dumps(config)
        if in_sandbox:
            argv = _bwrap_argv(self.copy_dir, config_json, self.profile, font_cache)
            env = None
        else:
            argv = [sys.executable, "-I", "-S", "-B", str(self.copy_dir / WORKER_DIR / "worker.py"), config_json]
            env = _clean_env(str(self.copy_dir), self.profile)
            os.makedirs(config["mpl_config_dir"], exist_ok=True)
            os.chmod(config["mpl_config_dir"], 0o777)

        drop = not in_sandbox and can_drop_to_nobody()
        # The kernel's CPU limit is a backstop sized for every exercise this worker serves; the judge reads
        # the worker's CPU time from /proc and enforces limits.cpu_s per exercise.
        cpu_backstop = int(limits.cpu_s * self.exercises + limits.start_s)

        def preexec():
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            resource.setrlimit(resource.RLIMIT_CPU, (cpu_backstop, cpu_backstop + 5))
            resource.setrlimit(resource.RLIMIT_AS, (limits.memory_mb << 20,) * 2)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_mb << 20,) * 2)
            if drop:
                _drop_privileges()
            if os.getuid() != 0:  # root is exempt from RLIMIT_NPROC; the worker's audit hook blocks fork
                resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes,) * 2)

        try:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out_w, stderr=out_w, env=env,
                cwd=str(self.copy_dir), pass_fds=(cmd_r, res_w), preexec_fn=preexec,
                start_new_session=True)
        except OSError as exc:
            for fd in (cmd_r, cmd_w, res_r, res_w, out_r, out_w):
                os.close(fd)
            raise SandboxError(f"could not start the worker: {exc}") from exc
        for fd in (cmd_r, res_w, out_w):
            os.close(fd)
        self.cmd_fd, self.res_fd = cmd_w, res_r
        self.cmd, self.res = _Channel(cmd_w, self), _Channel(res_r, self)
        self._reader = threading.Thread(target=self._drain, args=(out_r,), daemon=True)
        self._reader.start()
        message, _ = self._receive(deadline=time.monotonic() + max(self.limits.wall_s, limits.start_s))
        if message.get("op") != "ready":
            detail = message.get("message", message.get("op"))
            self.kill()
            raise SandboxError(f"the {self.profile.name} worker did not start: {detail}")
        self.info = message.get("info") or {}
        self.pid = self.proc.pid if not in_sandbox else _find_worker_pid(self.proc.pid)
        if self.memory_budget_mb:
            self.confirm_memory_limit()

    def confirm_memory_limit(self):
        """Read the worker's address-space limit from outside: it must be the one it reported arming, and
        no more than its usage at start plus the budget. Raises SandboxError otherwise."""
        armed = self.info.get("memory_limit")
        try:
            soft, hard = address_space_limit(self.pid)
        except (OSError, TypeError) as exc:
            raise SandboxError(f"could not read the worker's memory limit from /proc: {exc}") from None
        if armed is None or soft != armed or hard != armed:
            raise SandboxError(f"the worker's address-space limit is {soft}/{hard} bytes, not the armed {armed}")
        return armed

    def _drain(self, fd):
        cap = self.limits.output_kb * 1024
        try:
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                self.output_total += len(chunk)
                if len(self.output) < cap:
                    self.output += chunk[: cap - len(self.output)]
        finally:
            os.close(fd)

    def kill(self):
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.kill()
        except ProcessLookupError:
            pass
        self.proc.wait()
        for fd in (self.cmd_fd, self.res_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        self._reader.join(timeout=5)
        self.proc = None

    def close(self):
        if self.proc is not None:
            try:
                self._send({"op": "exit"}, deadline=time.monotonic() + 1)
            except (OSError, WorkerGone):
                pass
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
            self.kill()

    @property
    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    # -- CPU accounting ----------------------------------------------------------------------
    def cpu_seconds(self):
        try:
            return _cpu_seconds(self.pid) if self.pid else 0.0
        except (OSError, ValueError, IndexError):
            return 0.0

    def check_cpu(self):
        """Called while the judge waits: stop an exercise that has used its CPU budget (all threads)."""
        if self.cpu_mark is not None and self.cpu_seconds() - self.cpu_mark > self.limits.cpu_s:
            raise WorkerGone(f"used more than {self.limits.cpu_s:g} CPU seconds", timed_out=True)

    # -- messages ----------------------------------------------------------------------------
    def _receive(self, deadline, resolve_handle=None):
        self.res.deadline = deadline
        try:
            return wire.receive(self.res)
        except EOFError:
            code = self.proc.wait()
            raise WorkerGone(_exit_reason(code)) from None
        except (wire.WireError, ValueError, UnicodeDecodeError, struct.error, RecursionError) as exc:
            raise WorkerGone(f"sent malformed data ({exc})") from None

    def _send(self, message, values=None, deadline=None):
        self.cmd.deadline = deadline
        try:
            wire.send(self.cmd, message, values)
        except (BrokenPipeError, OSError):
            code = self.proc.wait()
            raise WorkerGone(_exit_reason(code)) from None

    def reset(self, deadline):
        """Start a new exercise: the worker forgets its objects and the submission's modules; the CPU
        budget starts again."""
        self._send({"op": "reset"}, deadline=deadline)
        message, _ = self._receive(deadline)
        if message.get("op") != "reset_done":
            raise WorkerGone(f"sent an unexpected message {message.get('op')!r}")
        self.cpu_mark = self.cpu_seconds()

    def import_module(self, module, deadline):
        """Import attnlab.<module> in the worker. Returns the reply message ('imported' or 'raised')."""
        self._send({"op": "import", "module": module}, deadline=deadline)
        message, _ = self._receive(deadline)
        if message.get("op") not in ("imported", "raised"):
            raise WorkerGone(f"sent an unexpected message {message.get('op')!r}")
        return message

    def call(self, request, args, kwargs, deps, forbidden, dep_handler, deadline):
        """Run one request (see worker.Session.run) in the worker. Returns (message, value, judge_seconds).

        While it runs, the worker may ask for a dependency's reference result (only the exercise's declared
        dependencies, at most limits.dep_calls times, and only for inputs no larger than those it was given)
        and may report forbidden calls as they happen; those reports count even if the final message omits
        them. The judge's own time on dependencies moves the deadline and is returned, not charged."""
        values = {"args": list(args), "kwargs": dict(kwargs)}
        bound = _ArrayBound(values)
        self._send({"op": "call", "request": request, "deps": list(deps),
                    "forbidden": [list(f) for f in forbidden]}, values, deadline)
        hits, judge_seconds, dep_calls = [], 0.0, 0
        while True:
            message, values = self._receive(deadline)
            op = message.get("op")
            if op == "forbidden_hit":
                hits.append(str(message.get("name", "?")))
                continue
            if op == "dep_call":
                started = time.monotonic()
                name = message.get("name")
                dep_calls += 1
                if name not in deps:
                    problem = f"{name!r} is not a dependency of this exercise"
                elif dep_calls > self.limits.dep_calls:
                    problem = (f"more than {self.limits.dep_calls} calls to {name} in one call: "
                               "call it on whole arrays, not element by element")
                else:
                    problem = bound.refuse(values)
                if problem:
                    reply = ({"op": "dep_error", "message": problem}, None)
                else:
                    try:
                        value, states = dep_handler(name, values["args"], values["kwargs"])
                        reply = ({"op": "dep_result"}, {"value": value, "generators": states})
                    except Exception as exc:  # the reference refused the learner's arguments
                        reply = ({"op": "dep_error", "message": f"{type(exc).__name__}: {exc}"}, None)
                spent = time.monotonic() - started
                judge_seconds += spent
                deadline += spent
                self._send(reply[0], reply[1], deadline)
                continue
            if op in ("result", "raised"):
                reported = list(message.get("forbidden") or [])
                message["forbidden"] = reported + [h for h in hits if h not in reported]
                return message, (values or {}).get("value"), judge_seconds
            raise WorkerGone(f"sent an unexpected message {op!r}")


class _ArrayBound:
    """What a dependency call may ask the judge to compute: arrays no larger, in total elements, number of
    dimensions or any one dimension, than the inputs the judge itself sent (so the judge's memory stays
    bounded whatever the submission asks)."""

    def __init__(self, sent):
        shapes = _shapes(sent)
        self.elements = 4 * sum(_prod(s) for s in shapes) + 64
        self.ndim = max((len(s) for s in shapes), default=1) + 1
        self.dim = max([64] + [d for s in shapes for d in s])

    def refuse(self, values):
        shapes = _shapes(values)
        if sum(_prod(s) for s in shapes) > self.elements:
            return "arrays larger than the exercise's inputs"
        if any(len(s) > self.ndim or any(d > self.dim for d in s) for s in shapes):
            return "arrays of a larger shape than the exercise's inputs"
        return None


def _prod(shape):
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _shapes(value):
    shape = getattr(value, "shape", None)
    if shape is not None and hasattr(value, "dtype"):  # a numpy array or a torch tensor
        return [tuple(int(d) for d in shape)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _shapes(v)]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _shapes(v)]
    return []


def _exit_reason(code):
    if code is None:
        return "stopped answering"
    if code < 0:
        sig = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        hints = {"SIGXCPU": " (CPU time limit)", "SIGKILL": " (killed: memory or time limit)",
                 "SIGXFSZ": " (file size limit)", "SIGSEGV": " (crashed)"}
        return f"the process was killed by {sig}{hints.get(sig, '')}"
    return f"the process exited with code {code} (sys.exit or os._exit in the submission?)"
