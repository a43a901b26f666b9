"""Singular values of the layer-to-layer Jacobians, Glorot & Bengio's Section 4.2 analysis.

For each activation site ``k`` (the activation modules' calls, in forward order, as
``ActivationRecorder`` numbers them), the Jacobian ``J_k = d h_k / d h_{k-1}`` of its output
with respect to the previous site's output (the model's input for the first site), one matrix
per example. Glorot & Bengio observe that with their normalised initialisation these
Jacobians' singular values stay near 1 through the layers (average 0.8), and with the standard
one they are smaller (0.5), so the back-propagated gradient shrinks layer after layer.

Computed on a fixed probe batch, outside training, at chosen steps (``jacobian_every``): the
model runs in eval mode, so that batch normalisation uses its running statistics and each
example's Jacobian is its own; one batched vector-Jacobian product per output unit, so sites
wider than ``max_units`` (a convolution's feature maps) are skipped.

References:
    Glorot & Bengio, "Understanding the difficulty of training deep feedforward neural
    networks", AISTATS 2010, Section 4.2.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from gradbench.monitor.activation_stats import activation_kind, site_label
from gradbench.monitor.output_gradients import first_tensor

__all__ = ["JacobianSpectrum", "jacobian_spectra", "MAX_UNITS", "PROBE_EXAMPLES"]

MAX_UNITS = 1024  # wider sites are skipped: one vector-Jacobian product per output unit
PROBE_EXAMPLES = 16  # the training examples the Jacobians are taken at


@dataclass(frozen=True)
class JacobianSpectrum:
    """One site's Jacobian singular values over the probe examples.

    Attributes:
        site: The activation site's name (``layers.1``; ``name#2`` for a second call).
        mean, minimum, maximum: Of every singular value of every example's Jacobian.
    """

    site: str
    mean: float
    minimum: float
    maximum: float


def _site_names(model: nn.Module) -> dict[int, str]:
    return {id(module): name or type(module).__name__ for name, module in model.named_modules() if activation_kind(module) is not None}


@torch.no_grad()
def _spectrum(jacobian: torch.Tensor) -> tuple[float, float, float]:
    values = torch.linalg.svdvals(jacobian.double())
    return float(values.mean()), float(values.min()), float(values.max())


def jacobian_spectra(model: nn.Module, inputs: torch.Tensor, *, max_units: int = MAX_UNITS) -> list[JacobianSpectrum | None]:
    """The Jacobian singular values of each activation site of ``model`` on ``inputs`` (a batch),
    in forward order; ``None`` for a site wider than ``max_units`` (or its predecessor) or
    whose output does not depend on its predecessor's.

    The model's mode is restored afterwards; its parameters' gradients are untouched.
    """
    names = _site_names(model)
    outputs: list[tuple[str, torch.Tensor]] = []
    calls: dict[str, int] = {}

    def keep(module: nn.Module, args: Any, output: Any) -> None:
        tensor = first_tensor(output)
        if tensor is not None and tensor.requires_grad:
            name = names[id(module)]
            calls[name] = calls.get(name, 0) + 1
            outputs.append((site_label(name, calls[name]), tensor))

    handles = [module.register_forward_hook(keep) for module in model.modules() if id(module) in names]
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            probe = inputs.detach().clone().requires_grad_(True)
            model(probe)
            spectra: list[JacobianSpectrum | None] = []
            previous: torch.Tensor = probe
            for name, output in outputs:
                spectra.append(_site_spectrum(name, output, previous, max_units))
                previous = output
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return spectra


def _site_spectrum(name: str, output: torch.Tensor, previous: torch.Tensor, max_units: int) -> JacobianSpectrum | None:
    try:
        return _spectrum_of(name, output, previous, max_units)
    except RuntimeError as error:  # an operation batched vector-Jacobian products cannot take: that site only
        warnings.warn(f"Jacobian of {name} not taken: {str(error).splitlines()[0]}", stacklevel=3)
        return None


def _spectrum_of(name: str, output: torch.Tensor, previous: torch.Tensor, max_units: int) -> JacobianSpectrum | None:
    batch = output.shape[0]
    units, previous_units = output[0].numel(), previous[0].numel()
    if units > max_units or previous_units > max_units or previous.shape[0] != batch:
        return None
    # One vector-Jacobian product per output unit, batched: row u of every example's Jacobian.
    basis = torch.eye(units, dtype=output.dtype, device=output.device).reshape(units, 1, *output.shape[1:]).expand(units, *output.shape)
    (rows,) = torch.autograd.grad(output, previous, grad_outputs=basis, is_grads_batched=True, retain_graph=True, allow_unused=True)
    if rows is None:
        return None
    jacobians = rows.reshape(units, batch, previous_units).transpose(0, 1)  # [examples, units, previous units]
    return JacobianSpectrum(name, *_spectrum(jacobians))
