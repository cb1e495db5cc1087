"""A class of hostile and broken submissions for the red-team batch (tests/test_redteam.py).

    make_class(dest, solutions_dir, secrets, only=None) -> {student name: Expect}

writes one folder per student under `dest`, each holding an ``attnlab/`` package built *at run time* from
the instructor's solution modules (``build.solution_only`` of every ``solutions/attnlab/*.py``: no copy of
solution code lives in this file) with one hostile or broken change applied: code appended to a module,
usually redefining one function at the end of it.

Only three exercises are graded, to bound the batch's time: see EXERCISE_IDS. Every `Expect` says which
statuses each exercise may end with and the most points each may earn: what the submission's *real*
implementation earns, so a hostile submission that scores above it has beaten the grader.

`secrets` carries what the hostile code is told (baked into its text): absolute paths of the results folder,
the class folder, the solutions and the grader, a unique marker for stray processes, and the seed the
`memorised` student learned its answers for. Missing keys get harmless defaults.

Students whose `Expect.bug` is set demonstrate a grader weakness found by this red team: their `Expect`
states the *correct* behaviour, which the grader does not deliver yet; test_redteam.py checks them in
strict-xfail tests so that fixing the grader turns those tests into failures asking for the marker's removal.
"""
import base64
import hashlib
import io
import os
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

EXERCISE_IDS = ("softmax.softmax", "softmax.masked_softmax", "attention.scaled_dot_product_attention")
SOFTMAX, MASKED, SDPA = EXERCISE_IDS
POINTS = {SOFTMAX: 2.0, MASKED: 2.0, SDPA: 4.0}
N_CASES = {SOFTMAX: 7, MASKED: 7, SDPA: 10}  # case counts (checked against the registry by the tests)
FULL_MARKS = sum(POINTS.values())


def share(exercise_id, passed_cases):
    """Points for `passed_cases` of the exercise's (equal-weight) cases, rounded as the grader does."""
    return round(POINTS[exercise_id] * passed_cases / N_CASES[exercise_id], 2)


@dataclass
class Expect:
    """What one student must get. `statuses`: exercise id -> acceptable statuses; `max_points`: exercise id ->
    the most it may earn; `exact`: the points must equal max_points (a deterministic outcome)."""
    statuses: dict
    max_points: dict
    exact: bool = True
    why: str = ""
    bug: str = ""           # a grader weakness: the expectation is the correct behaviour, not today's
    modes: tuple = ("bwrap", "none")  # sandbox modes in which the expectation holds

    @property
    def max_total(self):
        return round(sum(self.max_points.values()), 2)


def expect(why="", exact=True, bug="", fixed="", modes=("bwrap", "none"), **per_exercise):
    """Expect with every exercise 'passed' at full points unless overridden:
    softmax=("failed", 0.0), masked=(("timeout", "passed"), 2.0), sdpa=("error", 0.0)."""
    keys = {"softmax": SOFTMAX, "masked": MASKED, "sdpa": SDPA}
    statuses = {i: ("passed",) for i in EXERCISE_IDS}
    points = dict(POINTS)
    for short, (status, pts) in per_exercise.items():
        statuses[keys[short]] = (status,) if isinstance(status, str) else tuple(status)
        points[keys[short]] = pts
    if fixed:  # a weakness the grader had; the expectation is now checked like any other
        why = f"{why} [{fixed}]" if why else fixed
    return Expect(statuses, points, exact=exact, why=why, bug=bug, modes=modes)


# ----------------------------------------------------------------------------- code fragments
def _code(text, **values):
    """Dedent `text` and replace each @NAME@ by repr(values[NAME])."""
    text = textwrap.dedent(text)
    for key, value in values.items():
        text = text.replace(f"@{key}@", repr(value))
    return text


# Weights computed honestly (NumPy), output by a torch kernel given as an expression of tq, tk, tv, tm, scale.
def _torch_sdpa(header, expr):
    return _code(header) + _code('''
        def scaled_dot_product_attention(q, k, v, mask=None, scale=None):
            scores = scaled_dot_scores(q, k, scale)
            weights = softmax(scores) if mask is None else masked_softmax(scores, mask)
            tq, tk, tv = (_torch.from_numpy(np.ascontiguousarray(a)) for a in (q, k, v))
            tm = None
            if mask is not None:
                full = np.broadcast_to(np.asarray(mask, bool), tq.shape[:-1] + (tk.shape[-2],))
                tm = _torch.from_numpy(np.ascontiguousarray(full))
            out = (EXPR).numpy()
            out = np.where(np.isnan(out), 0.0, out)  # the course's convention for fully masked rows
            return out.astype(q.dtype), weights.astype(q.dtype)
        ''').replace("EXPR", expr)


def _torch_softmax(header, expr):
    return _code(header) + _code('''
        def softmax(x, axis=-1):
            t = _torch.from_numpy(np.ascontiguousarray(x))
            return (EXPR).numpy()
        ''').replace("EXPR", expr)


def _wrap_softmax(body):
    """Redefine softmax around the real (correct) one, kept as _real_softmax."""
    return "\n_real_softmax = softmax\n\n" + _code(body)


def _memorise_key_source():
    return _code('''
        import hashlib as _hashlib

        def _key(x, axis):
            x = np.ascontiguousarray(x)
            h = _hashlib.sha256(x.tobytes())
            h.update(f"{x.dtype.str}|{x.shape}|{int(axis)}".encode())
            return h.hexdigest()
        ''')


def _memorised_table(seed):
    """{input key: base64 .npy of the output the grader accepts} for every call the softmax cases make at
    `seed`: what a student who saw (or reverse-engineered) the grader's inputs for that seed could hard-code.
    The expected arrays are captured from the cases' own t.expect(...) calls."""
    from autograde import registry
    from autograde.framework import Context, case_rng

    namespace = {"np": np}
    exec(_memorise_key_source(), namespace)  # the very key function the student uses
    key = namespace["_key"]
    exercise = registry.get(SOFTMAX)
    table = {}

    class Recorder(Context):
        def call(self, *args, **kwargs):
            x = np.asarray(args[0])
            self.last_key = key(x, kwargs.get("axis", args[1] if len(args) > 1 else -1))
            return super().call(*args, **kwargs)

        def expect(self, got, expected, *args, **kwargs):
            buf = io.BytesIO()
            np.save(buf, np.asarray(expected), allow_pickle=False)
            table[self.last_key] = base64.b64encode(buf.getvalue()).decode()

    from autograde.backends import InProcessBackend

    caller = InProcessBackend({SOFTMAX: exercise.reference})

    for case in exercise.cases:
        try:
            case.run(Recorder(exercise, case, case_rng(seed, exercise.id, case.name), caller))
        except Exception:
            pass
    return table


# ------------------------------------------------------------------------------------ students
# name -> (Expect factory, {module: code appended to it} factory); both get `secrets`.
STUDENTS = {}


def student(name, **expectation):
    def register(patches):
        STUDENTS[name] = (lambda secrets: expect(**expectation), patches)
        return patches
    return register


@student("correct", why="the instructor's solution: full marks")
def _(s):
    return {}


@student("infinite_loop", softmax=("timeout", 0.0), why="`while True: pass` in softmax: killed at the wall time")
def _(s):
    return {"softmax": _code('''
        def softmax(x, axis=-1):
            while True:
                pass
        ''')}


@student("ignores_sigint", softmax=("timeout", 0.0),
         why="ignores SIGINT/SIGTERM/SIGHUP/... then loops: the judge's SIGKILL of the process group still works")
def _(s):
    return {"softmax": _code('''
        import signal as _signal
        import time as _time

        def _ignore_signals():
            for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGALRM", "SIGUSR1", "SIGUSR2", "SIGXCPU"):
                try:
                    _signal.signal(getattr(_signal, name), _signal.SIG_IGN)
                except (OSError, ValueError, AttributeError):
                    pass

        _ignore_signals()

        def softmax(x, axis=-1):
            _ignore_signals()
            n = 0
            while True:
                try:
                    n += 1
                    if n % 200000 == 0:
                        _time.sleep(0.001)
                except BaseException:  # KeyboardInterrupt, SystemExit: keep looping
                    pass
        ''')}


@student("memory_bomb", softmax=(("failed", "error", "timeout"), 0.0),
         why="asks for 50 GB and 6 GB buffers, then allocates 256 MiB chunks (the first one touched) until "
             "MemoryError; it returns a correct softmax only if it gets past RLIMIT_AS (4 GiB), so any point "
             "means no limit. Normally 'failed' (MemoryError); 'timeout' is accepted on a slow machine")
def _(s):
    return {"softmax": _wrap_softmax('''
        _BOMBED = []

        def softmax(x, axis=-1):
            won = False
            for size in (50 << 30, 6 << 30):  # untouched calloc: only an address-space limit stops it
                try:
                    buf = bytearray(size)
                    won = True
                    del buf
                except MemoryError:
                    pass
            if not _BOMBED:  # once per process: grab memory chunk by chunk until it runs out
                _BOMBED.append(1)
                hog = [np.ones(1 << 25)]  # 256 MiB really used (touching 4 GiB takes ~10 s here)
                try:
                    while len(hog) < 24:  # 24 x 256 MiB = 6 GiB > RLIMIT_AS
                        hog.append(np.empty(1 << 25))
                    won = True
                except MemoryError:
                    pass
                del hog
            if won:
                return _real_softmax(x, axis)
            raise MemoryError("the memory bomb was stopped by the address-space limit")
        ''')}


@student("print_flood", softmax=(("timeout", "passed"), 2.0), exact=False,
         why="writes ~4 GiB to stdout and stderr on its first call, then answers correctly: timeout or "
             "passed, and the judge keeps at most Limits.output_kb of it (its memory must not balloon)")
def _(s):
    return {"softmax": _wrap_softmax('''
        import os as _os
        import sys as _sys

        _FLOODED = []

        def softmax(x, axis=-1):
            if not _FLOODED:
                _FLOODED.append(1)
                line = "flood " * 174762 + "\\n"  # ~1 MiB
                raw = line.encode()
                for _ in range(2048):
                    _sys.stdout.write(line)
                    _os.write(2, raw)
                _sys.stdout.flush()
            return _real_softmax(x, axis)
        ''')}


@student("sys_exit_import", softmax=("error", 0.0), masked=("error", 0.0), sdpa=("error", 0.0),
         why="sys.exit(0) at the end of softmax.py: the module (and attention, which imports it) never loads")
def _(s):
    return {"softmax": "\nimport sys as _sys\n_sys.exit(0)\n"}


@student("os_exit_import", sdpa=("error", 0.0),
         why="os._exit(0) at the end of attention.py kills the worker during import")
def _(s):
    return {"attention": "\nimport os as _os\n_os._exit(0)\n"}


@student("sys_exit_midtest", softmax=("failed", share(SOFTMAX, 6)),
         why="sys.exit(0) on the 3rd softmax call only: SystemExit is that case's failure, the rest pass")
def _(s):
    return {"softmax": _wrap_softmax('''
        _CALLS = [0]

        def softmax(x, axis=-1):
            _CALLS[0] += 1
            if _CALLS[0] == 3:
                import sys
                sys.exit(0)
            return _real_softmax(x, axis)
        ''')}


@student("os_exit_midtest", softmax=("error", share(SOFTMAX, 2)),
         why="os._exit(0) on the 3rd softmax call: the worker dies; the two cases before it keep their points")
def _(s):
    return {"softmax": _wrap_softmax('''
        _CALLS = [0]

        def softmax(x, axis=-1):
            _CALLS[0] += 1
            if _CALLS[0] == 3:
                import os
                os._exit(0)
            return _real_softmax(x, axis)
        ''')}


@student("syntax_error", sdpa=("error", 0.0), why="a syntax error in attention.py")
def _(s):
    return {"attention": "\ndef broken(:\n    pass\n"}


@student("import_exception", softmax=("error", 0.0), masked=("error", 0.0), sdpa=("error", 0.0),
         why="softmax.py raises at import (attention imports it too)")
def _(s):
    return {"softmax": "\nraise RuntimeError('import-time failure')\n"}


@student("patch_allclose", softmax=("failed", 0.0),
         why="patches numpy.allclose/isclose/array_equal, numpy.testing.* and torch.testing.assert_close to "
             "always succeed, with a wrong (uniform) softmax: comparisons happen in the judge, so it fails")
def _(s):
    return {"softmax": _code('''
        import numpy as _np
        import numpy.testing as _npt

        _np.allclose = lambda *a, **k: True
        _np.array_equal = lambda *a, **k: True
        _np.isclose = lambda a, b, *r, **k: _np.ones(_np.broadcast(_np.asarray(a), _np.asarray(b)).shape, bool)
        for _name in ("assert_allclose", "assert_array_equal", "assert_array_almost_equal", "assert_equal",
                      "assert_almost_equal"):
            setattr(_npt, _name, lambda *a, **k: None)
        try:
            import torch as _torch
            import torch.testing as _tt

            _tt.assert_close = lambda *a, **k: None
            _torch.allclose = lambda *a, **k: True
            _torch.equal = lambda *a, **k: True
        except Exception:
            pass

        def softmax(x, axis=-1):
            x = np.asarray(x)
            return np.full_like(x, 1.0 / x.shape[axis])  # wrong
        ''')}


@student("patch_grader", softmax=(("failed", "error"), 0.0),
         why="imports/patches autograde (hidden in the sandbox) and the worker (__main__): its send() turns "
             "every exception into a 'result' and drops forbidden hits; its real softmax is wrong")
def _(s):
    return {"softmax": _code('''
        import sys as _sys

        _PATCHED = []
        for _mod in ("autograde.compare", "autograde.framework", "autograde.runner", "autograde.registry"):
            try:
                _sys.path.insert(0, @GRADER_PARENT@)
                __import__(_mod)
                m = _sys.modules[_mod]
                for attr in ("compare_arrays", "same_output", "grade_exercise"):
                    if hasattr(m, attr):
                        setattr(m, attr, lambda *a, **k: None)
                _PATCHED.append(_mod)
            except BaseException:
                pass

        _LAST = [None]
        _main = _sys.modules.get("__main__")
        if _main is not None and hasattr(_main, "send"):
            _real_send = _main.send

            def _fake_send(fd, message, values=None):
                message = dict(message)
                message.pop("forbidden", None)
                if message.get("op") == "raised" and message.get("phase") == "call":
                    message = {"op": "result", "forbidden": []}
                    values = {"value": _LAST[0]}
                return _real_send(fd, message, values)

            _main.send = _fake_send
            _main._describe_exception = lambda exc: {"type": "X", "message": "", "where": ""}
            _main.compare_arrays = lambda *a, **k: None

        def softmax(x, axis=-1):
            _LAST[0] = np.ones_like(np.asarray(x))  # wrong: all ones
            raise ValueError("nothing to see")
        ''', GRADER_PARENT=str(Path(s["autograde_dir"]).parent))}


@student("ndarray_subclass", softmax=("failed", 0.0),
         why="returns an ndarray subclass whose ==, ufuncs and array functions always 'succeed', holding zeros")
def _(s):
    return {"softmax": _code('''
        class _Liar(np.ndarray):
            def __eq__(self, other):
                return True

            def __ne__(self, other):
                return False

            def __bool__(self):
                return True

            def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
                return True

            def __array_function__(self, func, types, args, kwargs):
                return True

            def __reduce__(self):
                return (np.ones, (self.shape,))

        def softmax(x, axis=-1):
            return np.zeros(np.shape(x), dtype=np.asarray(x).dtype).view(_Liar)
        ''')}


@student("read_solutions", softmax=("not_implemented", 0.0), modes=("bwrap",),
         why="opens solutions/, the grader's references and a classmate's folder by absolute path and execs "
             "what it finds; without them its softmax raises NotImplementedError (bwrap hides them all)")
def _(s):
    targets = [str(Path(s["solutions_dir"]) / "attnlab" / "softmax.py"),
               str(Path(s["autograde_dir"]) / "references" / "softmax.py"),
               str(Path(s["class_dir"]) / "correct" / "attnlab" / "softmax.py"),
               str(Path(s["class_dir"]) / "correct" / "src" / "attnlab" / "softmax.py")]
    return {"softmax": _code('''
        import glob as _glob

        _STOLEN = [None]
        _TRIED = []
        for _path in @TARGETS@ + sorted(_glob.glob("/tmp/attnlab-sub-*/attnlab/softmax.py")):
            try:
                with open(_path) as _fh:
                    _text = _fh.read()
                if "def softmax" not in _text or "_exit" in _text or "while True" in _text:
                    continue
                _ns = {"__name__": "stolen"}
                exec(compile(_text, _path, "exec"), _ns)
                if callable(_ns.get("softmax")):
                    _STOLEN[0] = _ns["softmax"]
                    _TRIED.append(_path + ": stolen")
                    break
            except BaseException as _exc:
                _TRIED.append(f"{_path}: {type(_exc).__name__}")

        def softmax(x, axis=-1):
            if _STOLEN[0] is None:
                raise NotImplementedError("softmax.softmax is not implemented yet")
            return _STOLEN[0](x, axis=axis)
        ''', TARGETS=targets)}


@student("write_results", why="tries to create, overwrite and delete files in the results folder and in a "
         "classmate's folder (absolute paths), at import and during a call; its own code is correct")
def _(s):
    return {"softmax": _code('''
        import json as _json
        import os as _os

        _RESULTS, _CLASS = @RESULTS@, @CLASS@

        def _vandalise(tag):
            def attempt(fn):
                try:
                    fn()
                except BaseException:
                    pass

            def write(path, text, mode="w"):
                with open(path, mode) as fh:
                    fh.write(text)

            fake = _json.dumps({"total": 999.0, "max_total": 8.0, "exercises": [], "fingerprint": "x"})
            attempt(lambda: write(_os.path.join(_RESULTS, f"pwned-{tag}.txt"), "pwned"))
            attempt(lambda: write(_os.path.join(_RESULTS, "correct.json"), fake))
            attempt(lambda: write(_os.path.join(_RESULTS, "write_results.json"), fake))
            attempt(lambda: write(_os.path.join(_RESULTS, "grades.csv"), "student,total\\nwrite_results,999\\n", "a"))
            attempt(lambda: _os.remove(_os.path.join(_RESULTS, "infinite_loop.json")))
            attempt(lambda: _os.makedirs(_os.path.join(_RESULTS, f"evil-{tag}")))
            attempt(lambda: write(_os.path.join(_RESULTS, ".timings", "write_results.txt"), "0.00\\n"))
            attempt(lambda: write(_os.path.join(_CLASS, "correct", "attnlab", "softmax.py"), "\\nraise SystemExit\\n", "a"))
            attempt(lambda: write(_os.path.join(_CLASS, f"planted-{tag}.txt"), "x"))
            attempt(lambda: _os.symlink("/", _os.path.join(_RESULTS, f"link-{tag}")))

        _vandalise("import")
        ''', RESULTS=str(s["results_dir"]), CLASS=str(s["class_dir"])) + _wrap_softmax('''
        def softmax(x, axis=-1):
            _vandalise("call")
            return _real_softmax(x, axis)
        ''')}


@student("reseed", why="reseeds numpy's global RNG, makes default_rng(0) and calls torch.manual_seed inside "
         "softmax: the judge's inputs come from its own seeded generators, so nothing changes")
def _(s):
    return {"softmax": "\nimport random as _random\n" + _wrap_softmax('''
        def softmax(x, axis=-1):
            np.random.seed(0)
            np.random.set_state(np.random.RandomState(1).get_state())
            np.random.default_rng(0).random(10)
            _random.seed(0)
            try:  # NumPy exercises are graded without torch: reseed it only where it exists
                import torch as _torch
                _torch.manual_seed(0)
            except ImportError:
                pass
            return _real_softmax(x, axis)
        ''')}


@student("memorised", softmax=("failed", share(SOFTMAX, 1)),
         why="detects the grader (cwd /submission, argv worker.py) and returns outputs memorised for the seed-0 "
             "inputs; its real softmax is uniform (wrong). Graded with a secret seed only the fixed-input "
             "'hand-checkable' case (which uses no rng) still matches: 1 of 7")
def _(s):
    table = _memorised_table(int(s.get("memorised_seed", 0)))
    return {"softmax": _memorise_key_source() + _code('''
        import base64 as _b64
        import io as _io
        import os as _os
        import sys as _sys

        _TABLE = @TABLE@

        def _grading():
            cwd = _os.getcwd()
            return (cwd == "/submission" or "attnlab-sub-" in cwd
                    or _os.path.basename(_sys.argv[0] if _sys.argv else "") == "worker.py")

        def softmax(x, axis=-1):
            x = np.asarray(x)
            if _grading():
                hit = _TABLE.get(_key(x, axis))
                if hit is not None:
                    return np.load(_io.BytesIO(_b64.b64decode(hit)), allow_pickle=False)
            return np.full_like(x, 1.0 / x.shape[axis])  # what it really computes: wrong
        ''', TABLE=table)}


@student("forbidden_direct", sdpa=("forbidden", 0.0),
         why="attention calls torch.nn.functional.scaled_dot_product_attention")
def _(s):
    return {"attention": _torch_sdpa('''
        import torch as _torch
        import torch.nn.functional as _F
        ''', "_F.scaled_dot_product_attention(tq, tk, tv, attn_mask=tm, scale=scale)")}


_TORCH_AT_TOP = (" (torch is imported at the top of softmax.py: NumPy exercises are graded where torch does not "
                 "exist, so every exercise of that module, and of attention.py which imports it, is forbidden)")


@student("forbidden_alias", softmax=("forbidden", 0.0), masked=("forbidden", 0.0), sdpa=("forbidden", 0.0),
         why=_TORCH_AT_TOP + "; `from torch.nn.functional import scaled_dot_product_attention as _f`; softmax via `_sm = torch.softmax`")
def _(s):
    return {"attention": _torch_sdpa('''
        import torch as _torch
        from torch.nn.functional import scaled_dot_product_attention as _f
        ''', "_f(tq, tk, tv, attn_mask=tm, scale=scale)"),
            "softmax": _torch_softmax('''
        import torch as _torch
        _sm = _torch.softmax
        ''', "_sm(t, axis)")}


@student("forbidden_getattr", softmax=("forbidden", 0.0), masked=("forbidden", 0.0), sdpa=("forbidden", 0.0),
         why=_TORCH_AT_TOP + "; the same through getattr with built strings: getattr(torch.Tensor, 'soft' + 'max'), "
             "getattr(import_module('torch.nn.' + 'functional'), 'scaled_dot_' + 'product_attention')")
def _(s):
    return {"attention": _torch_sdpa('''
        import importlib as _importlib
        import torch as _torch
        _g = getattr(_importlib.import_module("torch.nn." + "functional"), "scaled_dot_" + "product_attention")
        ''', "_g(tq, tk, tv, attn_mask=tm, scale=scale)"),
            "softmax": _torch_softmax('''
        import torch as _torch
        ''', 'getattr(_torch.Tensor, "soft" + "max")(t, axis)')}


@student("nan_output", softmax=("failed", 0.0), why="a correct softmax with one NaN per row")
def _(s):
    return {"softmax": _wrap_softmax('''
        def softmax(x, axis=-1):
            out = _real_softmax(x, axis).copy()
            out[..., 0] = np.nan
            return out
        ''')}


@student("inf_output", softmax=("failed", 0.0), why="a correct softmax with one +inf per row")
def _(s):
    return {"softmax": _wrap_softmax('''
        def softmax(x, axis=-1):
            out = _real_softmax(x, axis).copy()
            out[..., 0] = np.inf
            return out
        ''')}


@student("wrong_shape", softmax=("failed", 0.0), why="returns the right values flattened")
def _(s):
    return {"softmax": _wrap_softmax('''
        def softmax(x, axis=-1):
            return _real_softmax(x, axis).reshape(-1)
        ''')}


@student("wrong_dtype", softmax=("failed", share(SOFTMAX, 4)),
         why="always returns float64: the float32 and float16 cases (3 of 7) fail")
def _(s):
    return {"softmax": _wrap_softmax('''
        def softmax(x, axis=-1):
            return _real_softmax(np.asarray(x, dtype=np.float64), axis)
        ''')}


@student("fork_at_import", why="forks at import (the audit hook is not armed then), the child calls setsid() "
         "and execs `sleep MARKER`; its code is correct. No such process may outlive the grading")
def _(s):
    return {"softmax": _code('''
        import os as _os

        def _spawn():
            try:
                if _os.fork() == 0:
                    try:
                        _os.setsid()
                        if _os.fork() == 0:
                            for sleep in ("/usr/bin/sleep", "/bin/sleep"):
                                try:
                                    _os.execv(sleep, ["sleep", @MARKER@])
                                except OSError:
                                    pass
                    finally:
                        _os._exit(0)
            except BaseException:
                pass

        _spawn()
        ''', MARKER=str(s["marker"]))}


# ------------------------------------------------------------------------- known grader bugs
# Each expectation below is the CORRECT behaviour; the grader does not deliver it yet (see `bug`).

@student("dep_oracle", softmax=(("error", "failed", "forbidden"), 0.0), masked=(("error", "failed", "forbidden"), 0.0),
         sdpa=(("error", "failed", "forbidden"), 0.0),
         fixed="FIXED (a grader bug this red team found) (sandbox.Worker.call): the judge answers a 'dep_call' for ANY exercise name, not only the "
             "graded exercise's deps, so a stub can ask the judge for the reference of the very exercise being "
             "graded (it can forge the message with worker._DepProxy or by hand: the fds are in sys.argv[1]). "
             "Today: 8/8 with no implementation at all",
         why="every function is a proxy that asks the judge for its own reference over the result pipe")
def _(s):
    return {"softmax": _code('''
        import json as _json
        import sys as _sys

        def _oracle(name):
            fds = _json.loads(_sys.argv[1])["fds"]
            return _sys.modules["__main__"]._DepProxy(name, (fds[0], fds[1]))

        def softmax(x, axis=-1):
            return _oracle("softmax.softmax")(x, axis=axis)

        def masked_softmax(x, mask, axis=-1):
            return _oracle("softmax.masked_softmax")(x, mask, axis=axis)
        '''), "attention": _code('''
        def scaled_dot_product_attention(q, k, v, mask=None, scale=None):
            from attnlab.softmax import _oracle
            return _oracle("attention.scaled_dot_product_attention")(q, k, v, mask=mask, scale=scale)
        ''')}


_EVADED = ("forbidden", "failed", "error")  # once fixed: caught, or its tampering breaks its own code


@student("evade_setprofile", sdpa=(_EVADED, 0.0),
         fixed="FIXED (a grader bug this red team found) (worker._serve): forbidden-call detection is installed with `sys.setprofile(_profile)` "
             "looked up at call time, after the submission was imported unarmed; a submission that replaces "
             "sys.setprofile / threading.setprofile (or worker._profile) at import calls torch's SDPA unseen. "
             "Today: 8/8",
         why="replaces sys.setprofile and threading.setprofile with no-ops at import, then uses torch's SDPA")
def _(s):
    return {"attention": _torch_sdpa('''
        import sys as _sys
        import threading as _threading
        import torch as _torch
        import torch.nn.functional as _F
        _sys.setprofile = lambda *a, **k: None
        _threading.setprofile = lambda *a, **k: None
        ''', "_F.scaled_dot_product_attention(tq, tk, tv, attn_mask=tm, scale=scale)")}


@student("evade_clear", sdpa=(_EVADED, 0.0),
         fixed="FIXED (a grader bug this red team found) (worker._serve/_profile): the forbidden list is the worker's module-global list "
             "_FORBIDDEN; a submission clears it during the call (sys.modules['__main__']._FORBIDDEN.clear(), no "
             "import-time tricks needed) and then calls torch's SDPA unseen. Today: 8/8",
         why="clears the worker's _FORBIDDEN list at call time, then uses torch's SDPA")
def _(s):
    return {"attention": _torch_sdpa('''
        import sys as _sys
        import torch as _torch
        import torch.nn.functional as _F

        def _sdpa(*args, **kwargs):
            _sys.modules["__main__"]._FORBIDDEN.clear()
            return _F.scaled_dot_product_attention(*args, **kwargs)
        ''', "_sdpa(tq, tk, tv, attn_mask=tm, scale=scale)")}


@student("evade_cell", sdpa=(_EVADED, 0.0),
         fixed="FIXED (a grader bug this red team found) (worker: forbidden-call detection lives in the submission's own interpreter): during the "
             "call, sys.getprofile() hands the submission the profile function; emptying the forbidden rules "
             "it holds (here: the tuple in a closure cell, as a hardened worker would keep them) disables it. "
             "Hardening the worker cannot close this; hiding torch from the sandbox for NumPy-only exercises can. "
             "Today: 8/8",
         why="finds the profile hook with sys.getprofile() and empties the tuples in its closure, then uses SDPA")
def _(s):
    return {"attention": _torch_sdpa('''
        import sys as _sys
        import torch as _torch
        import torch.nn.functional as _F

        def _sdpa(*args, **kwargs):
            hook = _sys.getprofile()
            main = _sys.modules.get("__main__")
            for cell in getattr(hook, "__closure__", None) or ():
                if isinstance(cell.cell_contents, (tuple, list)):
                    cell.cell_contents = type(cell.cell_contents)()
            for attr in ("_FORBIDDEN", "_HITS"):
                if isinstance(getattr(main, attr, None), list):
                    getattr(main, attr).clear()
            return _F.scaled_dot_product_attention(*args, **kwargs)
        ''', "_sdpa(tq, tk, tv, attn_mask=tm, scale=scale)")}


@student("forbidden_special", softmax=("forbidden", 0.0), masked=("forbidden", 0.0), sdpa=("forbidden", 0.0),
         fixed="FIXED (a grader bug this red team found) (graders/softmax.py FORBID_TORCH_SOFTMAX, worker._profile): torch.special.softmax "
             "(torch._C._special.special_softmax) and torch._softmax are not on the forbidden list, and names "
             "are matched by exact qualname. Today: 8/8",
         why="softmax via torch.special.softmax")
def _(s):
    return {"softmax": _torch_softmax('''
        import torch as _torch
        ''', "_torch.special.softmax(t, axis)")}


@student("forbidden_aten", sdpa=("forbidden", 0.0),
         fixed="FIXED (a grader bug this red team found) (graders/attention.py FORBID_TORCH_ATTENTION, worker._profile): "
             "torch.ops.aten.scaled_dot_product_attention is a pybind builtin whose __qualname__ is "
             "'pybind11_detail_function_record_...scaled_dot_product_attention', which the exact-qualname match "
             "misses. Today: 8/8",
         why="attention via torch.ops.aten.scaled_dot_product_attention")
def _(s):
    return {"attention": _torch_sdpa('''
        import torch as _torch
        ''', "_torch.ops.aten.scaled_dot_product_attention(tq, tk, tv, attn_mask=tm, scale=scale)")}


_SYMLINK_BUG = ("FIXED (a grader bug this red team found) (batch.locate_package, runner.find_package_root): a `src` symlink is followed, so a "
                "submission can point its src/ at a classmate's folder or at the instructor's solutions/ "
                "(git keeps symlinks) and is graded on that code. Today: 8/8")


@student("symlink_classmate", softmax=("error", 0.0), masked=("error", 0.0), sdpa=("error", 0.0), fixed=_SYMLINK_BUG,
         why="its folder holds only `src -> ../correct` (a relative symlink to a classmate's submission)")
def _(s):
    return {"__symlink__": "../correct"}


@student("symlink_solutions", softmax=("error", 0.0), masked=("error", 0.0), sdpa=("error", 0.0), fixed=_SYMLINK_BUG,
         why="its folder holds only `src -> <absolute path of solutions/>`")
def _(s):
    return {"__symlink__": str(Path(s["solutions_dir"]).resolve())}


# Built only on request (make_class(only=[...])): they would hang or bloat a whole batch.
SEPARATE = {}


def separate(name, **expectation):
    def register(patches):
        SEPARATE[name] = (lambda secrets: expect(**expectation), patches)
        return patches
    return register


@separate("wire_hang", softmax=("timeout", 0.0),
          why="writes a partial frame to the result pipe, then sleeps for an hour: the judge must time out "
              "(it hung forever before commit 2ea26d1, found by this red team and fixed concurrently)")
def _(s):
    return {"softmax": _code('''
        import json as _json
        import os as _os
        import struct as _struct
        import sys as _sys
        import time as _time

        def softmax(x, axis=-1):
            fd = _json.loads(_sys.argv[1])["fds"][1]
            _os.write(fd, _struct.pack(">Q", 100) + b"{")
            _time.sleep(3600)
        ''')}


@separate("wire_flood", softmax=(("timeout", "error", "failed"), 0.0),
          fixed="FIXED (a grader bug this red team found) (worker.receive, used by sandbox.Worker._receive): one message may declare up to "
              "10,000 frames of up to MAX_FRAME (64 MiB) each, and the judge buffers every frame until the "
              "message is complete or the wall time runs out: within one exercise's wall time a submission can "
              "make the judge hold gigabytes (~1 GiB here in 3 s; more at the default 20 s). Output is capped; "
              "the result channel is not. Fix: one byte budget (e.g. 64 MiB) shared by all frames of a message",
          why="sends one 'result' message declaring 16 frames of 60 MiB (~1 GiB) written from a 1 MiB buffer")
def _(s):
    return {"softmax": _code('''
        import json as _json
        import os as _os
        import struct as _struct
        import sys as _sys

        def softmax(x, axis=-1):
            fd = _json.loads(_sys.argv[1])["fds"][1]
            n, size = 16, 60 << 20
            head = _json.dumps({"op": "result", "forbidden": [], "n_arrays": n}).encode()
            _os.write(fd, _struct.pack(">Q", len(head)) + head)
            chunk = b"\\0" * (1 << 20)
            for _ in range(n):
                _os.write(fd, _struct.pack(">Q", size))
                for _ in range(size >> 20):
                    _os.write(fd, chunk)
            _os._exit(0)
        ''')}


@separate("dep_bomb", sdpa=(("timeout", "error", "failed"), 0.0),
          fixed="FIXED (a grader bug this red team found) (sandbox.Worker.call / runner._reference_for_dep): the judge runs a dependency's "
              "reference, in its own process and with no limit, on whatever arrays the submission sends: "
              "scaled_dot_scores (a legitimate dependency of SDPA) on q = k = ones((10000, 1)) (80 KB) makes the "
              "judge allocate a 10000 x 10000 float64 (800 MB) and copy it; 50000 rows would be 20 GB (the "
              "grading host's OOM killer). masked_softmax's row-by-row reference gives the CPU-time variant",
          why="SDPA asks the judge for scaled_dot_scores of two (10000, 1) arrays")
def _(s):
    return {"attention": _code('''
        def scaled_dot_product_attention(q, k, v, mask=None, scale=None):
            big = np.ones((10000, 1))
            s = scaled_dot_scores(big, big)  # a dependency: the judge computes it with its reference
            return s, s
        ''')}


# ----------------------------------------------------------------------------- resume class
def _slow_patch(s):
    return {"softmax": _wrap_softmax('''
        import time as _time

        def softmax(x, axis=-1):
            _time.sleep(0.4)
            return _real_softmax(x, axis)
        ''')}


RESUME_KINDS = {  # name -> kind; kinds: correct, slow (0.4 s per softmax call), stub, or a STUDENTS name
    "a_correct": "correct", "b_slow": "slow", "c_stub": "stub", "d_slow": "slow",
    "e_wrong_dtype": "wrong_dtype", "f_slow": "slow", "g_correct": "correct", "h_os_exit_midtest": "os_exit_midtest",
}


# ---------------------------------------------------------------------------------- builders
def default_secrets(dest, solutions_dir, secrets=None):
    out = {"results_dir": str(Path(dest).parent / "results"), "class_dir": str(dest),
           "solutions_dir": str(solutions_dir), "autograde_dir": str(Path(__file__).resolve().parent.parent / "autograde"),
           "marker": "4242.000001", "memorised_seed": 0, "tag": ""}
    out.update(secrets or {})
    return out


def solution_texts(solutions_dir):
    """{module stem: solution text without marker lines} for every solutions/attnlab/*.py."""
    from autograde.build import solution_only

    return {p.stem: solution_only(p.read_text()) for p in sorted((Path(solutions_dir) / "attnlab").glob("*.py"))}


def stub_texts(solutions_dir):
    from autograde.build import make_stub

    texts = {}
    for p in sorted((Path(solutions_dir) / "attnlab").glob("*.py")):
        text = p.read_text()
        texts[p.stem] = text if p.stem == "__init__" else make_stub(text, p.stem, str(p))
    return texts


def write_student(dest, name, base_texts, patches, tag=""):
    """One folder dest/name with attnlab/ = base texts plus the appended patches."""
    folder = Path(dest) / name
    folder.mkdir(parents=True, exist_ok=False)
    if "__symlink__" in patches:
        os.symlink(patches["__symlink__"], folder / "src")
        return folder
    pkg = folder / "attnlab"
    pkg.mkdir()
    for stem, text in base_texts.items():
        extra = patches.get(stem, "")
        body = text + ("\n\n# ---- red-team change ----\n" + extra if extra else "")
        if tag:
            body += f"\n# {tag}\n"
        (pkg / f"{stem}.py").write_text(body)
    unknown = set(patches) - set(base_texts)
    if unknown:
        raise ValueError(f"{name}: patches for unknown modules {sorted(unknown)}")
    return folder


def make_class(dest, solutions_dir, secrets=None, only=None):
    """Write the hostile class under dest; returns {student: Expect}. `only`: names to build (default: every
    student of STUDENTS; SEPARATE ones only when named)."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    secrets = default_secrets(dest, solutions_dir, secrets)
    catalogue = {**STUDENTS, **SEPARATE}
    names = list(STUDENTS) if only is None else list(only)
    base = solution_texts(solutions_dir)
    expectations = {}
    for name in names:
        make_expect, make_patches = catalogue[name]
        write_student(dest, name, base, make_patches(secrets), secrets.get("tag", ""))
        expectations[name] = make_expect(secrets)
    return expectations


def make_resume_class(dest, solutions_dir, secrets=None):
    """~8 students (correct, slow, stub, broken) for the kill-and-resume test; returns {name: kind}."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    secrets = default_secrets(dest, solutions_dir, secrets)
    base, stubs = solution_texts(solutions_dir), stub_texts(solutions_dir)
    for name, kind in RESUME_KINDS.items():
        if kind == "stub":
            write_student(dest, name, stubs, {}, secrets.get("tag", ""))
        elif kind == "slow":
            write_student(dest, name, base, _slow_patch(secrets), secrets.get("tag", ""))
        else:
            write_student(dest, name, base, STUDENTS[kind][1](secrets), secrets.get("tag", ""))
    return dict(RESUME_KINDS)


def tree_digest(root):
    """{relative path: sha256} of every file (and link target) under root: to prove nothing was touched."""
    root = Path(root)
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            out[rel] = "link:" + os.readlink(p)
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
        elif p.is_dir():
            out[rel] = "dir"
    return out
