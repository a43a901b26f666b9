"""Tests for gradbench.axes.clipping: ``none``, ``norm:C`` and ``value:C``."""

from __future__ import annotations

import math

import pytest
import torch

from gradbench.axes.clipping import CLIPS, Clipping, global_norm, list_clips, parse_clipping

torch.set_num_threads(1)


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    "text, kind, threshold, label",
    [
        ("none", "none", None, "none"),
        ("  none ", "none", None, "none"),
        ("norm:1", "norm", 1.0, "norm:1"),
        ("norm:1.0", "norm", 1.0, "norm:1"),
        ("norm:0.25", "norm", 0.25, "norm:0.25"),
        ("norm:1e-3", "norm", 1e-3, "norm:0.001"),
        ("value:0.5", "value", 0.5, "value:0.5"),
        ("value:10", "value", 10.0, "value:10"),
    ],
)
def test_parse_clipping_ok(text, kind, threshold, label):
    clipping = parse_clipping(text)
    assert clipping == Clipping(kind, threshold)
    assert clipping.kind == kind
    assert clipping.threshold == threshold
    assert clipping.label == label
    assert clipping.enabled is (kind != "none")
    # The label parses back to the same clipping.
    assert parse_clipping(clipping.label) == clipping


CLIP_ERRORS = [
    ("norm:-1", r"invalid clip 'norm:-1': threshold must be a positive number"),
    ("norm:0", r"invalid clip 'norm:0': threshold must be a positive number"),
    ("value:-0.5", r"invalid clip 'value:-0.5'"),
    ("norm:inf", r"invalid clip 'norm:inf'"),
    ("norm:nan", r"invalid clip 'norm:nan'"),
    ("norm:abc", r"invalid clip 'norm:abc': threshold 'abc' is not a number"),
    ("norm", r"invalid clip 'norm': threshold '' is not a number"),
    ("value:", r"invalid clip 'value:': threshold '' is not a number"),
    ("none:1", r"invalid clip 'none:1': 'none' takes no threshold"),
    ("none:", r"invalid clip 'none:'"),
    ("nrom:1", r"unknown clip 'nrom' \(did you mean 'norm'\?\).* in 'nrom:1'"),
    ("vlaue:0.5", r"unknown clip 'vlaue' \(did you mean 'value'\?\)"),
    ("", r"unknown clip ''"),
    ("NORM:1", r"unknown clip 'NORM'"),
]


@pytest.mark.parametrize("text, pattern", CLIP_ERRORS)
def test_parse_clipping_errors(text, pattern):
    with pytest.raises(ValueError, match=pattern) as info:
        parse_clipping(text)
    message = str(info.value)
    assert "none, norm:C, value:C" in message  # the valid forms are listed


@pytest.mark.parametrize(
    "kind, threshold, pattern",
    [
        ("none", 1.0, r"clip 'none' takes no threshold"),
        ("norm", None, r"invalid clip threshold norm:None"),
        ("norm", 0.0, r"invalid clip threshold"),
        ("value", -1.0, r"invalid clip threshold"),
        ("norm", math.inf, r"invalid clip threshold"),
        ("norm", "1", r"invalid clip threshold"),
        ("nrom", 1.0, r"unknown clip 'nrom' \(did you mean 'norm'\?\)"),
    ],
)
def test_clipping_constructor_errors(kind, threshold, pattern):
    with pytest.raises(ValueError, match=pattern):
        Clipping(kind, threshold)


def test_list_clips():
    assert list_clips() == ["none", "norm", "value"]
    assert set(CLIPS.names()) == {"none", "norm", "value"}


# --------------------------------------------------------------------------- gradient sets


def _random_grads(seed: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    count = int(torch.randint(1, 6, (1,), generator=generator))
    grads = []
    for _ in range(count):
        shape = tuple(int(s) for s in torch.randint(1, 9, (int(torch.randint(1, 4, (1,), generator=generator)),), generator=generator))
        scale = 10.0 ** float(torch.empty(()).uniform_(-3, 3, generator=generator))
        grads.append(scale * torch.randn(shape, generator=generator))
    return grads


def _as_parameters(grads: list[torch.Tensor]) -> list[torch.nn.Parameter]:
    parameters = []
    for grad in grads:
        parameter = torch.nn.Parameter(torch.zeros_like(grad))
        parameter.grad = grad.clone()
        parameters.append(parameter)
    return parameters


def _clone(grads):
    return [g.clone() for g in grads]


SEEDS = range(12)
RELATIVE_THRESHOLDS = [0.01, 0.3, 0.999, 1.5, 100.0]


@pytest.mark.parametrize("seed", SEEDS)
def test_norm_clipping_matches_torch_and_bounds_norm(seed):
    original = _random_grads(seed)
    norm = global_norm(original).item()
    for relative in RELATIVE_THRESHOLDS:
        threshold = relative * norm
        grads = _clone(original)
        parameters = _as_parameters(original)
        torch_norm = torch.nn.utils.clip_grad_norm_(parameters, threshold)
        # Norm before clipping: what clip_grad_norm_ returns.
        norm_before = global_norm(grads)
        assert torch.allclose(norm_before, torch_norm, rtol=1e-6)
        norm_after = Clipping("norm", threshold).apply(grads)
        for mine, theirs in zip(grads, parameters):
            assert torch.allclose(mine, theirs.grad, rtol=1e-6, atol=0), (seed, relative)
        # Global norm after is at most C, and equals min(norm, C).
        recomputed = global_norm(grads)
        assert recomputed.item() <= threshold * (1 + 1e-5)
        assert norm_after.item() == pytest.approx(recomputed.item(), rel=1e-5)
        # min(norm, C), up to torch's 1e-6 added to the norm in the coefficient C / (norm + 1e-6).
        assert norm_after.item() == pytest.approx(min(norm, threshold), rel=1e-5 + 1e-6 / norm)
        # The direction is kept: clipping only rescales.
        for mine, before in zip(grads, original):
            coefficient = min(1.0, threshold / (norm + 1e-6))
            assert torch.allclose(mine, before * coefficient, rtol=1e-5)


@pytest.mark.parametrize("seed", SEEDS)
def test_norm_clipping_with_given_norm_before(seed):
    # The monitor passes its own (float64) norm; the result is the same as computing it.
    original = _random_grads(seed)
    threshold = 0.5 * global_norm(original).item()
    computed, given = _clone(original), _clone(original)
    after_computed = Clipping("norm", threshold).apply(computed)
    after_given = Clipping("norm", threshold).apply(given, global_norm(original).double())
    assert after_given.dtype == torch.float64
    for a, b in zip(computed, given):
        assert torch.allclose(a, b, rtol=1e-6)
        assert a.dtype == b.dtype == torch.float32
    assert after_given.item() == pytest.approx(after_computed.item(), rel=1e-6)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("threshold", [0.1, 1.0, 10.0])
def test_norm_clipping_twice_changes_nothing_more(seed, threshold):
    original = _random_grads(seed)
    norm = global_norm(original).item()
    original = [g * (5 * threshold / norm) for g in original]  # global norm 5 C: clipping bites
    clipping = Clipping("norm", threshold)
    grads = _clone(original)
    clipping.apply(grads)
    once = _clone(grads)
    second_after = clipping.apply(grads)
    # Not bit-identical: like torch, the coefficient is C / (norm + 1e-6), a hair below 1 the
    # second time; the relative change is about 1e-6 / C.
    for a, b in zip(grads, once):
        assert torch.allclose(a, b, rtol=1e-6 / threshold + 1e-6, atol=0)
    assert second_after.item() <= threshold * (1 + 1e-6)


@pytest.mark.parametrize("seed", SEEDS)
def test_norm_below_threshold_leaves_grads_bitwise_unchanged(seed):
    original = _random_grads(seed)
    norm = global_norm(original).item()
    for threshold in (norm * 1.01, norm * 10, norm + 1.0):
        grads = _clone(original)
        norm_after = Clipping("norm", threshold).apply(grads)
        for a, b in zip(grads, original):
            assert torch.equal(a, b)
        assert norm_after.item() == pytest.approx(norm, rel=1e-6)


@pytest.mark.parametrize("seed", SEEDS)
def test_value_clipping_matches_torch(seed):
    original = _random_grads(seed)
    largest = max(g.abs().max().item() for g in original)
    for relative in (0.01, 0.5, 2.0):
        # A threshold float32 can hold, so that |g| <= C holds exactly for float32 gradients.
        threshold = torch.tensor(relative * largest, dtype=torch.float32).item()
        grads = _clone(original)
        parameters = _as_parameters(original)
        torch.nn.utils.clip_grad_value_(parameters, threshold)
        norm_after = Clipping("value", threshold).apply(grads)
        for mine, theirs, before in zip(grads, parameters, original):
            assert torch.equal(mine, theirs.grad)
            assert mine.abs().max().item() <= threshold
            # Elements inside [-C, C] are untouched.
            inside = before.abs() <= threshold
            assert torch.equal(mine[inside], before[inside])
        assert torch.allclose(norm_after, global_norm(grads), rtol=1e-6)
        if relative >= 1:
            for mine, before in zip(grads, original):
                assert torch.equal(mine, before)


def test_value_clipping_returns_norm_in_dtype_of_norm_before():
    grads = [torch.tensor([3.0, -4.0])]
    after = Clipping("value", 1.0).apply(grads, torch.tensor(5.0, dtype=torch.float64))
    assert after.dtype == torch.float64
    assert torch.equal(grads[0], torch.tensor([1.0, -1.0]))
    assert after.item() == pytest.approx(math.sqrt(2.0))


def test_none_clipping_changes_nothing_and_returns_norm():
    grads = [torch.tensor([3.0, 0.0]), torch.tensor([[4.0]])]
    original = _clone(grads)
    after = Clipping().apply(grads)
    assert after.item() == pytest.approx(5.0)
    for a, b in zip(grads, original):
        assert torch.equal(a, b)
    given = torch.tensor(123.0)
    assert Clipping().apply(grads, given) is given
    assert not Clipping().enabled


def test_exact_small_example():
    grads = [torch.tensor([3.0, 0.0]), torch.tensor([[0.0, 4.0]])]  # global norm 5
    after = Clipping("norm", 1.0).apply(grads)
    assert after.item() == pytest.approx(1.0, rel=1e-6)
    assert torch.allclose(grads[0], torch.tensor([0.6, 0.0]))
    assert torch.allclose(grads[1], torch.tensor([[0.0, 0.8]]))


def test_global_norm():
    grads = [torch.tensor([3.0]), torch.tensor([[4.0, 12.0]])]
    assert global_norm(grads).item() == pytest.approx(13.0)
    assert global_norm([]).item() == 0.0


@pytest.mark.parametrize("seed", SEEDS[:4])
@pytest.mark.parametrize("kind, relative", [("norm", 0.3), ("norm", 3.0), ("value", 0.3), ("value", 3.0)])
def test_clip_in_place_clips_like_apply(seed, kind, relative):
    original = _random_grads(seed)
    scale = global_norm(original).item() if kind == "norm" else max(g.abs().max().item() for g in original)
    clipping = Clipping(kind, relative * scale)
    applied, in_place = _clone(original), _clone(original)
    clipping.apply(applied)
    assert clipping.clip_(in_place) is None
    for a, b in zip(applied, in_place):
        assert torch.equal(a, b)


def test_value_clip_in_place_computes_no_norm(monkeypatch):
    # The point of clip_: a step that records nothing pays for the clamp alone.
    import gradbench.axes.clipping as clipping_module

    def forbidden(grads):
        raise AssertionError("clip_ computed a norm it does not need")

    monkeypatch.setattr(clipping_module, "global_norm", forbidden)
    grads = [torch.tensor([3.0, -4.0])]
    Clipping("value", 1.0).clip_(grads)
    assert torch.equal(grads[0], torch.tensor([1.0, -1.0]))
    Clipping().clip_(grads)  # none: nothing at all


@pytest.mark.parametrize("norm", [0.0, 0.5, 0.999999, 1.0, 2.0, 1e30, math.inf])
def test_host_coefficient_equals_the_device_coefficient(norm):
    clipping = Clipping("norm", 1.0)
    norm_tensor = torch.tensor(norm, dtype=torch.float64)
    device = torch.clamp(1.0 / (norm_tensor + 1e-6), max=1.0).item()
    assert clipping.coefficient(norm) == device
    assert math.isnan(clipping.coefficient(math.nan))
    assert Clipping("value", 1.0).coefficient(norm) is None and Clipping().coefficient(norm) is None
