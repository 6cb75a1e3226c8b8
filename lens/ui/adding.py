"""Add a model: a person's own checkpoint — an uploaded file or a Hugging Face repo id — into their session.

:func:`add` recognises the checkpoint (:meth:`lens.Service.add_model`: format, family, variant, head, labels
and preprocessing from the file itself) and returns its spec; :func:`recognised_html` says what was
recognised, :func:`problem_html` what did not fit (the library's one :class:`mvt.WeightsError` sentence), in
the page. An uploaded file is copied into the session's own folder under a plain name (so nothing in a file
name is read as an option of a spec string) and deleted with it; a file that is not recognised is deleted at
once and nothing is registered. In the app a person names a checkpoint only by uploading it or by a Hub repo
id: spec strings naming the server's files (``file:``) or any URL (``url:``) are refused, wherever a name is
typed (:func:`foreign`).

:class:`Added` keeps, per browser session, the models it added: they are offered in that session's picker
only (other sessions' pickers never list them, and a Compare there that names one is refused), and dropped
— built model, results, registration — when the last session holding one ends.
"""

from __future__ import annotations

import html
import re
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path

import mvt
from mvt import zoo
from mvt.checkpoints import FORMAT_NAMES, is_source

from ..core.request import MAX_MODELS, LensError
from ..core.storage import file_sha256
from ..service.service import Service

MAX_MB = 200
"""The largest checkpoint file the app takes (also the app's upload limit, enforced before it is read)."""
_REPO = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?")
_PLAIN = re.compile(r"[^A-Za-z0-9._-]+")


class Added:
    """The models each browser session added (in the order added); thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_session: dict[str, dict[str, str]] = {}
        """session → {model name: the spec string it was registered from}."""

    def names(self, session: str | None) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._by_session.get(session or "", {}))

    def add(self, session: str | None, name: str, source: str) -> None:
        with self._lock:
            self._by_session.setdefault(session or "", {})[name] = source

    def end(self, session: str | None) -> dict[str, str]:
        """Forget ``session``'s models; returns those no other session holds (name → source)."""
        with self._lock:
            mine = self._by_session.pop(session or "", {})
            held = {n for models in self._by_session.values() for n in models}
            return {n: s for n, s in mine.items() if n not in held}


def is_users(name: str) -> bool:
    """Whether the registered model ``name`` comes from a user's checkpoint (a spec string: not looked up)."""
    if is_source(name):
        return False
    try:
        return mvt.get_spec(name).checkpoint is not None
    except KeyError:
        return False


def foreign(names: Sequence[str], mine: Sequence[str]) -> list[str]:
    """The names in ``names`` this session may not run: spec strings (``file:``, ``url:``, ``hub:`` — in the
    app a checkpoint comes through Add a model) and users' models another session added."""
    return [n for n in names if is_source(n) or (n not in mine and is_users(n))]


def foreign_message(names: Sequence[str]) -> str:
    return (
        f"{', '.join(names)}: not a model of this page. Add your own checkpoint with “Add a model” (upload "
        "the file or type its Hugging Face repo id); it then appears in the models list."
    )


def hub_source(text: str) -> str:
    """A typed Hugging Face repo id (``org/name``, ``org/name@revision``, with or without ``hub:``) as a spec
    string; anything else (a path, a URL, ``file:``/``url:``) is a :class:`LensError` saying what to do."""
    typed = text.strip()
    repo = typed[4:].strip() if typed.startswith("hub:") else typed
    if not _REPO.fullmatch(repo) or repo.startswith(("file:", "url:")) or ".." in repo:
        raise LensError(
            f"{typed!r} is not a Hugging Face repo id: type org/name (or org/name@revision). "
            "A file of your own: upload it above. A URL: download the file and upload it."
        )
    return f"hub:{repo}"


def class_names(text: str | None) -> list[str] | None:
    """Class names typed one a line (``None``: none typed)."""
    names = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return names or None


def _copy(upload: Path, folder: Path) -> Path:
    """``upload`` copied into ``folder/models/<sha>/`` under a plain name (or the copy already there)."""
    size = upload.stat().st_size
    if size > MAX_MB * 1024**2:
        raise LensError(
            f"{upload.name} is {size / 1024**2:.0f} MB, over the {MAX_MB} MB this app takes for a "
            "checkpoint. Save the weights alone (e.g. a training file's model_state and cfg, without the "
            "optimizer state), or type its Hugging Face repo id."
        )
    stem, suffix = _PLAIN.sub("_", upload.stem).strip("._")[:60] or "checkpoint", upload.suffix.lower()
    dest = folder / "models" / file_sha256(upload)[:16] / f"{stem}{_PLAIN.sub('', suffix)}"
    if not dest.is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(upload, dest)
    return dest


def add(
    service: Service, folder: Path, *, checkpoint: str | None, repo: str | None, labels: str | None
) -> tuple[mvt.ModelSpec, str]:
    """Recognise and register an uploaded ``checkpoint`` (a path the web server wrote; copied into ``folder``,
    the session's) or, without one, the Hub ``repo`` typed; ``labels``: class names typed one a line.
    Returns the spec and the spec string it was registered from. A checkpoint that does not fit is a
    :class:`LensError` naming what did not fit, and leaves nothing behind."""
    names = class_names(labels)
    if checkpoint:
        copy = _copy(Path(checkpoint), folder)
        source = f"file:{copy}"
        try:
            return service.add_model(source, labels=names), source
        except BaseException:
            shutil.rmtree(copy.parent, ignore_errors=True)
            raise
    if repo and repo.strip():
        source = hub_source(repo)
        return service.add_model(source, labels=names), source
    raise LensError("Choose a checkpoint file, or type a Hugging Face repo id, then press Add.")


def drop(service: Service, name: str, source: str) -> None:
    """Forget a user's model nobody holds any more: its built model and results, its spec string, and the
    architecture registered for its file alone."""
    from mvt.checkpoints import session

    service.forget(name)
    session.forget(source)
    try:
        spec = mvt.get_spec(name)
    except KeyError:
        return
    if spec.checkpoint is not None and spec.checkpoint.arch is None:  # an architecture of this file only
        zoo.unregister_arch(spec.arch)


def chosen(models: Sequence[str] | None, name: str) -> tuple[list[str], bool]:
    """The picker's selection with ``name`` added (and whether it fitted: at most :data:`MAX_MODELS`)."""
    picked = list(models or [])
    if name in picked:
        return picked, True
    if len(picked) >= MAX_MODELS:
        return picked, False
    return [*picked, name], True


def _classes(labels: Sequence[str], shown: int = 8) -> str:
    head = ", ".join(labels[:shown])
    return head + (f", … ({len(labels) - shown} more)" if len(labels) > shown else "")


def recognised_html(spec: mvt.ModelSpec, fitted: bool = True) -> str:
    """What was recognised in the checkpoint of ``spec``, as the Add-a-model section shows it."""
    rec = spec.checkpoint
    esc = html.escape
    where = (
        "It is in the models list and chosen: press Compare."
        if fitted
        else f"It is in the models list; {MAX_MODELS} are chosen already, so remove one and pick it."
    )
    rows = [
        ("format", FORMAT_NAMES.get(rec.format, rec.format)),
        ("family", rec.family),
        ("variant", rec.variant),
        ("classes", f"{rec.num_classes}: {_classes(rec.labels)}"),
        ("labels", rec.labels_source),
        ("preprocessing", rec.preprocessing.describe()),
        (
            "parameters",
            f"{rec.parameters / 1e6:.1f} M ({rec.parameters:,})"
            if rec.parameters >= 1e6
            else f"{rec.parameters:,}",
        ),
        *(("note", n) for n in (*rec.notes, *rec.preprocessing.notes)),
    ]
    body = "".join(
        f"<div class='mvt-key'>{esc(k)}</div><div class='mvt-value'>{esc(str(v))}</div>" for k, v in rows
    )
    return (
        f"<div class='mvt-added' role='status'><div class='mvt-added-head'>Added "
        f"<span class='mvt-added-name'>{esc(spec.name)}</span>. {esc(where)}</div>"
        f"<div class='mvt-recognised'>{body}</div></div>"
    )


def problem_html(message: str) -> str:
    """Why a checkpoint was not added, in the section (one sentence from the loader; nothing was added)."""
    said = message.strip()
    said += "" if said.endswith((".", "!", "?", ")")) else "."
    return (
        f"<div class='mvt-note-panel' role='alert'><b>Not added:</b> {html.escape(said)} "
        "Nothing was registered or kept.</div>"
    )
