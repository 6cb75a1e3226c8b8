"""A stand-in for Hugging Face's ``spaces`` package (0.51) where it matters to a ZeroGPU app, for tests without
a GPU: put this folder's parent on ``PYTHONPATH`` of the app's process, with ``SPACES_ZERO_GPU=true``.

Like the real one (``spaces/zero/decorator.py``, ``spaces/zero/wrappers.py``):

* ``GPU`` is used as ``@GPU``, ``@GPU(duration=...)`` or ``GPU(fn, duration=...)``; ``duration`` is seconds, a
  ``timedelta`` or a callable of the decorated function's arguments (evaluated in the main process, per call);
  without ``SPACES_ZERO_GPU`` true it returns the function unchanged;
* each call runs the function in a worker process made by ``multiprocessing.get_context("fork")``; the
  arguments and the result are ``pickle.dumps``-ed and ``pickle.loads``-ed on the way there and back (an
  unpicklable argument raises in the caller, an unpicklable result fails the call); a call made inside the
  worker runs directly;
* a call asking for more seconds than are left of the quota is refused with ``gradio.Error`` before anything
  runs (as ZeroGPU refuses a visitor's call over their daily quota); a worker's exception comes back as
  ``gradio.Error`` naming its class ("ZeroGPU worker error").

Unlike it: there is no GPU (``torch.cuda`` is left alone, so the app runs on the CPU), a new worker is forked
for every call (the real one may reuse an idle one: nothing may rely on either), and the worker runs torch on
one CPU thread (forked GNU OpenMP threads can hang; the real worker computes on the card).

Every call is appended to ``$SPACES_STUB_LOG`` (a JSON line: ``task``, ``duration`` asked, ``elapsed``,
``refused``, ``ok``, ``worker``: its pid, ``error``). ``$SPACES_STUB_QUOTA`` is the quota in seconds (default
120: an unauthenticated visitor's daily ZeroGPU quota); each call is charged what it asked for.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import sys
import threading
import time
import traceback
from datetime import timedelta
from functools import partial, wraps

__version__ = "0.51.3+stub"

_ctx = multiprocessing.get_context("fork")
_lock = threading.Lock()
_used = 0.0
forked = False


def _zero_gpu() -> bool:
    value = os.environ.get("SPACES_ZERO_GPU")
    return value is not None and value.lower() in ("1", "t", "true")


def _seconds(duration, args, kwargs) -> float:
    if callable(duration):
        duration = duration(*args, **kwargs)
    if duration is None:
        return 60.0  # the real default
    if isinstance(duration, timedelta):
        return duration.total_seconds()
    return float(duration)


def _log(record: dict) -> None:
    path = os.environ.get("SPACES_STUB_LOG")
    if path:
        with _lock, open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def _charge(name: str, seconds: float) -> None:
    """Take ``seconds`` from the quota, or refuse the call (before anything runs)."""
    global _used
    quota = float(os.environ.get("SPACES_STUB_QUOTA", "120"))
    with _lock:
        left = quota - _used
        if seconds > left:
            refused = True
        else:
            refused, _used = False, _used + seconds
    if refused:
        _log({"task": name, "duration": seconds, "refused": True, "ok": False})
        import gradio as gr

        raise gr.Error(
            f"You have exceeded your GPU quota ({seconds:.0f}s requested vs. {max(left, 0):.0f}s left).",
            title="ZeroGPU quota exceeded",
        )


def _worker(task, conn) -> None:
    """In the forked process: arguments in (bytes), the task run, its result or its error out (bytes)."""
    global forked
    forked = True
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    try:
        args, kwargs = pickle.loads(conn.recv_bytes())
        answer = ("ok", task(*args, **kwargs))
    except Exception as e:  # noqa: BLE001 (sent back as the real one does)
        answer = ("error", type(e).__name__, traceback.format_exc())
    try:
        data = pickle.dumps(answer)
    except Exception as e:  # noqa: BLE001 (an unpicklable result fails the call)
        data = pickle.dumps(("error", type(e).__name__, traceback.format_exc()))
    conn.send_bytes(data)
    conn.close()


def _wrap(task, duration):
    name = getattr(task, "__qualname__", repr(task))

    @wraps(task)
    def handler(*args, **kwargs):
        if forked:
            return task(*args, **kwargs)
        seconds = _seconds(duration, args, kwargs)
        _charge(name, seconds)
        payload = pickle.dumps((args, kwargs))  # raises here, in the caller, for an unpicklable argument
        parent, child = _ctx.Pipe()
        started = time.monotonic()
        worker = _ctx.Process(target=_worker, args=(task, child), daemon=True)
        worker.start()
        child.close()
        try:
            parent.send_bytes(payload)
            answer = pickle.loads(parent.recv_bytes())
        except EOFError:
            answer = ("error", "EOFError", "the worker died")
        finally:
            parent.close()
            worker.join()
        ok = answer[0] == "ok"
        record = {"task": name, "duration": seconds, "elapsed": time.monotonic() - started, "refused": False}
        _log({**record, "ok": ok, "worker": worker.pid, "error": None if ok else answer[1]})
        if ok:
            return answer[1]
        sys.stderr.write(answer[2])
        import gradio as gr

        raise gr.Error(f"ZeroGPU worker error: {answer[1]}", title="ZeroGPU worker error")

    return handler


def GPU(task=None, *, duration=None, size=None, **kwargs):  # noqa: N802 (the real name)
    """``spaces.GPU``: see the module docstring."""
    if not callable(task):
        if task is not None:
            duration = task
        return partial(GPU, duration=duration, size=size)
    if not _zero_gpu():
        return task
    return _wrap(task, duration)


def gradio_auto_wrap(task):
    """Gradio asks for it on Spaces only (``SYSTEM=spaces``); auto-wrapping is off, as by default."""
    return task
