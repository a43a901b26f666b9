"""The layer-to-layer Jacobians' singular values (Glorot & Bengio, Section 4.2) against
``torch.autograd.functional.jacobian`` taken one example at a time, and the runner's use of
them: at the asked steps, on a probe batch, without touching training or the monitor."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradbench.grid import expand, parse_suite
from gradbench.monitor.jacobians import jacobian_spectra
from gradbench.run import run_cell

torch.set_num_threads(1)


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 6), nn.Sigmoid(), nn.Linear(6, 6), nn.Tanh(), nn.Linear(6, 2))


def test_singular_values_equal_those_of_each_examples_own_jacobian():
    model = _mlp()
    x = torch.randn(9, 5, generator=torch.Generator().manual_seed(3))
    spectra = jacobian_spectra(model, x)
    assert [s.site for s in spectra] == ["1", "3", "5"]
    # Site k's input is site k-1's output (the model's input for the first), through the Linear between.
    blocks = [nn.Sequential(model[0], model[1]), nn.Sequential(model[2], model[3]), nn.Sequential(model[4], model[5])]
    h = x
    for block, spectrum in zip(blocks, spectra):
        values = torch.cat([
            torch.linalg.svdvals(torch.autograd.functional.jacobian(lambda v: block(v.unsqueeze(0)).squeeze(0), example).double())
            for example in h
        ])
        assert spectrum.mean == pytest.approx(float(values.mean()), rel=1e-6)
        assert spectrum.minimum == pytest.approx(float(values.min()), rel=1e-5, abs=1e-12)
        assert spectrum.maximum == pytest.approx(float(values.max()), rel=1e-6)
        h = block(h).detach()


def test_the_model_and_its_gradients_are_left_as_they_were():
    model = _mlp().train()
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    jacobian_spectra(model, torch.randn(4, 5))
    assert model.training and all(torch.equal(p.grad, torch.ones_like(p)) for p in model.parameters())


def test_a_site_wider_than_the_limit_is_skipped():
    model = nn.Sequential(nn.Linear(3, 40), nn.ReLU(), nn.Linear(40, 4), nn.ReLU())
    spectra = jacobian_spectra(model, torch.randn(2, 3), max_units=10)
    assert spectra[0] is None and spectra[1] is None  # 40 units, and a predecessor of 40


def _cell(**settings):
    suite = 'tasks = ["mnist1d_mlp[depth=3,width=16,num_samples=500]"]\nactivations = ["tanh"]\nsteps = 30\neval_every = 10\nrecord_every = 1\ndetail_every = 5'
    (cell,) = expand(parse_suite(suite).with_overrides(settings))
    return cell


def test_a_run_takes_them_at_step_0_every_n_steps_and_the_end_and_trains_as_without():
    plain, with_jacobians = run_cell(_cell()), run_cell(_cell(jacobian_every=20))
    assert with_jacobians.cell.key != plain.cell.key and "jacobian_every" not in plain.cell.config()
    assert sorted({step for step, _, _ in with_jacobians.jacobians}) == [0, 20, 30]
    assert {index for _, index, _ in with_jacobians.jacobians} == {0, 1, 2}
    assert plain.jacobians == []
    # The probe passes change nothing: same losses, same statistics (the monitor's hooks were off).
    assert with_jacobians.history.losses == plain.history.losses
    assert with_jacobians.history.layer_output_grad_norms == plain.history.layer_output_grad_norms
    assert with_jacobians.history.activation_output_grad_norms == plain.history.activation_output_grad_norms


def test_the_store_keeps_them_and_export_writes_them(tmp_path):
    import csv
    import io

    from gradbench.report.export import export
    from gradbench.store import Store

    result = run_cell(_cell(jacobian_every=30))
    with Store.open(tmp_path / "r.db", create=True) as store:
        store.save(result)
        rows = list(csv.DictReader(io.StringIO(export(store, "jacobians", "csv"))))
    assert [(int(r["step"]), int(r["site_index"]), r["site_name"]) for r in rows] == [(s, i, f"layers.{2 * i + 1}") for s in (0, 30) for i in range(3)]
    expected = {(step, index): spectrum for step, index, spectrum in result.jacobians}
    for row in rows:
        assert float(row["sv_mean"]) == pytest.approx(expected[int(row["step"]), int(row["site_index"])].mean, rel=1e-12)
