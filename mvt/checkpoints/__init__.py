"""Your model, not only ours: load any MViT / ViViT / HVT checkpoint, recognised from the file itself.

::

    model = mvt.load_checkpoint("file:/runs/mvitv2_s_ssv2.pyth")        # or a path, a URL, "org/repo@rev"
    model.spec.labels, model.spec.checkpoint.describe()               # its classes; what was recognised
    rec = mvt.inspect_checkpoint("hub:my-org/vivit-finetune")         # the same, without building the model
    mvt.create_model("url:https://host/ckpt.pth")                     # a spec string works wherever a name does

Formats (one module each; the converters are pure functions with rename tables that fail loudly):
PySlowFast ``.pyth`` (:mod:`.pyslowfast`: ``model_state`` + the training ``cfg``), MMAction2
(:mod:`.mmaction`: ``state_dict`` with ``backbone.`` / ``cls_head.``, ``meta``), torchvision state dicts and
torchvision-references training files (:mod:`.torchvision_fmt`), Hugging Face ``VivitForVideoClassification``
repositories (:mod:`.hub_vivit`), HVT's release and training files (:mod:`.hvt_files`) and mvt-lens's own
safetensors (:mod:`.ours`). :mod:`.detect` picks the format and settles labels and preprocessing;
:mod:`.sources` resolves spec strings to files (downloads recognised before they are cached);
:mod:`.session` registers users' models under stable names; :mod:`.public` registers the papers' released
checkpoints (:data:`mvt.zoo.PUBLIC_CHECKPOINTS`).

Safety as everywhere in mvt: safetensors, or ``torch.load(weights_only=True)`` with ``argparse.Namespace``
as the only extra global (training files' ``args``); PySlowFast's cfg is a YAML string read with
``yaml.safe_load``, MMAction2's config text is walked as an ``ast``, never executed; files over
``MVT_CHECKPOINT_MAX_MB`` (default 4096) are refused.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .. import zoo
from ..weights import ProgressFn
from . import session
from .public import register_public
from .records import FORMAT_NAMES, Preprocessing, Recognised
from .session import Labels
from .sources import SCHEMES, is_source, parse_source


def inspect_checkpoint(
    source: str | Path,
    *,
    arch: str | None = None,
    labels: Labels = None,
    download: bool = True,
    progress: ProgressFn | None = None,
    timeout: float | None = None,
) -> Recognised:
    """What ``source`` is: format, family, variant, classes, labels and where they came from, preprocessing,
    parameter count (:meth:`Recognised.describe` says it in lines). ``source``: a spec string (``file:…``,
    ``url:…``, ``hub:org/name[@rev]``), a path, a URL or a repo id. ``arch``: a family (``"mvit"``) the file
    must be, or a registered architecture to load it into. ``labels``: class names (a list, or a file: one a
    line, a JSON list or ``{index: name}``) for a file that names none of its own.

    Raises :class:`mvt.WeightsError` naming what did not fit (an unknown format, an architecture it cannot
    place, missing or unexpected keys, a shape mismatch); a download that fails so never enters the cache."""
    rec, _ = session.recognise(
        str(source), arch=arch, labels=labels, download=download, progress=progress, timeout=timeout
    )
    return rec


def register_checkpoint_model(
    source: str | Path,
    *,
    arch: str | None = None,
    labels: Labels = None,
    download: bool = True,
    progress: ProgressFn | None = None,
    timeout: float | None = None,
) -> str:
    """Recognise ``source`` and register it for this process; returns its registry name (stable: the same
    file and options give the same name). Then ``mvt.create_model(name)`` builds it, and the name goes
    wherever a registry name goes (the analysis service, ``analyse-dataset``)."""
    spec = session.register(
        str(source), arch=arch, labels=labels, download=download, progress=progress, timeout=timeout
    )
    return spec.name


def load_checkpoint(
    source: str | Path,
    *,
    arch: str | None = None,
    labels: Labels = None,
    device: str | torch.device = "cpu",
    download: bool = True,
    progress: ProgressFn | None = None,
    timeout: float | None = None,
) -> nn.Module:
    """Build the model ``source`` holds, with its weights, in eval mode; ``model.spec`` gives its input
    settings and class names, ``model.spec.checkpoint`` what was recognised. See :func:`inspect_checkpoint`
    for the arguments and errors."""
    name = register_checkpoint_model(
        source, arch=arch, labels=labels, download=download, progress=progress, timeout=timeout
    )
    return zoo.create_model(name, device=device, download=download, progress=progress, timeout=timeout)


for _prefix in SCHEMES:
    zoo.register_resolver(_prefix, session.resolve)
register_public()

__all__ = [
    "FORMAT_NAMES",
    "Preprocessing",
    "Recognised",
    "inspect_checkpoint",
    "is_source",
    "load_checkpoint",
    "parse_source",
    "register_checkpoint_model",
]
