"""The reproduce framework: bands and verdicts, the evidence a claim reads, the comparison
table and exit code, and `gradbench reproduce` end to end on a crafted reproduction (a pass, a
fail, a missing run), with bad input refused before anything is written."""

from __future__ import annotations

import math
import shutil
import sqlite3
import statistics
from pathlib import Path

import pytest

from gradbench.cli import main
from gradbench.reproduce import catalog
from gradbench.reproduce.claims import (
    Band,
    Claim,
    Measured,
    Published,
    Reproduction,
    judge,
)
from gradbench.reproduce.comparison import compare, exit_code, measured_text, render
from gradbench.reproduce.evidence import Evidence, MissingRuns, metric
from gradbench.store.database import Store

# A toy reproduction on linear regression: two optimizers, two seeds, a few steps (seconds).
TOY_SUITE = """
name = "toy"
tasks = ["linreg[dim=4,num_train=64]"]
steps = 30
seeds = [0, 1]
eval_every = 10

[[grid]]
optimizers = ["sgd", "adam"]
lrs = [0.05]
"""


def _loss(optimizer: str):
    return lambda evidence: evidence.per_seed(metric("final_train_loss"), optimizer=optimizer)


def _toy(sgd_band: Band, adam_band: Band | None = None, extra: tuple[Claim, ...] = ()) -> Reproduction:
    claims = [Claim("sgd_loss", "SGD's final training loss", Published("0.01", "Table 0", 0.01), sgd_band, _loss("sgd"))]
    if adam_band is not None:
        claims.append(Claim("adam_loss", "Adam's final training loss", Published("0.02", "Table 0", 0.02), adam_band, _loss("adam")))
    return Reproduction(name="toy", title="Toy 2026: linear regression", citation="A. Toy, 2026, Toy results", protocol="Linear regression.", claims=(*claims, *extra), minutes=0.1)


@pytest.fixture
def toy(monkeypatch):
    """Installs a crafted reproduction 'toy' in the catalogue; returns a setter for it."""
    current: dict[str, Reproduction] = {"toy": _toy(Band(0, 100, "anything finite"), Band(0, 100, "anything finite"))}
    real_get, real_names, real_text = catalog.get, catalog.names, catalog.suite_text
    monkeypatch.setattr(catalog, "names", lambda: [*real_names(), "toy"])
    monkeypatch.setattr(catalog, "get", lambda name: current[name] if name == "toy" else real_get(name))
    monkeypatch.setattr(catalog, "suite_text", lambda name, size="default": TOY_SUITE if name == "toy" else real_text(name, size))
    return current


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def sql_losses(db: Path, optimizer: str) -> list[float]:
    connection = sqlite3.connect(db)
    rows = connection.execute("SELECT seed, final_train_loss FROM runs WHERE optimizer = ? AND status = 'done' ORDER BY seed", (optimizer,)).fetchall()
    connection.close()
    return [value for _, value in rows]


# Bands, measurements, verdicts.


def test_band_contains_its_ends_and_refuses_nan():
    band = Band(1.0, 2.0, "why")
    assert band.contains(1.0) and band.contains(2.0) and band.contains(1.5)
    assert not band.contains(0.999) and not band.contains(2.001) and not band.contains(math.nan)
    assert Band(None, 3.0, "w").contains(-1e9) and not Band(None, 3.0, "w").contains(3.1)
    assert Band(0.5, None, "w").contains(1e9) and not Band(0.5, None, "w").contains(0.4)
    assert (band.text(), Band(None, 3.0, "w").text(), Band(0.5, None, "w").text()) == ("[1, 2]", "<= 3", ">= 0.5")


def test_a_band_must_have_an_end_and_not_be_empty():
    with pytest.raises(ValueError, match="at least one end"):
        Band(None, None, "why")
    with pytest.raises(ValueError, match="empty"):
        Band(2.0, 1.0, "why")


def test_measured_is_mean_and_sample_std_and_a_nan_counts_against_the_claim():
    measured = Measured((1.0, 2.0, 4.0))
    assert measured.mean == pytest.approx(7 / 3) and measured.std == pytest.approx(statistics.stdev([1, 2, 4])) and measured.n == 3
    with_nan = Measured((1.0, math.nan))
    assert math.isnan(with_nan.mean) and with_nan.std == 0.0
    assert "1 without a finite value" in measured_text(with_nan)


class _FakeEvidence:
    pass


def _claim(values, band=Band(0, 1, "w")) -> Claim:
    def measure(evidence):
        if values is None:
            raise MissingRuns("no stored run of optimizer=sgd")
        return values

    return Claim("c", "a claim", Published("0.5", "Fig. 1", 0.5), band, measure)


def test_judge_says_within_outside_and_missing():
    evidence = _FakeEvidence()
    assert judge(_claim([0.4, 0.6]), evidence).verdict == "within"  # type: ignore[arg-type]
    outside = judge(_claim([0.9, 1.3]), evidence)  # type: ignore[arg-type]
    assert outside.verdict == "outside" and outside.measured is not None and outside.measured.mean == pytest.approx(1.1)
    missing = judge(_claim(None), evidence)  # type: ignore[arg-type]
    assert missing.verdict == "missing" and missing.measured is None and "optimizer=sgd" in missing.reason
    assert judge(_claim([math.nan, 0.5]), evidence).verdict == "outside"  # type: ignore[arg-type]
    assert judge(_claim([]), evidence).verdict == "missing"  # type: ignore[arg-type]


def test_an_infinite_seed_is_measured_and_said_not_a_crash():
    assert Measured((math.inf, 1.0, 2.0)).mean == math.inf and Measured((math.inf, 1.0, 2.0)).std == pytest.approx(statistics.stdev([1, 2]))
    assert math.isnan(Measured((-math.inf, math.inf)).mean) and Measured((-math.inf, 1.0)).mean == -math.inf
    assert measured_text(Measured((math.inf, 1.0))) == "inf +- 0 (n=2, 1 without a finite value)"
    assert judge(_claim([math.inf, 0.5]), _FakeEvidence()).verdict == "outside"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("values", "band", "shown"),
    [
        ([1.04999], Band(1.05, None, "w"), "1.04999"),  # 1.05 would read as inside a band it is outside
        ([98.0001], Band(98, 102, "w"), "98.0001"),
        ([87.5099], Band(87.51, 87.71, "w"), "87.5099"),
        ([0.799999], Band(0.8, 1.5, "w"), "0.799999"),
        ([64.91234], Band(62, 74, "w"), "64.91"),  # far from the ends: four digits
        ([1.05], Band(1.05, None, "w"), "1.05"),  # exactly on the end: inside, and printed so
    ],
)
def test_the_printed_mean_lies_on_the_same_side_of_the_band_as_the_mean(values, band, shown):
    outcome = judge(_claim(values, band), _FakeEvidence())  # type: ignore[arg-type]
    assert measured_text(outcome.measured, "", band).split(" ")[0] == shown
    assert outcome.verdict == ("within" if band.contains(values[0]) else "outside")


def test_a_measure_that_raises_is_an_error_verdict_and_the_others_are_still_judged():
    def broken(evidence):
        return [1.0 / 0.0]

    claims = (_claim([0.5]), Claim("broken", "a buggy measure", Published("1", "Sec. 2"), Band(0, 1, "w"), broken))
    reproduction = Reproduction("x", "X", "X", "p", (claims[0], claims[1]))
    outcomes = compare(reproduction, _FakeEvidence())  # type: ignore[arg-type]
    assert [o.verdict for o in outcomes] == ["within", "error"] and exit_code(outcomes) == 1
    assert "ZeroDivisionError: float division by zero" in outcomes[1].reason
    assert "- broken: ZeroDivisionError" in render(reproduction, outcomes)


def test_exit_code_is_zero_only_when_every_claim_is_within():
    evidence = _FakeEvidence()
    within, outside, missing = (judge(_claim(v), evidence) for v in ([0.5], [2.0], None))  # type: ignore[arg-type]
    assert exit_code([within, within]) == 0
    assert exit_code([within, outside]) == 1 and exit_code([within, missing]) == 1 and exit_code([]) == 1


def test_a_reproduction_refuses_repeated_claim_ids():
    claim = _claim([0.5])
    with pytest.raises(ValueError, match="repeats a claim id"):
        Reproduction("x", "X", "X", "p", (claim, claim))


# The evidence a claim reads, from a real store.


@pytest.fixture(scope="module")
def toy_store(tmp_path_factory) -> tuple[Path, list]:
    from gradbench.grid.expansion import expand
    from gradbench.grid.suite import parse_suite
    from gradbench.store.database import Store
    from gradbench.sweep.driver import run_sweep

    db = tmp_path_factory.mktemp("toy") / "toy.db"
    cells = expand(parse_suite(TOY_SUITE, "toy"))
    with Store.open(db, create=True) as store:
        run_sweep(cells, store, progress=False)
    return db, cells


def test_per_seed_reads_each_seed_of_the_selection(toy_store):
    db, cells = toy_store
    with Store.open(db, readonly=True) as store:
        evidence = Evidence.of_cells(store, cells)
        assert evidence.per_seed(metric("final_train_loss"), optimizer="sgd") == pytest.approx(sql_losses(db, "sgd"))
        assert evidence.per_seed(metric("final_train_loss", 2.0), optimizer="adam", lr=0.05) == pytest.approx([2 * v for v in sql_losses(db, "adam")])
        with pytest.raises(MissingRuns, match="the suite has no run of optimizer=rmsprop"):
            evidence.per_seed(metric("final_train_loss"), optimizer="rmsprop")
        with pytest.raises(ValueError, match="ambiguous"):  # sgd and adam of each seed: the claim's bug
            evidence.per_seed(metric("final_train_loss"))
        differences = evidence.paired(lambda a, b: a["final_train_loss"] - b["final_train_loss"], {"optimizer": "sgd"}, {"optimizer": "adam"})
        assert differences == pytest.approx([s - a for s, a in zip(sql_losses(db, "sgd"), sql_losses(db, "adam"))])
        assert [row["step"] for row in evidence.evaluations(evidence.runs(optimizer="sgd", seed=0)[0])] == [0, 10, 20, 30]


def test_evidence_sees_only_its_own_cells_and_asks_for_every_cell(toy_store, tmp_path):
    db, cells = toy_store
    with Store.open(db, readonly=True) as store:
        only_seed_0 = Evidence(store, [c for c in cells if c.seed == 0])
        assert len(only_seed_0.all_runs) == 2 and only_seed_0.seeds() == [0]
        assert only_seed_0.per_seed(metric("final_train_loss"), optimizer="sgd") == pytest.approx(sql_losses(db, "sgd")[:1])
    # The same cells, one run deleted and one failed: each named, never a mean over fewer seeds.
    edited = tmp_path / "edited.db"
    shutil.copy(db, edited)
    connection = sqlite3.connect(edited)
    connection.execute("DELETE FROM runs WHERE optimizer = 'sgd' AND seed = 1")
    connection.execute("UPDATE runs SET status = 'failed' WHERE optimizer = 'adam' AND seed = 0")
    connection.commit()
    connection.close()
    with Store.open(edited, readonly=True) as store:
        evidence = Evidence(store, cells)
        with pytest.raises(MissingRuns, match=r"optimizer=sgd: 1 of 2 runs not stored \(seed=1\)"):
            evidence.per_seed(metric("final_train_loss"), optimizer="sgd")
        with pytest.raises(MissingRuns, match=r"optimizer=adam: 1 failed \(seed=0; --retry-failed"):
            evidence.per_seed(metric("final_train_loss"), optimizer="adam")
        with pytest.raises(MissingRuns):
            evidence.paired(lambda a, b: 0.0, {"optimizer": "sgd"}, {"optimizer": "adam"})
        with pytest.raises(MissingRuns, match="the suite has no run of optimizer=rmsprop"):
            evidence.require(optimizer="rmsprop")
        with pytest.raises(ValueError, match="unknown --where axis 'optimiser'"):  # a claim's typo is a bug, not a missing run
            evidence.runs(optimiser="sgd")


def test_a_diverged_run_counts_against_a_claim_unless_the_claim_is_about_divergence(toy_store, tmp_path):
    db, cells = toy_store
    edited = tmp_path / "diverged.db"
    shutil.copy(db, edited)
    connection = sqlite3.connect(edited)
    connection.execute("UPDATE runs SET status = 'diverged' WHERE optimizer = 'sgd' AND seed = 1")
    connection.commit()
    connection.close()
    sgd = sql_losses(db, "sgd")
    with Store.open(edited, readonly=True) as store:
        evidence = Evidence(store, cells)
        values = evidence.per_seed(metric("final_train_loss"), optimizer="sgd")
        assert values[0] == pytest.approx(sgd[0]) and math.isnan(values[1])
        assert evidence.per_seed(metric("final_train_loss"), optimizer="sgd", allow_diverged=True) == pytest.approx(sgd)
        paired = evidence.paired(lambda a, b: 1.0, {"optimizer": "sgd"}, {"optimizer": "adam"})
        assert paired[0] == 1.0 and math.isnan(paired[1])
        outcome = judge(Claim("c", "sgd trains", Published("yes", "Sec. 1"), Band(0, 100, "w"), _loss("sgd")), evidence)
        assert outcome.verdict == "outside" and "1 without a finite value" in measured_text(outcome.measured)


# End to end through the command line.


def test_reproduce_runs_the_suite_prints_the_table_writes_files_and_passes(toy, tmp_path, capsys):
    db, out = tmp_path / "r.db", tmp_path / "out"
    code, stdout, stderr = cli(capsys, "reproduce", "toy", "--db", str(db), "--output", str(out), "--no-progress")
    assert code == 0, stderr
    assert "| SGD's final training loss | 0.01 | Table 0 |" in stdout and "| within |" in stdout
    assert "2 of 2 claims within their bands." in stdout
    losses = sql_losses(db, "sgd")
    assert f"{statistics.fmean(losses):.4g} +- {statistics.stdev(losses):.2g} (n=2)" in stdout
    assert (out / "toy.md").read_text() in stdout
    assert "4 cells, ran 4" in stderr
    # Resumable: the second call runs nothing and says the same.
    code, again, stderr = cli(capsys, "reproduce", "toy", "--db", str(db), "--output", str(out), "--no-progress")
    assert code == 0 and "ran 0, 4 already stored" in stderr and again == stdout


def test_a_number_outside_its_band_fails_with_exit_1(toy, tmp_path, capsys):
    db = tmp_path / "r.db"
    assert cli(capsys, "reproduce", "toy", "--db", str(db), "--output", str(tmp_path), "--no-progress")[0] == 0
    losses = sql_losses(db, "adam")
    toy["toy"] = _toy(Band(0, 100, "anything"), Band(None, min(losses) / 10, "tighter than any seed"))
    code, stdout, _ = cli(capsys, "reproduce", "toy", "--db", str(db), "--output", str(tmp_path), "--no-run")
    assert code == 1
    assert "| Adam's final training loss |" in stdout and stdout.count("| outside |") == 1 and stdout.count("| within |") == 1
    assert "1 of 2 claims within their bands." in stdout


def test_a_missing_run_is_reported_as_missing_with_exit_1(toy, tmp_path, capsys):
    db = tmp_path / "r.db"
    assert cli(capsys, "reproduce", "toy", "--db", str(db), "--output", str(tmp_path), "--no-progress")[0] == 0
    connection = sqlite3.connect(db)
    connection.execute("DELETE FROM runs WHERE optimizer = 'adam' AND seed = 1")
    connection.commit()
    connection.close()
    code, stdout, _ = cli(capsys, "reproduce", "toy", "--db", str(db), "--output", str(tmp_path), "--no-run")
    assert code == 1
    assert "| missing |" in stdout and "adam_loss: optimizer=adam: 1 of 2 runs not stored (seed=1)" in stdout
    # Running again fills the hole, and the claim passes.
    code, stdout, _ = cli(capsys, "reproduce", "toy", "--db", str(db), "--output", str(tmp_path), "--no-progress")
    assert code == 0 and "| missing |" not in stdout


def test_smoke_size_runs_the_default_suite_shrunk(toy, tmp_path, capsys):
    code, stdout, stderr = cli(capsys, "reproduce", "toy", "--smoke", "--db", str(tmp_path / "s.db"), "--output", str(tmp_path), "--no-progress")
    assert code in (0, 1) and "2 cells, ran 2" in stderr  # steps 20, seed 0 only
    assert "smoke: a few steps and one seed" in stdout and (tmp_path / "toy.smoke.md").is_file()


def test_list_names_every_reproduction(toy, capsys):
    code, stdout, _ = cli(capsys, "reproduce", "--list")
    listed = [line.split()[0] for line in stdout.splitlines()]
    assert code == 0 and listed == [*catalog.ORDER, "toy"] and "Toy 2026: linear regression" in stdout


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["reproduce", "toi"], "unknown reproduction 'toi' (did you mean 'toy'?); choose from:"),
        (["reproduce"], "name a reproduction; choose from:"),
        (["reproduce", "--list", "toy"], "--list takes no reproduction name"),
        (["reproduce", "toy", "--full"], "reproduction 'toy' has no --full size"),
        (["reproduce", "toy", "--executor", "nope"], "unknown executor 'nope'"),
        (["reproduce", "toy", "--device", "gpu"], "gpu"),
        (["reproduce", "toy", "--no-run", "--db", "{tmp}/absent.db"], "no database"),
        (["reproduce", "toy", "--output", "{tmp}/file.txt"], "is not a directory"),
        (["reproduce", "toy", "--output", "{tmp}/file.txt/sub"], "file.txt' is not a directory"),
        (["reproduce", "--list", "--full"], "--list takes no --full"),
        (["reproduce", "toy", "--smoke", "--full"], "not allowed with argument"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(toy, tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)  # the default --output, reproductions/, would be made here
    (tmp_path / "file.txt").write_text("keep")
    before = sorted(p.name for p in tmp_path.iterdir())
    argv = [arg.format(tmp=tmp_path) for arg in argv]
    if "--db" not in argv:
        argv += ["--db", str(tmp_path / "r.db")]
    code, stdout, stderr = cli(capsys, *argv)
    assert code == 2 and message in stderr and stderr.count("\n") == 1 and "Traceback" not in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before and (tmp_path / "file.txt").read_text() == "keep"


def test_the_rendered_table_names_missing_runs_and_band_reasons(toy_store):
    db, cells = toy_store
    reproduction = _toy(Band(0, 100, "any finite loss"), extra=(Claim("rms", "RMSprop's loss", Published("n/a", "Sec. 9"), Band(0, 1, "w"), _loss("rmsprop")),))
    with Store.open(db, readonly=True) as store:
        outcomes = compare(reproduction, Evidence.of_cells(store, cells))
    text = render(reproduction, outcomes)
    assert [o.verdict for o in outcomes] == ["within", "missing"]
    assert "- sgd_loss: any finite loss" in text and "- rms: the suite has no run of optimizer=rmsprop at this size" in text and "1 of 2 claims" in text
