"""Performance profiles (Dolan & More 2002) on hand-made costs, where every ratio and score can
be worked out on paper."""

from __future__ import annotations

import json
import math

import pytest

from gradbench.report.profiles import performance_profiles, profile_csv, profile_text


def fake_run(task: str, optimizer: str, seed: int, steps: int | None, status: str = "done", lr: float = 0.1) -> dict:
    config = {
        "task": task, "task_knobs": {}, "optimizer": optimizer, "hyperparameters": {"lr": lr}, "activation": "relu", "init": "default",
        "clip": "none", "seed": seed, "steps": 100, "batch_size": 8, "device": "cpu", "threads": 1, "eval_every": 5, "record_every": 10,
    }
    return {
        "key": f"{task}-{optimizer}-{seed}-{lr}", "config": json.dumps(config), "status": status, "steps_to_target": steps,
        "time_to_target_s": None if steps is None else steps / 100, "label": task,
    }


# Costs (steps to target), each the same on both seeds:  A: sgd 100, adam 50;  B: sgd 30, adam 60;
# C: sgd never, adam 200. Ratios: sgd 2, 1, inf; adam 1, 2, 1.
COSTS = {"A": {"sgd": 100, "adam": 50}, "B": {"sgd": 30, "adam": 60}, "C": {"sgd": None, "adam": 200}}
RUNS = [fake_run(task, optimizer, seed, cost) for task, costs in COSTS.items() for optimizer, cost in costs.items() for seed in (0, 1)]


def test_ratios_fractions_and_scores_by_hand():
    profiles = performance_profiles(RUNS, "steps_to_target")
    assert profiles.problems == ["A", "B", "C"] and profiles.solvers == ["sgd", "adam"]
    assert profiles.ratios == {"sgd": [2.0, 1.0, math.inf], "adam": [1.0, 2.0, 1.0]}
    assert [profiles.rho("sgd", tau) for tau in (1, 1.5, 2, 4)] == pytest.approx([1 / 3, 1 / 3, 2 / 3, 2 / 3])
    assert [profiles.rho("adam", tau) for tau in (1, 1.5, 2, 4)] == pytest.approx([2 / 3, 2 / 3, 1, 1])
    # Area under rho over [1, 4] / 3: sgd (2/3 + 1 + 0) / 3, adam (1 + 2/3 + 1) / 3.
    assert profiles.score("sgd") == pytest.approx(5 / 9) and profiles.score("adam") == pytest.approx(8 / 9)
    # Time to target is proportional here: the same profile.
    assert performance_profiles(RUNS, "time_to_target").ratios == profiles.ratios


def test_a_problem_is_solved_when_at_least_half_the_seeds_reach_the_target():
    runs = [r for r in RUNS if not (r["key"].startswith("A-adam"))]
    runs += [fake_run("A", "adam", 0, 50), fake_run("A", "adam", 1, None)]  # 1 of 2 reached: half
    profiles = performance_profiles(runs)
    assert profiles.costs["A"]["adam"] == 50 and profiles.ratios["adam"][0] == 1.0 and profiles.ratios["sgd"][0] == 2.0
    runs += [fake_run("A", "adam", 2, None, status="diverged")]  # 1 of 3: fewer than half
    profiles = performance_profiles(runs)
    assert profiles.costs["A"]["adam"] == math.inf and profiles.ratios["sgd"][0] == 1.0
    runs += [fake_run("A", "adam", 3, 60)]  # (50, 60, inf, inf): 2 of 4 reached, the lower median
    assert performance_profiles(runs).costs["A"]["adam"] == 60


def test_diverged_runs_and_unrun_pairs_do_not_solve():
    runs = [r for r in RUNS if not r["key"].startswith("B-sgd")] + [fake_run("B", "sgd", s, 30, status="diverged") for s in (0, 1)]
    assert performance_profiles(runs).ratios["sgd"][1] == math.inf
    runs = [r for r in RUNS if not r["key"].startswith("C-sgd")]  # sgd never ran on C
    assert performance_profiles(runs).ratios["sgd"][2] == math.inf


def test_several_lrs_make_separate_solvers_unless_tuned():
    runs = RUNS + [fake_run(task, "sgd", seed, 10, lr=0.5) for task in COSTS for seed in (0, 1)]
    profiles = performance_profiles(runs)
    assert profiles.solvers == ["sgd, lr=0.1", "adam, lr=0.1", "sgd, lr=0.5"]
    assert profiles.rho("sgd, lr=0.5", 1) == 1.0


def test_text_and_csv_print_the_same_numbers():
    profiles = performance_profiles(RUNS)
    text, table = profile_text(profiles), profile_csv(profiles)
    assert "| sgd | 0.33 | 0.33 | 0.33 | 0.67 | 0.67 | 0.556 |" in text
    assert "| adam | 0.67 | 0.67 | 0.67 | 1.00 | 1.00 | 0.889 |" in text
    assert table.splitlines()[0] == "measure,solver,rho_tau_1,rho_tau_1.25,rho_tau_1.5,rho_tau_2,rho_tau_4,score,problems"
    sgd = table.splitlines()[1].split(",")
    assert sgd[:2] == ["steps_to_target", '"sgd"'] and float(sgd[-2]) == pytest.approx(5 / 9) and sgd[-1] == "3"


def test_profiles_from_the_cli(report_db):
    from report_store import run_cli

    code, out, _ = run_cli("report", "--db", str(report_db), "--profiles")
    assert code == 0 and out.count("Performance profile on") == 2 and "| solver | tau=1 |" in out


def test_budget_and_measuring_cadence_are_not_part_of_a_problem():
    full_batch = []
    for task, cost in (("A", 40), ("B", 20), ("C", 100)):
        for seed in (0, 1):
            run = fake_run(task, "gd", seed, cost)
            config = json.loads(run["config"])
            config.update(steps=30, batch_size=None, eval_every=2)
            run["config"] = json.dumps(config)
            full_batch.append(run)
    profiles = performance_profiles(RUNS + full_batch)
    assert profiles.problems == ["A", "B", "C"] and profiles.ratios["gd"] == [1.0, 1.0, 1.0]
    assert profiles.ratios["adam"] == [50 / 40, 3.0, 2.0]


def _with_batch(run: dict, batch_size: int, cost: int) -> dict:
    config = json.loads(run["config"])
    config["batch_size"] = batch_size
    return {**run, "key": f"{run['key']}-b{batch_size}", "config": json.dumps(config), "steps_to_target": cost, "time_to_target_s": None if cost is None else cost / 100}


def test_batch_sizes_and_step_budgets_of_one_optimizer_are_separate_solvers():
    # sgd at batch 8 reaches A in 10 steps, at batch 128 never: merged as seeds (10, 10, inf,
    # inf), the median mixed the two configurations.
    runs = [fake_run("A", "adam", seed, 50) for seed in (0, 1)]
    for seed in (0, 1):
        runs += [_with_batch(fake_run("A", "sgd", seed, None), 8, 10), _with_batch(fake_run("A", "sgd", seed, None), 128, None)]
    profiles = performance_profiles(runs)
    assert profiles.solvers == ["adam, batch_size=8", "sgd, batch_size=8", "sgd, batch_size=128"]
    assert profiles.costs["A"] == {"adam, batch_size=8": 50, "sgd, batch_size=8": 10, "sgd, batch_size=128": math.inf}
    steps = []
    for run in runs[:4]:
        config = json.loads(run["config"])
        config["steps"] = 1000
        steps.append({**run, "key": run["key"] + "-long", "config": json.dumps(config)})
    assert performance_profiles(runs[:4] + steps).solvers == [
        "adam, batch_size=8, steps=100", "sgd, batch_size=8, steps=100", "sgd, batch_size=128, steps=100",
        "adam, batch_size=8, steps=1000", "sgd, batch_size=8, steps=1000", "sgd, batch_size=128, steps=1000",
    ]
