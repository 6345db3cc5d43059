"""The small-rows decode product: same numbers as the stock product, only where it helps."""

from __future__ import annotations

import pytest
import torch

from dpo_core.chat.cache import ModelCache
from dpo_core.chat.sampling import SamplingSettings
from dpo_core.chat.side_by_side import side_by_side
from dpo_core.demo import kernels
from dpo_core.demo.kernels import use_small_rows_kernel
from dpo_core.models import TINY_SPEC
from tests.support import make_lora_run


def layer(bias: bool = True, dtype=torch.float32) -> torch.nn.Linear:
    torch.manual_seed(0)
    return torch.nn.Linear(256, 512, bias=bias).to(dtype)


@pytest.mark.parametrize("bias", [True, False])
def test_small_inputs_match_the_stock_product_and_large_ones_are_untouched(bias):
    lin = layer(bias)
    assert use_small_rows_kernel(lin, True) == 1
    stock = lambda x: torch.nn.functional.linear(x, lin.weight, lin.bias)  # noqa: E731
    with torch.inference_mode():
        for shape in [(256,), (1, 256), (2, 256), (3, 256), (4, 256), (2, 1, 256), (1, 4, 256)]:
            x = torch.randn(shape)
            got = lin(x)
            assert got.shape == stock(x).shape and got.is_contiguous()
            torch.testing.assert_close(got, stock(x), rtol=1e-5, atol=1e-5)
        for shape in [(5, 256), (2, 8, 256), (64, 256)]:  # prefill, scoring: the stock call
            x = torch.randn(shape)
            assert torch.equal(lin(x), stock(x))


def test_one_row_equals_the_first_row_of_two():
    """Both sides of a chat in one batch compute the same numbers as one side alone."""
    lin = layer()
    use_small_rows_kernel(lin, True)
    x = torch.randn(2, 256)
    with torch.inference_mode():
        assert torch.equal(lin(x[:1])[0], lin(x)[0])


def test_training_inputs_take_the_stock_path_and_gradients_flow():
    lin = layer()
    use_small_rows_kernel(lin, True)
    x = torch.randn(2, 256, requires_grad=True)
    out = lin(x)
    assert torch.equal(out, torch.nn.functional.linear(x, lin.weight, lin.bias))
    out.sum().backward()
    assert x.grad is not None and lin.weight.grad is not None


def test_switching_off_restores_the_stock_product_and_repeats_do_not_stack():
    lin = layer()
    assert use_small_rows_kernel(lin, True) == 1
    assert use_small_rows_kernel(lin, True) == 1  # idempotent: the forward is set once
    assert lin.forward.__func__ is kernels._forward
    use_small_rows_kernel(lin, False)
    x = torch.randn(2, 256)
    with torch.inference_mode():
        assert torch.equal(lin(x), torch.nn.functional.linear(x, lin.weight, lin.bias))


def test_env_turns_it_off_and_ineligible_layers_are_left_alone(monkeypatch):
    monkeypatch.setenv("DPO_LAB_DECODE_KERNEL", "stock")
    assert use_small_rows_kernel(layer()) == 0
    monkeypatch.delenv("DPO_LAB_DECODE_KERNEL")
    assert use_small_rows_kernel(layer(dtype=torch.bfloat16)) == 0  # not float32
    assert use_small_rows_kernel(torch.nn.Linear(8, 16)) == 0  # a LoRA-sized layer
    wrapped = layer()
    wrapped.forward = lambda x: x  # someone else's wrapper stays in place
    assert use_small_rows_kernel(wrapped) == 0 and wrapped.forward(1) == 1


def test_chat_answers_are_the_same_with_the_kernel_on_every_layer(workspace_with_tiny,
                                                                 monkeypatch):
    """The tiny model's layers are below MIN_WEIGHTS; lowering it puts every layer (LoRA's A
    and B too) on the small-rows product: answers, batched or not, stay what they were."""
    run = make_lora_run(workspace_with_tiny)
    settings = SamplingSettings(seed=4, max_new_tokens=16, temperature=1.0)

    def answers(min_weights: int) -> list[str]:
        monkeypatch.setattr(kernels, "MIN_WEIGHTS", min_weights)
        cache = ModelCache(workspace_with_tiny)
        both = side_by_side(cache, TINY_SPEC, run, [], [], "what is that ?", settings)
        apart = side_by_side(cache, TINY_SPEC, run, [], [], "what is that ?", settings,
                             batch=False)
        model = cache.get(run).model
        on = [m for m in model.modules() if getattr(m, kernels._FLAG, False)]
        assert bool(on) is (min_weights == 0)
        assert both.batched and (both.left.text, both.right.text) == (apart.left.text,
                                                                      apart.right.text)
        return [both.left.text, both.right.text]

    assert answers(0) == answers(1 << 30)
