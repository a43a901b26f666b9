"""Weight initialisers, each applied to the weight matrices or kernels of a model in its scope.

An initialiser sets weights (parameters named ``weight*`` with two or more dimensions: linear
layers, convolutions, recurrent matrices) and zeroes the matching biases; normalisation layers'
scales and shifts keep their 1 and 0. ``default`` leaves the model's own initialisation alone:
torch's layer defaults, or the published one where a task's architecture defines it (DeepOBS's
2c2d and 3c3d, torchvision's ResNet-18).

Every initialiser but ``default`` takes a ``scope``: the weights it sets, the others keeping the
model's own initialisation. ``all`` (the default, for every task family) sets every weight;
``hidden`` all but the output layer's (the last module with a weight, in registration order: the
classifier or read-out); ``output`` only that one; ``recurrent`` only recurrent layers'
hidden-to-hidden matrices (``weight_hh*``), as an orthogonal or identity *recurrent* matrix is
initialised in RNN papers. A bias is zeroed where its own weight is set (``bias_hh*`` with
``weight_hh*``).

Gains: Kaiming and orthogonal initialisation take the activation's gain (``activations.py``);
Xavier uses gain 1 as Glorot & Bengio did (``xavier_uniform[gain=...]`` overrides it); LeCun
normal is the variance-1/fan_in Gaussian that SELU needs, with gain 1 whatever the activation.

torch is imported by the functions that set weights, not by this module: listing the
initialisers and checking their parameters need none.

References:
    LeCun et al., "Efficient BackProp", 1998 (LeCun normal).
    Glorot & Bengio, "Understanding the difficulty of training deep feedforward neural networks",
    AISTATS 2010 ("standard" U[-1/sqrt(n), 1/sqrt(n)] and normalised "Xavier" initialisation).
    Saxe et al., "Exact solutions to the nonlinear dynamics of learning in deep linear neural
    networks", https://arxiv.org/abs/1312.6120 (orthogonal).
    He et al., "Delving Deep into Rectifiers", https://arxiv.org/abs/1502.01852 (Kaiming).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gradbench.axes.registry import Registry

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["InitSpec", "INITS", "SCOPES", "register_init", "list_inits", "initialise", "fans", "check_init_params", "init_defaults"]

# Which weights an initialiser sets (the parameter every initialiser but ``default`` takes).
SCOPES = ("all", "hidden", "output", "recurrent")

# A weight initialiser: (weight, activation gain, params) -> None, in place.
WeightInit = Callable[["torch.Tensor", float, Mapping[str, Any]], None]


@dataclass(frozen=True)
class InitSpec:
    """One registered initialiser.

    Attributes:
        name: Registry name.
        init_weight: Sets one weight tensor in place, or ``None`` for torch's defaults.
        description: One line for ``gradbench list inits``.
        params: The parameters it accepts, with their defaults.
    """

    name: str
    init_weight: WeightInit | None
    description: str
    params: Mapping[str, Any]


INITS: Registry[InitSpec] = Registry("init")


def register_init(
    name: str,
    init_weight: WeightInit | None,
    *,
    description: str,
    params: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> InitSpec:
    return INITS.register(name, InitSpec(name, init_weight, description, dict(params or {})), overwrite=overwrite)


def list_inits(pattern: str = "*") -> list[str]:
    return INITS.names(pattern)


def fans(weight: torch.Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight: input and output units times the receptive field size."""
    if weight.dim() < 2:
        raise ValueError(f"fan in and fan out need a weight of 2 or more dimensions, got shape {tuple(weight.shape)}")
    receptive_field = math.prod(weight.shape[2:])
    return weight.shape[1] * receptive_field, weight.shape[0] * receptive_field


def init_defaults(name: str) -> dict[str, Any]:
    """Every parameter initialiser ``name`` takes, with its default (``scope`` included)."""
    spec = INITS.get(name)
    return dict(spec.params) if spec.init_weight is None else {**spec.params, "scope": "all"}


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def check_init_params(name: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The initialiser's parameters with defaults filled in.

    Raises:
        ValueError: for an unknown initialiser, key or value.
    """
    merged = init_defaults(name)
    known = list(merged)
    for key, value in (params or {}).items():
        if key not in known:
            valid = ", ".join(known) or "none"
            raise ValueError(f"init {name!r} has no parameter {key!r}; valid: {valid}")
        merged[key] = value
    for key in ("gain", "std", "a"):
        value = merged.get(key)
        if value is not None and not _positive(value):
            raise ValueError(f"invalid init {key}={value!r} for {name!r}: must be a positive number")
    if "mode" in merged and merged["mode"] not in ("fan_in", "fan_out"):
        raise ValueError(f"invalid init mode={merged['mode']!r} for {name!r}; choose from: fan_in, fan_out")
    if "scope" in merged and merged["scope"] not in SCOPES:
        raise ValueError(f"invalid init scope={merged['scope']!r} for {name!r}; choose from: {', '.join(SCOPES)}")
    return merged


def _is_weight(name: str, parameter: torch.Tensor) -> bool:
    leaf = name.rsplit(".", 1)[-1]
    return leaf.startswith("weight") and parameter.dim() >= 2


def _is_bias(name: str) -> bool:
    return name.rsplit(".", 1)[-1].startswith("bias")


def initialise(model: nn.Module, name: str, gain: float = 1.0, params: Mapping[str, Any] | None = None) -> None:
    """Initialise every weight of ``model`` with initialiser ``name`` and zero its biases.

    Args:
        model: The model, modified in place.
        name: Registered initialiser name.
        gain: The activation's gain (``activations.activation_gain``); used by the initialisers
            whose definition involves one.
        params: Initialiser parameters (``gain``, ``mode``), checked by ``check_init_params``.
    """
    import torch

    spec = INITS.get(name)
    merged = check_init_params(name, params)
    if spec.init_weight is None:
        return
    in_scope = _in_scope(model, merged["scope"])
    with torch.no_grad():
        for parameter_name, parameter in model.named_parameters():
            # Normalisation layers own 1-D "weight"s (scales): they keep their ones.
            if _is_weight(parameter_name, parameter):
                if in_scope(parameter_name):
                    spec.init_weight(parameter, gain, merged)
            elif _is_bias(parameter_name) and not _belongs_to_norm(model, parameter_name) and in_scope(_weight_of(parameter_name)):
                parameter.zero_()


def _weight_of(bias_name: str) -> str:
    """The weight a bias goes with: ``layers.0.bias`` -> ``layers.0.weight``, ``bias_hh_l0`` ->
    ``weight_hh_l0``."""
    module, _, leaf = bias_name.rpartition(".")
    leaf = "weight" + leaf[len("bias"):]
    return f"{module}.{leaf}" if module else leaf


def _in_scope(model: nn.Module, scope: str) -> Callable[[str], bool]:
    """Whether a weight, by parameter name, is in ``scope`` (see the module's docstring)."""
    if scope == "all":
        return lambda name: True
    if scope == "recurrent":
        return lambda name: name.rsplit(".", 1)[-1].startswith("weight_hh")
    owners = [module for module, _ in (name.rpartition(".")[::2] for name, p in model.named_parameters() if _is_weight(name, p))]
    output = owners[-1] if owners else None
    if scope == "output":
        return lambda name: name.rpartition(".")[0] == output
    return lambda name: name.rpartition(".")[0] != output


def _belongs_to_norm(model: nn.Module, parameter_name: str) -> bool:
    from torch import nn

    module_name = parameter_name.rpartition(".")[0]
    return isinstance(model.get_submodule(module_name), (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm))


def _fan(weight: torch.Tensor, mode: str) -> int:
    fan_in, fan_out = fans(weight)
    return fan_in if mode == "fan_in" else fan_out


def _xavier_uniform(weight: torch.Tensor, gain: float, params: Mapping[str, Any]) -> None:
    from torch import nn

    nn.init.xavier_uniform_(weight, gain=params["gain"])


def _xavier_normal(weight: torch.Tensor, gain: float, params: Mapping[str, Any]) -> None:
    from torch import nn

    nn.init.xavier_normal_(weight, gain=params["gain"])


def _kaiming_uniform(weight: torch.Tensor, gain: float, params: Mapping[str, Any]) -> None:
    # Written out rather than nn.init.kaiming_uniform_, whose gain table lacks GELU, SiLU, ...
    std = (params["gain"] or gain) / math.sqrt(_fan(weight, params["mode"]))
    bound = math.sqrt(3.0) * std
    weight.uniform_(-bound, bound)


def _kaiming_normal(weight: torch.Tensor, gain: float, params: Mapping[str, Any]) -> None:
    std = (params["gain"] or gain) / math.sqrt(_fan(weight, params["mode"]))
    weight.normal_(0.0, std)


def _orthogonal(weight: torch.Tensor, gain: float, params: Mapping[str, Any]) -> None:
    from torch import nn

    nn.init.orthogonal_(weight, gain=params["gain"] or gain)


def _lecun_normal(weight: torch.Tensor, gain: float, params: Mapping[str, Any]) -> None:
    weight.normal_(0.0, 1.0 / math.sqrt(fans(weight)[0]))


def _standard(weight: torch.Tensor, gain: float, params: Mapping[str, Any]) -> None:
    bound = 1.0 / math.sqrt(fans(weight)[0])
    weight.uniform_(-bound, bound)


def _normal(weight: torch.Tensor, gain: float, params: Mapping[str, Any]) -> None:
    weight.normal_(0.0, params["std"])


def _uniform(weight: torch.Tensor, gain: float, params: Mapping[str, Any]) -> None:
    weight.uniform_(-params["a"], params["a"])


def _truncated_normal(weight: torch.Tensor, gain: float, params: Mapping[str, Any]) -> None:
    from torch import nn

    std = params["std"]
    nn.init.trunc_normal_(weight, mean=0.0, std=std, a=-2.0 * std, b=2.0 * std)


def _register_builtins() -> None:
    register_init("default", None, description="the model's own initialisation, left untouched: torch's layer defaults, or the published one where a task's architecture defines it (DeepOBS 2c2d/3c3d, torchvision ResNet-18)")
    register_init("xavier_uniform", _xavier_uniform, params={"gain": 1.0}, description="U[-a, a], a = gain*sqrt(6/(fan_in+fan_out)), gain 1 (Glorot & Bengio 2010)")
    register_init("xavier_normal", _xavier_normal, params={"gain": 1.0}, description="N(0, gain^2 * 2/(fan_in+fan_out)), gain 1 (Glorot & Bengio 2010)")
    register_init("kaiming_uniform", _kaiming_uniform, params={"gain": None, "mode": "fan_in"}, description="U[-a, a], a = gain*sqrt(3/fan_in), gain of the activation (He et al. 2015)")
    register_init("kaiming_normal", _kaiming_normal, params={"gain": None, "mode": "fan_in"}, description="N(0, gain^2/fan_in), gain of the activation (He et al. 2015)")
    register_init("orthogonal", _orthogonal, params={"gain": None}, description="random orthogonal matrix times the activation's gain (Saxe et al. 2014)")
    register_init("lecun_normal", _lecun_normal, description="N(0, 1/fan_in), gain 1: what SELU needs (LeCun et al. 1998)")
    register_init("standard", _standard, description="U[-1/sqrt(fan_in), 1/sqrt(fan_in)], Glorot & Bengio's 'standard' initialisation")
    register_init("normal", _normal, params={"std": 0.01}, description="N(0, std^2), a fixed scale whatever the layer's size (as in AlexNet and the papers it shaped)")
    register_init("uniform", _uniform, params={"a": 0.05}, description="U[-a, a], a fixed scale whatever the layer's size")
    register_init("truncated_normal", _truncated_normal, params={"std": 0.01}, description="N(0, std^2) redrawn beyond two standard deviations (TensorFlow's truncated normal)")


_register_builtins()
