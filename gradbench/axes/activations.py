"""Registry of activation functions, each with the initialisation gain that suits it.

Modules are always built with ``inplace=False``: an in-place activation would overwrite the
tensor a forward hook or the gradient monitor wants to read.

The gain is the factor by which Kaiming and orthogonal initialisation scale the weights so that
the activation keeps the forward signal's variance (He et al. 2015). torch's ``calculate_gain``
covers only some activations and returns 3/4 for SELU, which breaks self-normalisation: SELU
needs LeCun normal initialisation, i.e. gain 1 (Klambauer et al. 2017), and gets it here.

The built-in modules are named by path (``"torch.nn:ReLU"``) and imported when one is first
built, so listing the activations imports no torch.

References:
    He et al., "Delving Deep into Rectifiers", https://arxiv.org/abs/1502.01852.
    Klambauer et al., "Self-Normalizing Neural Networks", https://arxiv.org/abs/1706.02515.
    Hendrycks & Gimpel, "Gaussian Error Linear Units", https://arxiv.org/abs/1606.08415.
    Misra, "Mish", https://arxiv.org/abs/1908.08681.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gradbench._lazy import resolve
from gradbench.axes.registry import Registry

if TYPE_CHECKING:
    from torch import nn

__all__ = ["ActivationSpec", "ACTIVATIONS", "register_activation", "list_activations", "build_activation", "check_activation", "activation_gain"]


@dataclass(frozen=True)
class ActivationSpec:
    """One registered activation.

    Attributes:
        name: Registry name.
        factory: The ``nn.Module`` class, constructed with the spec's parameters, or its path
            (``"torch.nn:ReLU"``), imported the first time ``module_class`` is read.
        gain: Initialisation gain as a function of the parameters.
        description: One line for ``gradbench list activations``.
        kind: ``"saturating"`` (sigmoid-like: gradients shrink for large inputs), ``"rectifier"``
            (ReLU-like: units can die) or ``"linear"``; read by gradient diagnostics.
    """

    name: str
    factory: type[nn.Module] | str
    gain: Callable[..., float]
    description: str
    kind: str

    @property
    def module_class(self) -> type[nn.Module]:
        """The class (one registered by path is imported now).

        Raises:
            ValueError: if the path does not import.
        """
        if not isinstance(self.factory, str):
            return self.factory
        try:
            return resolve(self.factory)
        except ValueError as error:
            raise ValueError(f"activation {self.name!r}: {error}") from None


ACTIVATIONS: Registry[ActivationSpec] = Registry("activation")


def register_activation(
    name: str,
    module_class: type[nn.Module] | str,
    *,
    gain: float | Callable[..., float],
    description: str,
    kind: str,
    overwrite: bool = False,
) -> ActivationSpec:
    """Register an activation module class with its initialisation gain; the class may be given
    by path (``"mypackage.layers:Snake"``), imported when a run first builds it."""
    if kind not in ("saturating", "rectifier", "linear"):
        raise ValueError(f"invalid activation kind {kind!r}; choose from: saturating, rectifier, linear")
    gain_function = gain if callable(gain) else (lambda _value=float(gain), **_: _value)
    spec = ActivationSpec(name, module_class, gain_function, description, kind)
    return ACTIVATIONS.register(name, spec, overwrite=overwrite)


def list_activations(pattern: str = "*") -> list[str]:
    return ACTIVATIONS.names(pattern)


def build_activation(name: str, params: Mapping[str, Any] | None = None) -> nn.Module:
    """A fresh activation module (never in-place).

    Raises:
        ValueError: for an unknown name or parameters the module does not take.
    """
    spec = ACTIVATIONS.get(name)
    kwargs = dict(params or {})
    try:
        module = spec.module_class(**kwargs)
    except Exception as error:  # TypeError for unknown keys, AssertionError or ValueError for values
        raise ValueError(f"invalid parameters {kwargs} for activation {name!r}: {error or type(error).__name__}") from None
    if getattr(module, "inplace", False):
        raise ValueError(f"activation {name!r} must not be in-place")
    return module


def check_activation(name: str, params: Mapping[str, Any] | None = None) -> None:
    """Build the activation and run it on a small tensor: some parameters (``gelu``'s
    ``approximate``) are only checked when the module runs.

    Raises:
        ValueError: naming the activation and the problem.
    """
    import torch

    module = build_activation(name, params)
    try:
        module(torch.linspace(-2.0, 2.0, 8))
    except Exception as error:
        raise ValueError(f"invalid parameters {dict(params or {})} for activation {name!r}: {error}") from None


def activation_gain(name: str, params: Mapping[str, Any] | None = None) -> float:
    """The initialisation gain for activation ``name`` with ``params``."""
    return float(ACTIVATIONS.get(name).gain(**dict(params or {})))


def _leaky_relu_gain(negative_slope: float = 0.01, **_: Any) -> float:
    return math.sqrt(2.0 / (1 + negative_slope**2))


def _register_builtins() -> None:
    relu_gain = math.sqrt(2.0)
    torch_nn = "torch.nn:"  # by path: imported when first built
    register_activation("sigmoid", torch_nn + "Sigmoid", gain=1.0, kind="saturating", description="logistic sigmoid 1/(1+e^-x); saturates, the classic vanishing-gradient case")
    register_activation("tanh", torch_nn + "Tanh", gain=5.0 / 3.0, kind="saturating", description="hyperbolic tangent; zero-centred but saturating")
    register_activation("relu", torch_nn + "ReLU", gain=relu_gain, kind="rectifier", description="max(0, x) (Nair & Hinton 2010); units can die")
    register_activation("leaky_relu", torch_nn + "LeakyReLU", gain=_leaky_relu_gain, kind="rectifier", description="max(x, a*x) with negative_slope a=0.01 (Maas et al. 2013)")
    register_activation("elu", torch_nn + "ELU", gain=relu_gain, kind="rectifier", description="exponential linear unit (Clevert et al. 2015); ReLU's gain sqrt(2)")
    register_activation("selu", torch_nn + "SELU", gain=1.0, kind="rectifier", description="scaled ELU, self-normalising with LeCun normal init, gain 1 (Klambauer et al. 2017)")
    register_activation("gelu", torch_nn + "GELU", gain=relu_gain, kind="rectifier", description="x * Phi(x) (Hendrycks & Gimpel 2016); ReLU's gain sqrt(2)")
    register_activation("silu", torch_nn + "SiLU", gain=relu_gain, kind="rectifier", description="x * sigmoid(x), a.k.a. swish (Ramachandran et al. 2017); ReLU's gain sqrt(2)")
    register_activation("mish", torch_nn + "Mish", gain=relu_gain, kind="rectifier", description="x * tanh(softplus(x)) (Misra 2019); ReLU's gain sqrt(2)")
    register_activation("softplus", torch_nn + "Softplus", gain=relu_gain, kind="rectifier", description="log(1 + e^x), a smooth ReLU; ReLU's gain sqrt(2)")
    register_activation("hardtanh", torch_nn + "Hardtanh", gain=1.0, kind="saturating", description="clamp(x, -1, 1); identity near 0, zero gradient outside")
    register_activation("identity", torch_nn + "Identity", gain=1.0, kind="linear", description="no nonlinearity: a deep linear network")


_register_builtins()
