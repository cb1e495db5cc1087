"""The process that runs a submission's code. Copied, with wire.py and profiles.py, into the sandbox.

It knows nothing about tests, expected values or reference kernels. The judge (autograde.runner) sends it
requests and it answers with what came back, as data only (autograde.wire): every comparison happens in the
judge's process, so nothing the submission patches in here (numpy, torch, this module) changes a grade.

Four parts, top to bottom:
* `Session`: the requests (call a function; create an instance of a class; call a method of, or read an
  attribute of, an object it holds; make a trusted helper object such as an Axes) and the object table
  that holds live objects by handle. The judge's in-process backend runs trusted code through the same
  class, so both are typed and answered alike.
* `axes_data`: what a returned matplotlib Axes shows, as data (images, tick labels by cell, colour bars).
* guards around one request: dependency proxies, the forbidden-call detectors (a profile hook on Python
  callables, a TorchFunctionMode on PyTorch's API), the audit hook.
* `serve` and `main`: the message loop, and the start-up (paths, profile, memory limit) before any
  submission code runs.
"""
import gc
import importlib
import os
import struct
import sys
import threading
import traceback

try:  # inside the judge: part of the autograde package
    from . import profiles, wire
except ImportError:  # in the sandbox: a script next to its two siblings (`python -I` does not put our
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # folder on sys.path; main() resets it)
    import profiles
    import wire


# ======================================================================================= Session
class Session:
    """Requests against a namespace of learner code, and the live objects they created."""

    def __init__(self, resolve):
        self.resolve = resolve  # (module, name) -> the learner's function or class
        self.objects, self._ids, self._next = {}, {}, 0
        plt = sys.modules.get("matplotlib.pyplot")
        self._figures_before = set(plt.get_fignums()) if plt is not None else set()

    def reset(self):
        """Forget every object (a new exercise starts from nothing) and close the figures opened since the
        session began (in a learner's Jupyter kernel, where the judge replays mutants, theirs stay open)."""
        self.objects.clear()
        self._ids.clear()
        plt = sys.modules.get("matplotlib.pyplot")
        if plt is not None:
            for number in set(plt.get_fignums()) - self._figures_before:
                plt.close(number)

    def hold(self, obj):
        """The handle id of obj, registering it if it is new (the same object always gets the same id)."""
        known = self._ids.get(id(obj))
        if known is not None and self.objects.get(known) is obj:
            return known
        self._next += 1
        self.objects[self._next] = obj
        self._ids[id(obj)] = self._next
        return self._next

    def lookup(self, handle_id):
        try:
            return self.objects[handle_id]
        except KeyError:
            raise wire.WireError(f"no live object with handle {handle_id}") from None

    def describe(self, obj, arrays):
        """The wire's on_object: a handle (and, for an Axes, what it shows)."""
        desc = {"__handle__": self.hold(obj), "type": type_name(obj)}
        if is_axes(obj):
            desc["__axes__"] = wire.encode(axes_data(obj), arrays)
        return desc

    def run(self, request, args, kwargs):
        """Execute one request; returns the learner's value (or raises what the learner's code raised)."""
        kind, name = request["kind"], str(request.get("name", ""))
        if kind == "getattr":
            return getattr(self.lookup(request["handle"]), name)
        if kind == "method":
            return getattr(self.lookup(request["handle"]), name)(*args, **kwargs)
        if kind == "make":
            return MAKERS[name](*args, **kwargs)
        target = self.resolve(request["module"], name)
        if kind == "new" and not isinstance(target, type):
            raise TypeError(f"attnlab.{request['module']}.{name} should be a class, got {type_name(target)}")
        return target(*args, **kwargs)


def type_name(obj):
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _make_axes(width=4.0, height=3.0):
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=(width, height))
    return ax


MAKERS = {"axes": _make_axes}  # trusted objects the judge may ask for (an Axes to draw into)


# ===================================================================================== axes_data
def is_axes(obj):
    axes_mod = sys.modules.get("matplotlib.axes")
    return axes_mod is not None and isinstance(obj, axes_mod.Axes)


def axes_data(ax):
    """What an Axes shows, as data: every image-like artist (imshow, matshow, pcolormesh) with its array,
    colour map, limits and colour bar, and for each visible tick label the image cell it sits on."""
    import numpy as np

    fig = ax.figure
    fig.canvas.draw()  # tick labels are final only after a draw
    images = []
    artists = list(ax.get_images()) + [c for c in ax.collections if type(c).__name__ == "QuadMesh"]
    for artist in artists:
        arr = np.ma.filled(np.ma.asarray(artist.get_array(), dtype=np.float64), np.nan)
        if type(artist).__name__ == "QuadMesh":
            coords = np.asarray(artist.get_coordinates(), dtype=np.float64)  # (rows + 1, cols + 1, 2)
            arr = arr.reshape(coords.shape[0] - 1, coords.shape[1] - 1)
            x_edges, y_edges = coords[0, :, 0], coords[:, 0, 1]
        elif arr.ndim == 2:
            left, right, bottom, top = (float(e) for e in artist.get_extent())
            rows, cols = arr.shape
            x_edges = np.linspace(left, right, cols + 1)
            y_edges = np.linspace(top, bottom, rows + 1) if artist.origin == "upper" else \
                np.linspace(bottom, top, rows + 1)
        else:  # an RGB(A) picture: its pixels are not weights
            images.append({"kind": type(artist).__name__, "array": arr, "rgb": True})
            continue
        images.append({
            "kind": type(artist).__name__, "array": arr, "rgb": False,
            "cmap": str(artist.get_cmap().name), "clim": [float(c) for c in artist.get_clim()],
            "colorbar": getattr(artist, "colorbar", None) is not None,
            "x_cells": _tick_cells(ax.get_xticks(), ax.get_xticklabels(), x_edges, ax.get_xlim()),
            "y_cells": _tick_cells(ax.get_yticks(), ax.get_yticklabels(), y_edges, ax.get_ylim()),
        })
    return {"images": images, "title": ax.get_title(), "xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel(),
            "axes_in_figure": len(fig.axes)}


def _tick_cells(positions, labels, edges, limits):
    """[[label text, index of the cell the tick sits in (-1: none)], ...] for visible, non-empty labels."""
    lo, hi = sorted(float(v) for v in limits)
    cells = []
    for pos, label in zip(positions, labels):
        text, pos = label.get_text(), float(pos)
        if not text or not lo - 1e-9 <= pos <= hi + 1e-9:
            continue
        index = -1
        for i in range(len(edges) - 1):
            a, b = sorted((float(edges[i]), float(edges[i + 1])))
            if a <= pos < b:
                index = i
                break
        cells.append([text, index])
    return cells


# ======================================================================================== guards
# Captured when this file loads, before any submission code runs: replacing sys.setprofile, os.write or
# json.dumps later does not change what the worker uses.
_SETPROFILE = sys.setprofile
_OS_WRITE, _PACK, _JSON_DUMPS = os.write, struct.pack, wire.json.dumps
_STATE = {"armed": False, "no_spawn": False}

_BLOCKED_SYMBOLS = ("PyEval_Set", "PyThreadState", "fork", "vfork", "clone", "exec", "system", "posix_spawn",
                    "kill", "setrlimit", "prlimit", "syscall", "ptrace")
_SPAWN_EVENTS = ("os.fork", "os.forkpty", "os.system", "os.posix_spawn", "os.exec", "subprocess.Popen",
                 "os.spawn", "pty.spawn", "socket.connect", "socket.bind", "os.kill", "os.killpg",
                 "signal.pthread_kill", "resource.setrlimit", "resource.prlimit")


class ForbiddenCall(Exception):
    pass


def _audit(event, args):
    """Block what a submission never needs (defence in depth; the sandbox is the real wall)."""
    if _STATE["no_spawn"]:
        if event in _SPAWN_EVENTS:
            raise RuntimeError(f"{event}: processes, signals, sockets and resource limits are off limits while grading")
        if event == "ctypes.dlsym" and len(args) > 1 and str(args[1]).startswith(_BLOCKED_SYMBOLS):
            raise RuntimeError(f"calling {args[1]} through ctypes is blocked while grading")
    if _STATE["armed"] and event in ("sys.setprofile", "sys.settrace"):
        raise RuntimeError(f"{event} is blocked while grading")


def _report_forbidden(res_fd, hits, hit):
    if hit not in hits:
        hits.append(hit)
        payload = _JSON_DUMPS({"op": "forbidden_hit", "name": hit, "n_arrays": 0}).encode()
        _OS_WRITE(res_fd, _PACK(">Q", len(payload)) + payload)
    raise ForbiddenCall(f"{hit} is not allowed in this exercise")


def _make_profile(rules, res_fd, hits):
    """A profile hook that recognises forbidden callables by their own module and qualified name (an alias
    or getattr cannot rename a function), reports the first hit to the judge at once, and raises."""

    def key(frame, event, arg):
        if event == "c_call":
            qualname = getattr(arg, "__qualname__", None) or getattr(arg, "__name__", "") or ""
            module = getattr(arg, "__module__", None)
            if module is None and getattr(arg, "__self__", None) is not None:
                module = type(arg.__self__).__module__
            return module or "", str(qualname)
        if event == "call":
            qualname = frame.f_code.co_qualname
            module = frame.f_globals.get("__name__", "") or ""
            if qualname in ("OpOverloadPacket.__call__", "OpOverload.__call__"):  # torch.ops.aten.<op>
                return "torch.ops", str(frame.f_locals.get("self"))
            return module, qualname
        return None

    def profile(frame, event, arg):
        k = key(frame, event, arg)
        if k is None:
            return
        module, qualname = k
        for prefix, name in rules:
            if name in qualname and (module == prefix or module.startswith(prefix + ".")):
                _report_forbidden(res_fd, hits, f"{module}.{qualname}")

    return profile


def _function_watch(rules, res_fd, hits):
    """A TorchFunctionMode: sees every PyTorch API call by the function's own name, however it was reached
    (an alias, getattr, torch.ops.aten.<op>, torch._C._nn, nn.MultiheadAttention's forward), at little cost,
    so a forbidden attention function is recognised when called."""
    from torch.overrides import TorchFunctionMode

    names = tuple(name for prefix, name in rules if prefix == "torch" or prefix.startswith("torch."))

    class Watch(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            label = getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or str(func)
            for name in names:
                if name in label:
                    _report_forbidden(res_fd, hits, f"torch function {label.rsplit('.', 1)[-1]}")
            return func(*args, **(kwargs or {}))

    return Watch()


class _DepProxy:
    """Stands in for a function the graded exercise builds on: the judge computes it (reference)."""

    def __init__(self, name, channel):
        self.name, self.channel = name, channel
        self.__name__ = name.rsplit(".", 1)[-1]
        self.__qualname__ = self.__name__

    def __call__(self, *args, **kwargs):
        cmd_fd, res_fd = self.channel
        wire.send(res_fd, {"op": "dep_call", "name": self.name}, {"args": list(args), "kwargs": kwargs})
        message, values = wire.receive(cmd_fd)
        if message.get("op") != "dep_result":
            raise RuntimeError(f"{self.name} (reference) failed: {message.get('message', '?')}")
        # The reference drew from copies of the learner's generators: move the originals on just as far.
        for gen, state in zip(generators((args, kwargs)), values.get("generators", [])):
            gen.bit_generator.state = state
        return values["value"]


def generators(value):
    """Every numpy Generator inside value, in a fixed order (the judge and the worker walk alike)."""
    import numpy as np

    if type(value) is np.random.Generator:
        return [value]
    if type(value) in (list, tuple):
        return [g for v in value for g in generators(v)]
    if isinstance(value, dict):
        return [g for v in value.values() for g in generators(v)]
    return []


def _swap(deps, channel):
    """Replace each dependency, and every alias of it in the submission's modules, by a proxy."""
    undo = []
    for dep in deps:
        mod_name, func_name = dep.rsplit(".", 1)
        try:
            mod = importlib.import_module(f"attnlab.{mod_name}")
        except BaseException:  # a broken dependency module: the proxy still serves direct callers
            continue
        original = getattr(mod, func_name, None)
        proxy = _DepProxy(dep, channel)
        for other in [m for n, m in sys.modules.items() if n == "attnlab" or n.startswith("attnlab.")]:
            for attr, val in list(vars(other).items()):
                if (other is mod and attr == func_name) or (original is not None and val is original):
                    undo.append((other, attr, val))
                    setattr(other, attr, proxy)
        if not hasattr(mod, func_name):
            undo.append((mod, func_name, None))
            setattr(mod, func_name, proxy)
    return undo


def _describe_exception(exc):
    try:
        return _describe(exc)
    except Exception:  # e.g. MemoryError while formatting under a memory budget
        return {"type": type(exc).__name__, "message": str(exc)[:300], "where": ""}


def _describe(exc):
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if "/attnlab/" in f.filename.replace(os.sep, "/")]
    where = ""
    if mine:
        last = mine[-1]
        where = f"{last.filename.rsplit('attnlab', 1)[-1].lstrip('/')}:{last.lineno}: {last.line or ''}".strip()
    return {"type": type(exc).__name__, "message": str(exc)[:2000], "where": where[:500]}


# ======================================================================================== serving
def _import_learner(module, name):
    mod = importlib.import_module(f"attnlab.{module}")
    if not hasattr(mod, name):
        raise _Missing(f"attnlab.{module} has no {name!r}")
    return getattr(mod, name)


class _Missing(AttributeError):
    pass


def _reset_modules():
    """Forget the submission's modules: the next exercise imports them afresh (no state carries over)."""
    for name in [n for n in sys.modules if n == "attnlab" or n.startswith("attnlab.")]:
        del sys.modules[name]
    importlib.invalidate_caches()


def _serve(cmd_fd, res_fd, config):
    channel = (cmd_fd, res_fd)
    session = Session(_import_learner)
    torch_profile = "torch" in profiles.get(config["profile"]).preload
    while True:
        try:
            message, values = wire.receive(cmd_fd, session.lookup)
        except EOFError:
            return
        op = message.get("op")
        if op == "exit":
            return
        if op == "reset":
            session.reset()
            _reset_modules()
            gc.collect()
            wire.send(res_fd, {"op": "reset_done"})
            continue
        if op == "import":
            try:
                importlib.import_module(f"attnlab.{message['module']}")
            except BaseException as exc:  # SyntaxError, ImportError, SystemExit at import...
                wire.send(res_fd, dict(op="raised", phase="import", **_describe_exception(exc)))
            else:
                wire.send(res_fd, {"op": "imported"})
            continue
        if op != "call":
            wire.send(res_fd, {"op": "protocol_error", "message": f"unknown op {op!r}"})
            continue
        request = message["request"]
        if request["kind"] in ("function", "new"):
            try:
                importlib.import_module(f"attnlab.{request['module']}")
            except BaseException as exc:
                wire.send(res_fd, dict(op="raised", phase="import", **_describe_exception(exc)))
                continue
        rules = tuple((str(p), str(n)) for p, n in message.get("forbidden", []))
        hits = []
        undo = _swap(message.get("deps", []), channel)
        watch = None
        try:
            if torch_profile and rules:
                watch = _function_watch(rules, res_fd, hits)
            profile = _make_profile(rules, res_fd, hits) if rules else None
            result = _guarded_run(session, request, values, profile, watch)
        except _Missing as exc:
            wire.send(res_fd, {"op": "raised", "phase": "import", "type": "AttributeError",
                               "message": str(exc), "where": ""})
        except BaseException as exc:  # the learner's exception, reported as data
            _STATE["reserve"] = None  # under a memory budget: room to describe what happened
            info = _describe_exception(exc)
            wire.send(res_fd, dict(op="raised", phase="call", forbidden=list(hits), **info))
        else:
            try:
                wire.send(res_fd, {"op": "result", "forbidden": list(hits)},
                          {"value": result}, on_object=session.describe)
            except Exception as exc:  # e.g. an Axes whose drawing raises, a value nested too deep
                info = _describe_exception(exc)
                info["message"] = f"the returned value could not be sent back: {info['message']}"
                wire.send(res_fd, dict(op="raised", phase="call", forbidden=list(hits), **info))
        finally:
            for obj, attr, val in reversed(undo):
                if val is None:
                    delattr(obj, attr)
                else:
                    setattr(obj, attr, val)


def _guarded_run(session, request, values, profile, watch):
    """Run one request with the forbidden-call detectors on and setprofile/settrace refused."""
    if profile is not None:
        _SETPROFILE(profile)  # before arming: the audit hook refuses setprofile once armed
        threading.setprofile(profile)
    if watch is not None:
        watch.__enter__()
    _STATE["armed"] = True
    try:
        return session.run(request, values["args"], values["kwargs"])
    finally:
        _STATE["armed"] = False
        if watch is not None:
            watch.__exit__(None, None, None)
        if profile is not None:
            _SETPROFILE(None)
            threading.setprofile(None)


class _Unavailable:
    """A meta-path finder that makes some packages unimportable (torch in NumPy exercises)."""

    def __init__(self, names, reason):
        self.names, self.reason = tuple(names), reason

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".", 1)[0] in self.names:
            raise ModuleNotFoundError(f"No module named {fullname!r}: {self.reason}", name=fullname)
        return None


def main():
    config = wire.json.loads(sys.argv[1])
    # The judge runs us with `python -I -S`: no site, no PYTHONPATH, no user site. Build sys.path
    # ourselves: the submission first, then the interpreter's own library and the site-packages that
    # hold numpy and torch (never the folder that installed the instructor's attnlab, nor our own).
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [config["submission"]] + [p for p in sys.path if p and os.path.abspath(p) != here]
    sys.path += [p for p in config.get("site", []) if p not in sys.path]
    sys.dont_write_bytecode = True
    cmd_fd, res_fd = config["fds"]
    os.set_inheritable(cmd_fd, False)
    os.set_inheritable(res_fd, False)
    sys.addaudithook(_audit)
    profile = profiles.get(config["profile"])
    if profile.unavailable:
        sys.meta_path.insert(0, _Unavailable(profile.unavailable, profile.unavailable_reason))
    try:
        profiles.use_font_cache(config.get("mpl_cache"), config["mpl_config_dir"])
        info = profiles.prepare(profile.name)  # imports before the submission's clock starts
        if config.get("memory_budget_mb"):
            _STATE["reserve"] = bytearray(8 << 20)  # released when the learner's code raises, to report it
            info["memory_limit"] = profiles.arm_memory(config["memory_budget_mb"])
    except BaseException as exc:
        wire.send(res_fd, {"op": "fatal", "message": f"profile {profile.name!r} could not be prepared: "
                                                     f"{type(exc).__name__}: {exc}"})
        return 3
    _STATE["no_spawn"] = True  # from here on submission code runs: no processes, signals, sockets, limits
    wire.send(res_fd, {"op": "ready", "python": sys.version.split()[0], "info": info})
    _serve(cmd_fd, res_fd, config)
    return 0


if __name__ == "__main__":
    try:
        code = main()
    except BaseException:
        sys.__stderr__.write(traceback.format_exc(limit=3))
        code = 3
    os._exit(code)
