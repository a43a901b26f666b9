"""Verdicts: their thresholds, their logic on hand-made records, and real runs that must get them."""

from __future__ import annotations

import math
from dataclasses import fields

import pytest

from gradbench.grid import expand, parse_suite
from gradbench.monitor import VERDICTS, ActivationSite, NonFinite, RunHealth, Thresholds, diagnose, health_from_history, parse_thresholds
from gradbench.run import run_cell

DEEP = "mnist1d_mlp[depth=8,width=32,num_samples=1000]"


def test_thresholds_parse_and_keep_the_defaults_they_do_not_name():
    thresholds = parse_thresholds(["vanishing_ratio=1e-3", " dead_fraction = 0.25"])
    assert thresholds == Thresholds(vanishing_ratio=1e-3, dead_fraction=0.25)
    assert parse_thresholds([]) == Thresholds()
    assert {item.name for item in fields(Thresholds)} == {
        "vanishing_ratio", "exploding_ratio", "exploding_growth", "dead_fraction", "saturated_fraction", "pinned_fraction", "learning_progress",
    }


BAD_THRESHOLDS = [
    (["vanishing=1e-3"], r"unknown threshold 'vanishing' \(did you mean 'vanishing_ratio'\?\); choose from: vanishing_ratio, exploding_ratio"),
    (["vanishing_ratio"], r"invalid --threshold 'vanishing_ratio': expected name=value"),
    (["vanishing_ratio=small"], r"invalid --threshold 'vanishing_ratio=small': 'small' is not a number"),
    (["exploding_growth=-5"], r"invalid threshold exploding_growth=-5.0: must be a positive number"),
    (["dead_fraction=nan"], r"invalid threshold dead_fraction=nan"),
    (["saturated_fraction=1.5"], r"invalid threshold saturated_fraction=1.5: a fraction in \(0, 1\]"),
    (["vanishing_ratio=1000"], r"vanishing_ratio=1000.0 must be below exploding_ratio=100.0"),
]


@pytest.mark.parametrize("items, pattern", BAD_THRESHOLDS, ids=[" ".join(items) for items, _ in BAD_THRESHOLDS])
def test_bad_thresholds_are_refused_with_the_fix(items, pattern):
    with pytest.raises(ValueError, match=pattern):
        parse_thresholds(items)


def _health(ratios=(0.5,), layers=5, totals=None, sites=(), dead=(), saturated=(), nonfinite=None) -> RunHealth:
    """Records with a first/last gradient ratio per step (last layer's norm 1)."""
    steps = list(range(1, 10 * len(ratios), 10))
    return RunHealth(
        layer_names=[f"layer{i}" for i in range(layers)],
        grad_steps=steps,
        first_last=[(ratio, 1.0) for ratio in ratios],
        total_norms=list(totals) if totals is not None else [1.0] * len(ratios),
        sites=list(sites),
        activation_steps=list(range(1, 10 * max(len(dead), len(saturated)), 10)),
        dead=[list(row) for row in dead],
        saturated=[list(row) for row in saturated],
        nonfinite=nonfinite,
    )


RELU = ActivationSite("act1", "ReLU", "rectifier", 64)
SIGMOID = ActivationSite("act2", "Sigmoid", "saturating", 64)


def test_vanishing_states_the_ratio_the_window_and_the_shrink_per_layer():
    (verdict,) = diagnose(_health(ratios=[1e-4] * 20))
    assert verdict.name == "vanishing"
    assert verdict.message == "layer 0 (layer0), the first of 5, receives 1.0e-04 of the last layer's gradient (median over steps 1-11): about 10x less per layer on the way down"
    assert verdict.numbers["ratio"] == pytest.approx(1e-4) and verdict.numbers["per_layer_factor"] == pytest.approx(10)


def test_an_exactly_zero_first_layer_gradient_says_so_instead_of_infx():
    (verdict,) = diagnose(_health(ratios=[0.0] * 20))
    assert verdict.name == "vanishing" and "inf" not in verdict.message
    assert verdict.message.endswith("no gradient at all (median over steps 1-11): exactly zero while the last layer's is not")


def test_the_ratio_is_the_median_of_the_early_tenth():
    # 30 records: the first 3 decide (median 1e-3); the later ones (healthy) do not.
    assert diagnose(_health(ratios=[1e-4, 1e-3, 1e-2] + [1.0] * 27))[0].name == "vanishing"
    assert diagnose(_health(ratios=[1e-4, 1e-3, 1e-2] + [1.0] * 27), Thresholds(vanishing_ratio=1e-4))[0].name == "healthy"


def test_exploding_by_ratio_and_by_growth():
    (verdict,) = diagnose(_health(ratios=[1e4] * 5))
    assert verdict.name == "exploding" and "1.0e+04x the last layer's gradient" in verdict.message
    (verdict,) = diagnose(_health(totals=[2.0, 3.0, 5e4, math.inf, 10.0], ratios=[0.5] * 5))
    assert verdict.name == "exploding"
    assert verdict.message == "the global gradient norm grew to 5.0e+04 at step 21, 2.5e+04x its 2.0e+00 at step 1"
    assert diagnose(_health(totals=[2.0, 3.0, 5e4]), Thresholds(exploding_growth=1e5))[0].name == "healthy"


def test_dead_units_and_saturation_name_the_worst_activation():
    dead = [[0.9, None]] * 3 + [[0.1, None]] * 17 + [[0.7, None]] * 3  # early median 0.9
    saturated = [[None, 0.6]] * 23
    verdicts = diagnose(_health(sites=[RELU, SIGMOID], dead=dead, saturated=saturated))
    assert [v.name for v in verdicts] == ["dead_units", "saturated"]
    assert verdicts[0].message == "90% of the units of act1 (ReLU) are dead: zero for the whole batch (median over steps 1-21)"
    assert verdicts[1].numbers == {"fraction": 0.6, "site": "act2", "sites_over": 1, "statistic": "units"}
    verdicts = diagnose(_health(sites=[RELU, SIGMOID], dead=dead, saturated=saturated), Thresholds(dead_fraction=0.95, saturated_fraction=0.61))
    assert [v.name for v in verdicts] == ["healthy"]
    assert verdicts[0].message == "layer 0 (layer0), the first of 5, receives 0.5 of the last layer's gradient; at most 90% dead units (in act1); at most 60% saturated units (in act2)"


@pytest.mark.parametrize(
    "nonfinite, message",
    [
        (NonFinite(7, "loss"), "at step 7 the loss became NaN or Inf"),
        (NonFinite(3, "gradient", "layers.4"), "at step 3 the gradient of layers.4 became NaN or Inf first (the layer nearest the output to do so)"),
        (NonFinite(9, "weight", "layers.0"), "at step 9 the weights of layers.0 became NaN or Inf in the optimizer's update"),
    ],
)
def test_diverged_comes_first_with_its_step_quantity_and_layer(nonfinite, message):
    verdicts = diagnose(_health(ratios=[1e-5], nonfinite=nonfinite))
    assert [v.name for v in verdicts] == ["diverged", "vanishing"]
    assert verdicts[0].message == message and verdicts[0].numbers["step"] == nonfinite.step


def test_nothing_recorded_gives_no_verdict():
    assert diagnose(RunHealth(layer_names=["only"])) == []
    assert set(VERDICTS) == {"healthy", "vanishing", "exploding", "dead_units", "saturated", "not_learning", "diverged"}


def _run(activation: str, init: str, lr: float = 0.1, steps: int = 60):
    overrides = {"tasks": [DEEP], "activations": [activation], "inits": [init], "lrs": [lr], "steps": [steps], "record_every": 2, "detail_every": 10}
    (cell,) = expand(parse_suite("").with_overrides(overrides))
    return run_cell(cell)


def test_a_deep_sigmoid_mlp_with_standard_init_is_vanishing_and_does_not_learn():
    result = _run("sigmoid", "standard")
    verdicts = diagnose(health_from_history(result.history, chance_loss=result.chance_loss))
    assert [v.name for v in verdicts] == ["vanishing", "not_learning"]
    assert verdicts[0].numbers["ratio"] < 1e-4  # a quarter of the gradient or less per sigmoid layer
    assert verdicts[1].numbers["chance"] == pytest.approx(math.log(10), rel=1e-3)  # ten balanced classes


def test_a_deep_relu_mlp_with_kaiming_init_is_healthy():
    result = _run("relu", "kaiming_normal")
    verdicts = diagnose(health_from_history(result.history))
    assert [v.name for v in verdicts] == ["healthy"]
    assert "dead units" in verdicts[0].message


def test_a_run_with_lr_1e3_is_diverged_at_its_first_non_finite_step():
    result = _run("relu", "kaiming_normal", lr=1e3, steps=100)
    assert result.status == "diverged" and result.nonfinite is not None
    verdicts = diagnose(health_from_history(result.history))
    assert verdicts[0].name == "diverged"
    assert verdicts[0].numbers["step"] == result.nonfinite.step == result.history.loss_steps[-1]
    assert verdicts[0].message.startswith(f"at step {result.nonfinite.step} the ")


def _learning_health(losses, chance=None) -> RunHealth:
    return RunHealth(layer_names=["layer0", "layer1"], grad_steps=[1], first_last=[(0.5, 1.0)], total_norms=[1.0], losses=list(losses), chance_loss=chance)


@pytest.mark.parametrize(
    "losses, chance, verdict",
    [
        ([2.5] * 10 + [2.31] * 10, math.log(10), "not_learning"),  # from its start down to chance only
        ([2.5] * 10 + [2.1] * 10, math.log(10), "healthy"),  # 9% below chance
        ([2.2] * 10 + [2.16] * 10, math.log(10), "not_learning"),  # below chance, but not 5% below its start
        ([10.0] * 10 + [9.6] * 10, None, "not_learning"),  # no chance level: its start only
        ([10.0] * 10 + [9.0] * 10, None, "healthy"),
        ([1.0, math.nan] * 10, None, "not_learning"),  # the non-finite losses are left out
    ],
)
def test_not_learning_compares_the_last_tenth_with_the_first_and_chance(losses, chance, verdict):
    verdicts = diagnose(_learning_health(losses, chance))
    assert [v.name for v in verdicts] == [verdict]
    if verdict == "not_learning":
        assert verdicts[0].numbers["end"] == pytest.approx(losses[-1] if math.isfinite(losses[-1]) else 1.0)
        assert "not 5% below" in verdicts[0].message



def test_the_learning_margin_is_a_threshold():
    stalled = _learning_health([2.2] * 10 + [2.16] * 10, math.log(10))  # 1.8% below its start
    assert [v.name for v in diagnose(stalled)] == ["not_learning"]
    assert [v.name for v in diagnose(stalled, Thresholds(learning_progress=0.01))] == ["healthy"]


def test_pinned_outputs_make_a_saturated_verdict_though_no_unit_saturates_for_every_example():
    health = _health(sites=[SIGMOID], saturated=[[0.0]] * 10)
    health.pinned = [[0.97]] * 10
    verdicts = diagnose(health)
    assert [v.name for v in verdicts] == ["saturated"]
    assert verdicts[0].message == "97% of the outputs of act2 (Sigmoid) are pinned near a bound: in the outer tenth of its range, over every example and unit (median over step 1)"
    assert verdicts[0].numbers["statistic"] == "outputs"
    health.saturated = [[0.8]] * 10  # both: one verdict, both sentences
    (both,) = diagnose(health)
    assert both.message.startswith("80% of the units of act2 (Sigmoid) are saturated") and "; 97% of the outputs" in both.message
    assert [v.name for v in diagnose(health, Thresholds(saturated_fraction=0.9, pinned_fraction=0.98))] == ["healthy"]


def test_a_tanh_rnn_that_learns_nothing_is_not_called_healthy(tmp_path):
    """The issue's case: the loss sits at chance, the gradients look fine. Through the store,
    as 'gradbench diagnose' reads it."""
    from gradbench.store import Store

    overrides = {"tasks": ["mnist1d_rnn[width=16,num_samples=500]"], "lrs": [1e-6], "steps": [60], "record_every": 5, "detail_every": 20}
    (cell,) = expand(parse_suite("").with_overrides(overrides))
    result = run_cell(cell)
    with Store.open(tmp_path / "r.db", create=True) as store:
        store.save(result)
        (run,) = store.runs()
        health = store.health(run)
    assert health.chance_loss == pytest.approx(result.chance_loss) and len(health.losses) == 60
    names = [v.name for v in diagnose(health)]
    assert "not_learning" in names and "healthy" not in names


def test_a_run_that_learns_within_its_first_tenth_is_learning():
    """The start is the loss before the first step (or the first five steps' losses), not the
    first tenth's median: linreg reaches its target by step 200 of 2000."""
    fast = [20.0, 10.0, 5.0, 2.0, 1.0] + [0.0119] * 95
    assert [v.name for v in diagnose(_learning_health(fast))] == ["healthy"]
    assert [v.name for v in diagnose(_learning_health([0.0119] * 100))] == ["not_learning"]
    health = _learning_health([0.0119] * 100)
    health.initial_loss = 22.0  # the loss on the whole training set before the first step
    (verdict,) = diagnose(health)
    assert verdict.name == "healthy" and verdict.message.endswith("the training loss fell from 22 to 0.0119")


def test_a_single_layer_model_that_learned_is_healthy_not_silent(tmp_path):
    """Logistic regression has no gradient ratio and no activations: the loss is what says so."""
    from gradbench.store import Store

    (cell,) = expand(parse_suite("").with_overrides({"tasks": ["mnist1d_mlp[depth=0,num_samples=1000]"], "optimizers": ["adam[lr=0.01]"], "steps": [200]}))
    result = run_cell(cell)
    with Store.open(tmp_path / "r.db", create=True) as store:
        store.save(result)
        (run,) = store.runs()
        (verdict,) = diagnose(store.health(run))
    assert verdict.name == "healthy" and "the training loss fell from" in verdict.message
