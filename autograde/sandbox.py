"""Start the worker process that runs a submission, with limits, inside a sandbox when one is available.

Two modes, chosen automatically (or with ATTNLAB_SANDBOX=bwrap|none):

* ``bwrap`` (bubblewrap, from Debian's ``bubblewrap`` package): new mount, PID, network, IPC and UTS
  namespaces. The worker sees only the operating system's read-only files, the Python installation, a
  private /tmp, a read-only *copy* of the submission's ``attnlab/`` and the worker script. The repository,
  ``solutions/``, ``autograde/`` (hidden tests, references), other students' folders and the results folder
  are not mounted at all. No network.
* ``none``: a plain child process. Every resource limit below still applies, the environment is still
  scrubbed, output is still capped, and the submission still runs from a temporary copy; but the file
  system is *not* hidden (the code could read files its user may read) and the network is not cut. When the
  grader runs as root it drops to the ``nobody`` user, so the code cannot write into the results folder.

Limits in both modes: wall time per exercise (SIGKILL of the whole process group, so SIGINT handlers do
not help), CPU seconds, address space, number of processes (as ``nobody``), file size, captured output.
"""
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

import numpy as np

from . import worker as wire

WORKER_SOURCE = Path(wire.__file__)


@dataclass
class Limits:
    wall_s: float = 20.0           # per exercise, checked by the judge
    cpu_s: int = 120               # per worker process (RLIMIT_CPU)
    memory_mb: int = 4096          # address space (RLIMIT_AS)
    processes: int = 64            # RLIMIT_NPROC for the sandbox user
    file_mb: int = 16              # largest file the code may write (RLIMIT_FSIZE)
    output_kb: int = 64            # captured stdout+stderr kept; the rest is counted and dropped
    submission_mb: int = 20        # largest submission copied


class SandboxError(Exception):
    """The submission could not be prepared or the worker could not be started."""


class WorkerGone(Exception):
    """The worker died, hung past its wall time, or broke the protocol."""

    def __init__(self, reason, timed_out=False):
        super().__init__(reason)
        self.reason, self.timed_out = reason, timed_out


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
    """Copy the submission's attnlab/ (regular files only, no links) into a fresh world-readable folder."""
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
    for path in [tmp, *tmp.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    shutil.copyfile(WORKER_SOURCE, tmp / "worker.py")
    os.chmod(tmp / "worker.py", 0o644)
    return tmp


def _site_dirs():
    dirs = []
    for p in [*site.getsitepackages(), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]:
        if p not in dirs and os.path.isdir(p):
            dirs.append(p)
    return dirs


_HIDE = ("autograde", "attnlab", "attention_course", "__editable__")
TORCH_PACKAGES = ("torch", "torchgen", "functorch", "triton", "scipy")


def _bwrap_argv(copy_dir, config_json, unavailable=()):
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
            if entry.startswith(_HIDE) or entry.split("-", 1)[0].split(".", 1)[0] in unavailable:
                full = os.path.join(sdir, entry)
                argv += (["--tmpfs", full] if os.path.isdir(full) else ["--ro-bind", "/dev/null", full])
    argv += ["--ro-bind", str(copy_dir), "/submission", "--chdir", "/submission",
             "--clearenv"]
    for k, v in _clean_env("/tmp").items():
        argv += ["--setenv", k, v]
    argv += [sys.executable, "-I", "-S", "-B", "/submission/worker.py", config_json]
    return argv


def _clean_env(home):
    threads = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")}
    env = {"PATH": "/usr/bin:/bin", "HOME": home, "LANG": "C.UTF-8", "PYTHONHASHSEED": "0",
           "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg", "TMPDIR": "/tmp", **threads}
    for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):  # needed on some CPUs (see machine notes)
        if k in os.environ:
            env[k] = os.environ[k]
    return env


class _Channel:
    """The judge's end of a pipe: every read and write gives up at the deadline, so a worker that sends
    half a message, or stops reading, cannot hang the grader."""

    def __init__(self, fd, worker):
        self.fd, self.worker, self.deadline = fd, worker, None
        os.set_blocking(fd, False)

    def _wait(self, readable):
        left = (self.deadline or time.monotonic() + 30) - time.monotonic()
        if left <= 0:
            raise WorkerGone("timed out", timed_out=True)
        r, w, _ = select.select([self.fd] if readable else [], [] if readable else [self.fd], [], min(left, 0.5))
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
    """One sandboxed worker process serving calls into a submission's package."""

    def __init__(self, copy_dir, limits, mode, unavailable=()):
        self.copy_dir, self.limits, self.mode = Path(copy_dir), limits, mode
        self.unavailable = tuple(unavailable)  # top-level packages the submission may not import
        self.proc = None
        self.output = bytearray()
        self.output_total = 0
        self.cpu_used = 0.0

    # -- lifetime ------------------------------------------------------------------------
    def start(self):
        cmd_r, cmd_w = os.pipe()
        res_r, res_w = os.pipe()
        out_r, out_w = os.pipe()
        limits = self.limits
        in_sandbox = self.mode == "bwrap"
        config = {"submission": "/submission" if in_sandbox else str(self.copy_dir),
                  "site": _site_dirs(), "fds": [cmd_r, res_w], "unavailable": list(self.unavailable)}
        import json
        config_json = json.dumps(config)
        if in_sandbox:
            argv = _bwrap_argv(self.copy_dir, config_json, self.unavailable)
            env = None
        else:
            argv = [sys.executable, "-I", "-S", "-B", str(self.copy_dir / "worker.py"), config_json]
            env = _clean_env(str(self.copy_dir))

        drop = not in_sandbox and can_drop_to_nobody()

        def preexec():
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 5))
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
        message, _ = self._receive(deadline=time.monotonic() + max(self.limits.wall_s, 30.0))
        if message.get("op") != "ready":
            self.kill()
            raise WorkerGone(f"worker did not start: {message.get('message', message.get('op'))}")

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

    # -- messages ------------------------------------------------------------------------
    def _receive(self, deadline):
        self.res.deadline = deadline
        try:
            return wire.receive(self.res)
        except EOFError:
            code = self.proc.wait()
            raise WorkerGone(_exit_reason(code)) from None
        except (wire.WireError, ValueError, UnicodeDecodeError, struct.error) as exc:
            raise WorkerGone(f"sent malformed data ({exc})") from None

    def _send(self, message, values=None, deadline=None):
        self.cmd.deadline = deadline
        try:
            wire.send(self.cmd, message, values)
        except (BrokenPipeError, OSError):
            code = self.proc.wait()
            raise WorkerGone(_exit_reason(code)) from None

    def import_module(self, module, deadline):
        """Import attnlab.<module> in the worker. Returns the reply message ('imported' or 'raised')."""
        self._send({"op": "import", "module": module}, deadline=deadline)
        message, _ = self._receive(deadline)
        if message.get("op") not in ("imported", "raised"):
            raise WorkerGone(f"sent an unexpected message {message.get('op')!r}")
        return message

    def call(self, module, function, args, kwargs, deps, forbidden, dep_handler, deadline):
        """Run attnlab.<module>.<function>(*args, **kwargs) in the worker. Returns (message, value).

        While it runs, the worker may ask for a dependency's reference result (only the exercise's declared
        dependencies, and only for arrays no larger than those it was given) and may report forbidden calls
        as they happen; those reports count even if the final message omits them."""
        values = {"args": list(args), "kwargs": dict(kwargs)}
        bound = _ArrayBound(values)
        self._send({"op": "call", "module": module, "function": function,
                    "deps": list(deps), "forbidden": [list(f) for f in forbidden]}, values, deadline)
        hits = []
        while True:
            message, values = self._receive(deadline)
            op = message.get("op")
            if op == "forbidden_hit":
                hits.append(str(message.get("name", "?")))
                continue
            if op == "dep_call":
                name = message.get("name")
                problem = (f"{name!r} is not a dependency of this exercise" if name not in deps
                           else bound.refuse(values))
                if problem:
                    self._send({"op": "dep_error", "message": problem}, deadline=deadline)
                    continue
                try:
                    value = dep_handler(name, values["args"], values["kwargs"])
                except Exception as exc:  # the reference refused the learner's arguments
                    self._send({"op": "dep_error", "message": f"{type(exc).__name__}: {exc}"}, deadline=deadline)
                else:
                    self._send({"op": "dep_result"}, {"value": value}, deadline)
                continue
            if op in ("result", "raised"):
                reported = list(message.get("forbidden") or [])
                message["forbidden"] = reported + [h for h in hits if h not in reported]
                return message, (values or {}).get("value")
            raise WorkerGone(f"sent an unexpected message {op!r}")


class _ArrayBound:
    """What a dependency call may ask the judge to compute: arrays no larger, in total elements, number of
    dimensions or any one dimension, than the inputs the judge itself sent (so the judge's memory stays
    bounded whatever the submission asks)."""

    def __init__(self, sent):
        shapes = _shapes(sent)
        self.elements = 4 * sum(int(np.prod(s)) for s in shapes) + 64
        self.ndim = max((len(s) for s in shapes), default=1) + 1
        self.dim = max([64] + [d for s in shapes for d in s])

    def refuse(self, values):
        shapes = _shapes(values)
        if sum(int(np.prod(s)) for s in shapes) > self.elements:
            return "arrays larger than the exercise's inputs"
        if any(len(s) > self.ndim or any(d > self.dim for d in s) for s in shapes):
            return "arrays of a larger shape than the exercise's inputs"
        return None


def _shapes(value):
    if isinstance(value, np.ndarray):
        return [value.shape]
    if isinstance(value, wire.TensorData):
        return [value.array.shape]
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
