"""Verdicts on a run's gradient health, with the numbers behind each, in plain words.

A run gets one or more of:

- ``diverged``: a loss, gradient or weight became NaN or Inf (the step, quantity and layer).
- ``vanishing``: early in training the first layer receives less than ``vanishing_ratio`` of the
  last layer's gradient (median of ``||grad first|| / ||grad last||`` over the first tenth of
  the recorded steps: what decides whether the lower layers learn at all).
- ``exploding``: that ratio is above ``exploding_ratio`` (the gradient grows on its way down),
  or the global gradient norm grew to more than ``exploding_growth`` times its first value.
- ``dead_units``: in some rectifier activation, at least ``dead_fraction`` of the units were
  dead (zero for the whole batch), median over the first or the last tenth of the activation
  records (whichever is worse).
- ``saturated``: likewise for saturating activations, with ``saturated_fraction``; or at least
  ``pinned_fraction`` of an activation's outputs (over every example and unit) sit in the
  outer tenth of its range, a layer pinned near one end for most examples (Glorot & Bengio's
  top sigmoid layer, whose outputs average 0.03) though no unit is saturated for every example.
- ``not_learning``: the training loss (median over the last tenth of the steps) is not at least
  ``learning_progress`` below the lower of its starting level (the loss on the whole training
  set before the first step where the run evaluated it, else the median of the first five
  steps) and the chance level (the loss of the best constant prediction, where known), whatever
  the gradients say: a tanh RNN stuck at chance is not healthy.
- ``healthy``: none of the above.

All thresholds live in ``Thresholds``, and the command line overrides them by name
(``gradbench diagnose --threshold vanishing_ratio=1e-3``). The diagnosis reads only recorded
statistics: a ``MonitorHistory`` (``health_from_history``) or the store (``Store.health``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from gradbench.axes.registry import closest_match
from gradbench.monitor.history import ActivationSite, MonitorHistory, NonFinite, finite_ratios, window

__all__ = [
    "VERDICTS", "Thresholds", "parse_thresholds", "Verdict", "RunHealth", "health_from_history", "diagnose",
]

VERDICTS = ("healthy", "vanishing", "exploding", "dead_units", "saturated", "not_learning", "diverged")


@dataclass(frozen=True)
class Thresholds:
    """Where each verdict begins: the one place that decides them.

    Attributes:
        vanishing_ratio: ``vanishing`` below this early first/last gradient ratio. 1e-2: the
            first layer then learns a hundred times more slowly than the last (ReLU with Glorot
            and Bengio's standard init on an 8-layer MLP: 6e-3; with Kaiming init: 0.8).
        exploding_ratio: ``exploding`` above this early first/last gradient ratio.
        exploding_growth: ``exploding`` when the global gradient norm grows beyond this many
            times its value at the first recorded step.
        dead_fraction: ``dead_units`` from this fraction of dead units in one activation.
        saturated_fraction: ``saturated`` from this fraction of saturated units in one activation.
        pinned_fraction: ``saturated`` from this fraction of one activation's outputs pinned
            near a bound.
        learning_progress: ``not_learning`` unless the final training loss is at least this
            fraction below the lower of its starting level and chance. 0.05: a classifier that
            only moved from its initial loss to chance (2.30 for 10 classes) is not learning.
    """

    vanishing_ratio: float = 1e-2
    exploding_ratio: float = 1e2
    exploding_growth: float = 1e3
    dead_fraction: float = 0.5
    saturated_fraction: float = 0.5
    pinned_fraction: float = 0.5
    learning_progress: float = 0.05

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"invalid threshold {item.name}={value!r}: must be a positive number")
        for name in ("dead_fraction", "saturated_fraction", "pinned_fraction", "learning_progress"):
            if getattr(self, name) > 1:
                raise ValueError(f"invalid threshold {name}={getattr(self, name)!r}: a fraction in (0, 1]")
        if self.vanishing_ratio >= self.exploding_ratio:
            raise ValueError(f"invalid thresholds: vanishing_ratio={self.vanishing_ratio!r} must be below exploding_ratio={self.exploding_ratio!r}")


def parse_thresholds(items: Iterable[str], base: Thresholds | None = None) -> Thresholds:
    """``base`` (default: ``Thresholds()``) with ``name=value`` overrides.

    Raises:
        ValueError: for a malformed item, an unknown name (listing the valid ones) or a bad value.
    """
    names = [item.name for item in fields(Thresholds)]
    overrides: dict[str, float] = {}
    for item in items:
        name, equals, raw = item.partition("=")
        name = name.strip()
        if not equals:
            raise ValueError(f"invalid --threshold {item!r}: expected name=value, e.g. vanishing_ratio=1e-3")
        if name not in names:
            guess = closest_match(name, names)
            hint = f" (did you mean {guess!r}?)" if guess else ""
            raise ValueError(f"unknown threshold {name!r}{hint}; choose from: {', '.join(names)}")
        try:
            overrides[name] = float(raw)
        except ValueError:
            raise ValueError(f"invalid --threshold {item!r}: {raw.strip()!r} is not a number") from None
    return replace(base or Thresholds(), **overrides)


@dataclass(frozen=True)
class Verdict:
    """One verdict: its name, a sentence, and the numbers the sentence states."""

    name: str
    message: str
    numbers: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunHealth:
    """The recorded statistics a diagnosis reads.

    Attributes:
        layer_names: Layers in model order.
        grad_steps: Recorded steps.
        first_last: Per recorded step, the gradient norms of the first and the last layer.
        total_norms: Per recorded step, the global gradient norm before clipping.
        sites: Activation sites; ``activation_steps``, ``dead``, ``saturated``, ``pinned``:
            their records.
        losses: The training loss at every step (mini-batch losses as the run saw them).
        initial_loss: The loss on the whole training set before the first step (``None``:
            not evaluated; the first steps' losses stand in).
        chance_loss: The loss of the best constant prediction (``None``: unknown).
        nonfinite: Where NaN/Inf began, if anywhere.
    """

    layer_names: list[str]
    grad_steps: list[int] = field(default_factory=list)
    first_last: list[tuple[float, float]] = field(default_factory=list)
    total_norms: list[float] = field(default_factory=list)
    sites: list[ActivationSite] = field(default_factory=list)
    activation_steps: list[int] = field(default_factory=list)
    dead: list[list[float | None]] = field(default_factory=list)
    saturated: list[list[float | None]] = field(default_factory=list)
    pinned: list[list[float | None]] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    initial_loss: float | None = None
    chance_loss: float | None = None
    nonfinite: NonFinite | None = None


def health_from_history(history: MonitorHistory, chance_loss: float | None = None, initial_loss: float | None = None) -> RunHealth:
    """What ``diagnose`` needs, from a monitor's history, and where the caller knows them: the
    loss of the best constant prediction (``ln C`` for ``C`` balanced classes under the
    cross-entropy) and the loss on the whole training set before the first step."""
    return RunHealth(
        layer_names=list(history.layer_names),
        grad_steps=list(history.grad_steps),
        first_last=[(norms[0], norms[-1]) for norms in history.layer_grad_norms],
        total_norms=list(history.total_norm_before),
        sites=list(history.activation_sites),
        activation_steps=list(history.activation_steps),
        dead=[list(row) for row in history.dead_fraction],
        saturated=[list(row) for row in history.saturated_fraction],
        pinned=[list(row) for row in history.pinned_fraction],
        losses=list(history.losses),
        initial_loss=initial_loss,
        chance_loss=chance_loss,
        nonfinite=history.nonfinite,
    )


def _steps(steps: Sequence[int], part: slice) -> str:
    chosen = steps[part]
    return f"step {chosen[0]}" if len(chosen) == 1 else f"steps {chosen[0]}-{chosen[-1]}"


def _diverged(nonfinite: NonFinite) -> Verdict:
    of = f" of {nonfinite.layer}" if nonfinite.layer else ""
    what = {
        "loss": "the loss became NaN or Inf",
        "gradient": f"the gradient{of} became NaN or Inf first (the layer nearest the output to do so)",
        "weight": f"the weights{of} became NaN or Inf in the optimizer's update",
        "loss_scale": "the loss scaler skipped a step at a scale of 1 or less: the gradients overflow float16 at their true size",
    }.get(nonfinite.quantity, f"the {nonfinite.quantity}{of} became NaN or Inf")
    return Verdict("diverged", f"at step {nonfinite.step} {what}", {"step": nonfinite.step, "quantity": nonfinite.quantity, "layer": nonfinite.layer})


def layer_text(index: int, name: str) -> str:
    """A layer as every output names it: its index from the input side (0) and its module name,
    ``layer 0 (layers.0)``; the heatmap and the depth profile number layers the same way."""
    return f"layer {index} ({name})"


def _gradient_flow(health: RunHealth, thresholds: Thresholds) -> tuple[list[Verdict], str | None]:
    """Vanishing and exploding verdicts, and the sentence a healthy run states instead."""
    verdicts: list[Verdict] = []
    layers = len(health.layer_names)
    early = window(len(health.first_last))
    ratios = finite_ratios(health.first_last[early]) if layers > 1 else []
    plain = None
    if ratios:
        ratio = statistics.median(ratios)
        span = _steps(health.grad_steps, early)
        numbers = {"ratio": ratio, "layers": layers, "steps": [health.grad_steps[early][0], health.grad_steps[early][-1]]}
        head = f"{layer_text(0, health.layer_names[0])}, the first of {layers}, receives"
        if ratio < thresholds.vanishing_ratio:
            factor = (1 / ratio) ** (1 / (layers - 1)) if ratio > 0 else math.inf
            numbers["per_layer_factor"] = factor
            if ratio > 0:
                message = f"{head} {ratio:.1e} of the last layer's gradient (median over {span}): about {factor:.3g}x less per layer on the way down"
            else:  # exactly zero: no factor per layer to speak of
                message = f"{head} no gradient at all (median over {span}): exactly zero while the last layer's is not"
            verdicts.append(Verdict("vanishing", message, numbers))
        elif ratio > thresholds.exploding_ratio:
            factor = ratio ** (1 / (layers - 1))
            numbers["per_layer_factor"] = factor
            message = f"{head} {ratio:.1e}x the last layer's gradient (median over {span}): about {factor:.3g}x more per layer on the way down"
            verdicts.append(Verdict("exploding", message, numbers))
        else:
            plain = f"{head} {ratio:.2g} of the last layer's gradient"
    finite = [(step, norm) for step, norm in zip(health.grad_steps, health.total_norms) if math.isfinite(norm)]
    if finite and finite[0][1] > 0:
        (first_step, first), (peak_step, peak) = finite[0], max(finite, key=lambda pair: pair[1])
        growth = peak / first
        if growth > thresholds.exploding_growth:
            message = f"the global gradient norm grew to {peak:.1e} at step {peak_step}, {growth:.1e}x its {first:.1e} at step {first_step}"
            verdicts.append(Verdict("exploding", message, {"growth": growth, "peak": peak, "peak_step": peak_step, "first": first}))
    return verdicts, plain


def _worst_site(health: RunHealth, records: list[list[float | None]]) -> list[tuple[float, int, str]]:
    """Per site with values: (worst of its early and late medians, site index, window text)."""
    found = []
    count = len(records)
    for index in range(len(health.sites)):
        best: tuple[float, int, str] | None = None
        for part in (window(count), window(count, late=True)):
            values = [value for row in records[part] if index < len(row) and (value := row[index]) is not None]
            if values:
                median = float(statistics.median(values))
                if best is None or median > best[0]:
                    best = (median, index, _steps(health.activation_steps, part))
        if best is not None:
            found.append(best)
    return found


def _units(health: RunHealth, thresholds: Thresholds) -> tuple[list[Verdict], list[str]]:
    """Dead-unit and saturation verdicts, and what a healthy run states instead (one
    ``saturated`` verdict whether units saturated, outputs were pinned, or both)."""
    verdicts: list[Verdict] = []
    plain = []
    for name, records, limit, what, meaning, phrase in (
        ("dead_units", health.dead, thresholds.dead_fraction, "units", "dead: zero for the whole batch", "dead units"),
        ("saturated", health.saturated, thresholds.saturated_fraction, "units", "saturated: slope below a tenth of its peak for the whole batch", "saturated units"),
        ("saturated", health.pinned, thresholds.pinned_fraction, "outputs", "pinned near a bound: in the outer tenth of its range, over every example and unit", "outputs pinned near a bound"),
    ):
        sites = sorted(_worst_site(health, records), reverse=True)
        if not sites:
            continue
        fraction, index, span = sites[0]
        site = health.sites[index]
        if fraction >= limit:
            over = sum(1 for value, _, _ in sites if value >= limit)
            more = f"; {over - 1} more activation{'s' if over > 2 else ''} at or above {limit:.0%}" if over > 1 else ""
            message = f"{fraction:.0%} of the {what} of {site.name} ({site.module}) are {meaning} (median over {span}){more}"
            found = next((v for v in verdicts if v.name == name), None)
            if found is None:
                verdicts.append(Verdict(name, message, {"fraction": fraction, "site": site.name, "sites_over": over, "statistic": what}))
            else:  # units saturated and outputs pinned: one verdict, both sentences
                verdicts[verdicts.index(found)] = Verdict(name, f"{found.message}; {message}", {**found.numbers, "pinned_fraction": fraction})
        else:
            plain.append(f"at most {fraction:.0%} {phrase} (in {site.name})")
    return verdicts, plain


_FIRST_STEPS = 5  # the losses that stand in for the start where the run did not evaluate it


def _learning(health: RunHealth, thresholds: Thresholds) -> tuple[Verdict | None, str | None]:
    """``not_learning`` when the loss ends no lower than its start or chance, by the margin; or
    what a learning run states instead."""
    losses = [loss for loss in health.losses if math.isfinite(loss)]
    if len(losses) < 2:
        return None, None
    initial = health.initial_loss
    start = initial if initial is not None and math.isfinite(initial) else float(statistics.median(losses[:_FIRST_STEPS]))
    end = float(statistics.median(losses[window(len(losses), late=True)]))
    baselines = [start] + ([health.chance_loss] if health.chance_loss is not None and math.isfinite(health.chance_loss) else [])
    baseline = min(baselines)
    if end <= (1.0 - thresholds.learning_progress) * baseline:
        return None, f"the training loss fell from {start:.3g} to {end:.3g}"
    against = "its start" if baseline == start else f"chance ({health.chance_loss:.3g}, the best constant prediction)"
    message = (
        f"the training loss ends at {end:.3g} (median over the last tenth of the steps), not {thresholds.learning_progress:.0%} "
        f"below {against}: it started at {start:.3g}"
    )
    return Verdict("not_learning", message, {"start": start, "end": end, "chance": health.chance_loss}), None


def diagnose(health: RunHealth, thresholds: Thresholds | None = None) -> list[Verdict]:
    """The run's verdicts: ``healthy`` alone, or every problem found (``diverged`` first).

    An empty list when nothing was recorded to judge by.
    """
    thresholds = thresholds or Thresholds()
    verdicts = [_diverged(health.nonfinite)] if health.nonfinite is not None else []
    flow, flow_plain = _gradient_flow(health, thresholds)
    units, units_plain = _units(health, thresholds)
    verdicts += flow + units
    learning, learning_plain = _learning(health, thresholds) if health.nonfinite is None else (None, None)  # a diverged run says so already
    verdicts += [learning] if learning is not None else []
    if verdicts:
        return verdicts
    said = ([flow_plain] if flow_plain else []) + units_plain + ([learning_plain] if learning_plain else [])
    if not said:
        return []
    return [Verdict("healthy", "; ".join(said), {})]
