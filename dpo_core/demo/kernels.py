"""A faster matrix product for the few rows of a decode step on CPU.

A decode step multiplies every weight matrix by 1 to 4 rows: one new token per answer. PyTorch
computes `x @ W.T` for them through MKL (the BLAS of the PyPI torch wheel), and on this
project's CPUs (AMD EPYC, 2 cores) that is slow for so few rows: 2 rows cost twice what 1 row
does, as if each row read all the weights again, and 1 row runs at about half the speed of a
2-column matrix-matrix product. Computing `(W @ x.T).T` instead makes the rows the columns of a
matrix-matrix product, which reads the weights once at full speed. Measured on the default model
(`bench/bench_chat.py` prints it): a 1-row decode step takes about half the time, and 2 rows
(both sides of a chat in one batch) cost about what 1 row does.

Only the forward of `nn.Linear` modules with float32 weights on CPU changes, and only for
inputs of at most `SMALL_ROWS` rows; anything larger (prefill, scoring, training) takes the
stock path unchanged. The result equals the stock product up to float rounding order.
`DPO_LAB_DECODE_KERNEL=stock` turns it off.
"""

from __future__ import annotations

import os
import types

SMALL_ROWS = 4
MIN_WEIGHTS = 1 << 16  # smaller layers (LoRA's A and B) gain nothing: the stock call is cheaper
_FLAG = "_dpo_small_rows"


def _forward(self, x):
    import torch.nn.functional as F

    rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
    if not getattr(self, _FLAG, False) or not 0 < rows <= SMALL_ROWS or x.dtype != \
            self.weight.dtype or x.requires_grad:
        return F.linear(x, self.weight, self.bias)
    flat = x.reshape(rows, x.shape[-1])
    if rows == 1:  # a matrix-vector product is the slow case: take a 2-column product's first
        out = (self.weight @ flat.expand(2, -1).contiguous().T)[:, :1]
    else:
        out = self.weight @ flat.T
    out = out.T.contiguous().reshape(*x.shape[:-1], self.weight.shape[0])
    return out if self.bias is None else out + self.bias


def enabled_by_default() -> bool:
    """On unless `DPO_LAB_DECODE_KERNEL=stock`."""
    return os.environ.get("DPO_LAB_DECODE_KERNEL", "auto").strip().lower() != "stock"


def use_small_rows_kernel(model, enabled: bool | None = None) -> int:
    """Switch the small-rows product on (or off) for the model's CPU float32 linear layers.

    Idempotent; layers added later (a LoRA adapter attached afterwards) need another call.
    Returns how many layers use it. Layers with accelerate hooks (offloaded) are left alone.
    """
    import torch

    on = enabled_by_default() if enabled is None else enabled
    count = 0
    for module in model.modules():
        if not isinstance(module, torch.nn.Linear) or hasattr(module, "_hf_hook"):
            continue
        weight = module.weight
        if weight.device.type != "cpu" or weight.dtype != torch.float32 \
                or weight.numel() < MIN_WEIGHTS:
            continue
        if "forward" not in vars(module):
            module.forward = types.MethodType(_forward, module)
        elif getattr(module.forward, "__func__", None) is not _forward:
            continue  # someone else wraps this layer's forward: leave it as it is
        setattr(module, _FLAG, on)
        count += on
    return count
