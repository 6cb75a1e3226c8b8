"""Opt-in int8 dynamic quantisation of a model's linear layers (an approximation, labelled as such).

:func:`quantize_linears` returns a copy of a model in which every ``nn.Linear`` called as a module runs as an
int8 × int8 product with int32 accumulation (PyTorch's quantized ``linear_dynamic``: weights quantised once,
per output channel, symmetric; activations quantised per call from their own range; VNNI / AMX kernels on
CPUs that have them). Everything else — attention, LayerNorm, convolutions, the CLS rows and maps — stays
fp32. Code that reads a layer's ``weight`` directly (MViT's q/k/v projection) keeps the fp32 weight, so it
stays exact. The logits and maps move: bench/README.md reports top-1 agreement and map correlation against
fp32 on SynthMotion, and the app labels results made this way.

PyTorch has marked its quantized tensor types deprecated (pytorch/pytorch#184982, in favour of torchao,
which this project does not depend on); the kernels are the ones ``torch.ao.quantization.quantize_dynamic``
uses, and the warning is silenced here. ``torch._int_mm`` (the other int8 product) has no VNNI kernel on CPU
and was measured no faster than fp32 (bench/README.md).
"""

from __future__ import annotations

import copy
import warnings
from functools import lru_cache

import torch
from torch import nn

PRECISIONS = ("fp32", "int8")
"""What a caller may ask for: the model as trained, or :func:`quantize_linears`'s approximation."""

INT8_LABEL = "int8 dynamic quantisation of the linear layers (approximate; faster on CPU)"


class DynamicInt8Linear(nn.Linear):
    """An ``nn.Linear`` whose ``forward`` runs int8 dynamic quantisation; ``weight`` / ``bias`` stay the fp32
    originals (for code that reads them) and are not trained."""

    def __init__(self, linear: nn.Linear, reduce_range: bool | None = None) -> None:
        super().__init__(linear.in_features, linear.out_features, bias=linear.bias is not None)
        self.load_state_dict(linear.state_dict())
        self.requires_grad_(False)
        w = self.weight.detach().float()
        scale = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-12).double()  # (out,) symmetric, per channel
        zero = torch.zeros(w.shape[0], dtype=torch.long)
        bias = None if self.bias is None else self.bias.detach().float()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*quantized tensor.*deprecated", category=UserWarning)
            qweight = torch.quantize_per_channel(w, scale, zero, axis=0, dtype=torch.qint8)
            self._packed = torch.ops.quantized.linear_prepack(qweight, bias)
        self.reduce_range = not has_vnni() if reduce_range is None else reduce_range

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu":
            return super().forward(x)  # the quantized kernels are CPU kernels
        shape = x.shape
        y = torch.ops.quantized.linear_dynamic(
            x.reshape(-1, shape[-1]).float().contiguous(), self._packed, self.reduce_range
        )  # (N, out)
        return y.reshape(*shape[:-1], self.out_features).to(x.dtype)


@lru_cache(maxsize=1)
def has_vnni() -> bool:
    """Whether this CPU has an int8 dot-product instruction (AVX-512 VNNI or AVX-VNNI; Linux /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return False
    return " avx512_vnni" in flags or " avx_vnni" in flags


def quantize_linears(model: nn.Module, *, reduce_range: bool | None = None) -> nn.Module:
    """A copy of ``model`` (eval mode) whose ``nn.Linear`` layers are :class:`DynamicInt8Linear`; the
    original is untouched. ``reduce_range`` quantises activations to 7 bits (PyTorch's default for dynamic
    quantisation: it keeps the int16 intermediate sums of pre-VNNI kernels from saturating); by default only
    on CPUs without VNNI, where it is needed (with VNNI it only doubles the error: bench/README.md)."""
    out = copy.deepcopy(model).eval()
    for parent in list(out.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear:
                setattr(parent, name, DynamicInt8Linear(child, reduce_range))
    return out
