"""Where a run's weights start: a previous checkpoint (``--init``), a related model's tensors (``--warm-start``)
or motion-sensitive patch embeddings (``--motion-init``)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from ..weights import load_file
from ..zoo import get_arch, load_state_dict_strict
from .checkpoint import read_metadata
from .config import StartConfig


@torch.no_grad()
def motion_init(model: nn.Module) -> int:
    """Give every RGB space-time patch embedding (a ``Conv3d`` on 3 channels with a temporal kernel of 2 or
    more) a kernel that is constant in time for half of its output channels and a zero-sum temporal ramp for
    the other half, keeping each channel's random spatial filter and its variance. The ramp channels see only
    what changes between frames, which is where SynthMotion's evidence is, from the first step. Returns the
    number of re-initialised convolutions. Training choice only: the architecture is unchanged."""
    count = 0
    for module in model.modules():
        if not isinstance(module, nn.Conv3d) or module.in_channels != 3 or module.kernel_size[0] < 2:
            continue
        w = module.weight  # (O, 3, kt, kh, kw)
        kt = w.shape[2]
        spatial = w.mean(dim=2, keepdim=True) * math.sqrt(kt)  # (O, 3, 1, kh, kw): same variance as one tap
        ramp = torch.linspace(-1.0, 1.0, kt, dtype=w.dtype)
        ramp = ramp / ramp.pow(2).mean().sqrt()  # zero-sum, mean square 1
        flat = torch.ones(kt, dtype=w.dtype)
        profile = torch.stack([flat if o % 2 == 0 else ramp for o in range(w.shape[0])])  # (O, kt)
        w.copy_(spatial * profile[:, None, :, None, None] / math.sqrt(kt))
        count += 1
    return count


WARM_START_RENAMES: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {
    # HVT (timm ViT names) -> ViViT model 1-4 (the encoder's blocks; HVT's per-stage pooled pos_embeds unused).
    ("hvt", "vivit"): (
        ("patch_embed.proj.", "patch_embed."),
        ("pos_embed", "encoder.pos_embed"),
        ("blocks.", "encoder.blocks."),
        ("norm.", "encoder.norm."),
    ),
}
"""Key prefix renames from a source family's state dict to a target family's, for :func:`warm_start`."""


def _time_average_into(target: torch.Tensor, src: torch.Tensor) -> bool:
    """A space-time position embedding ``(1, [1 +] T·S, D)`` averaged over time into a spatial one
    ``(1, [1 +] S, D)`` (e.g. ViViT model 2's spatial encoder); False when no CLS/grid split fits."""
    for c_t, c_s in ((1, 1), (1, 0), (0, 1), (0, 0)):
        n_t, n_s = target.shape[1] - c_t, src.shape[1] - c_s
        if n_t > 0 and n_s > n_t and n_s % n_t == 0:
            grid = src[:, c_s:].reshape(1, n_s // n_t, n_t, src.shape[2])  # (1, T, S, D)
            target[:, c_t:] = grid.mean(dim=1)
            if c_t and c_s:
                target[:, :1] = src[:, :1]
            return True
    return False


@torch.no_grad()
def warm_start(
    model: nn.Module, state: dict[str, torch.Tensor], renames: tuple[tuple[str, str], ...] = ()
) -> tuple[list[str], list[str]]:
    """Copy from a related model's state dict every tensor whose (renamed) name and shape match.

    ``renames`` are ``(source_prefix, target_prefix)`` pairs (first match wins; see :data:`WARM_START_RENAMES`).
    A position embedding ``(1, N, D)`` also carries over when the target has one token fewer (the source's
    leading CLS position is dropped), one more (the target's CLS position stays at its initialisation), or is
    the source's space-time grid without time (averaged over time).
    Returns ``(left_at_init, unused)`` key lists so the caller can say what was not carried over."""

    def rename(key: str) -> str:
        for old, new in renames:
            if key.startswith(old):
                return new + key[len(old) :]
        return key

    source = {rename(k): (k, v) for k, v in state.items()}
    left, used = [], set()
    for key, target in model.state_dict().items():
        orig, src = source.get(key, (None, None))
        if src is None:
            left.append(key)
            continue
        if src.shape == target.shape:
            target.copy_(src)
        elif key.endswith("pos_embed") and src.ndim == 3 and src.shape[2] == target.shape[2]:
            if src.shape[1] == target.shape[1] + 1:
                target.copy_(src[:, 1:])  # (1, 1 + N, D) -> (1, N, D): drop the CLS position
            elif src.shape[1] + 1 == target.shape[1]:
                target[:, 1:] = src  # (1, N, D) -> (1, 1 + N, D): the CLS position keeps its init
            elif not _time_average_into(target, src):
                left.append(key)
                continue
        else:
            left.append(key)
            continue
        used.add(orig)
    return left, sorted(set(state) - used)


def start_weights(
    model: nn.Module,
    arch: str,
    start: StartConfig,
    *,
    registered: bool,
    log: Callable[[str], None] = print,
) -> None:
    """Give ``model`` (of ``arch``) its starting weights as ``start`` says: ``init`` loads a checkpoint strictly
    (through the arch's converter when the model is the registry's, e.g. an MViT's weights into MMViT towers),
    else ``motion_init`` re-initialises its patch embeddings; then ``warm_start`` copies a related model's
    matching tensors (renamed by :data:`WARM_START_RENAMES` between the two families)."""
    if start.init is not None:
        convert = get_arch(arch).convert if registered else None
        load_state_dict_strict(model, load_file(start.init), convert, what=f"--init {start.init}")
    elif start.motion_init:
        log(f"motion_init: {motion_init(model)} space-time patch embedding(s) re-initialised")
    if start.warm_start is not None:
        source_arch = read_metadata(start.warm_start).get("arch", "")
        families = (get_arch(source_arch).family if source_arch else "", get_arch(arch).family)
        renames = WARM_START_RENAMES.get(families, ())
        left, unused = warm_start(model, load_file(start.warm_start), renames)
        log(
            f"warm start from {start.warm_start}: left at init {left or 'nothing'}; unused {unused or 'nothing'}"
        )
