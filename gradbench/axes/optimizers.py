"""Registry of optimizers: every ``torch.optim`` algorithm the field compares, plus full-batch GD.

An entry names a ``torch.optim.Optimizer`` class and the defaults gradbench uses for it. Any
optimizer class can join in one line::

    gradbench.register_optimizer("lion", Lion, defaults={"lr": 1e-4}, description="Lion")

The built-in classes are named by path (``"torch.optim:SGD"``) and imported when one is first
built or checked, so listing the optimizers or reading their defaults imports no torch; a plugin
may register by path too.

Hyper-parameters are checked where they enter (``resolve_hyperparameters``), by type against the
defaults and then by constructing the optimizer on a dummy parameter, so torch's own argument
checks (``Invalid learning rate: -1.0``) run before any training starts.

References:
    Robbins & Monro, "A Stochastic Approximation Method", 1951 (SGD).
    Polyak, "Some methods of speeding up the convergence of iteration methods", 1964 (momentum).
    Sutskever et al., "On the importance of initialization and momentum in deep learning", 2013
    (Nesterov momentum for deep nets).
    Duchi et al., "Adaptive Subgradient Methods", JMLR 2011 (Adagrad).
    Tieleman & Hinton, Lecture 6.5 RMSprop, 2012.
    Zeiler, "ADADELTA", https://arxiv.org/abs/1212.5701.
    Kingma & Ba, "Adam: A Method for Stochastic Optimization", https://arxiv.org/abs/1412.6980
    (Adam and Adamax).
    Loshchilov & Hutter, "Decoupled Weight Decay Regularization", https://arxiv.org/abs/1711.05101.
    Dozat, "Incorporating Nesterov Momentum into Adam", 2016 (NAdam).
    Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond",
    https://arxiv.org/abs/1908.03265 (RAdam).
    Riedmiller & Braun, "A direct adaptive method for faster backpropagation learning: the
    RPROP algorithm", 1993 (Rprop).
    Polyak & Juditsky, "Acceleration of stochastic approximation by averaging", 1992 (ASGD).
    Shazeer & Stern, "Adafactor", https://arxiv.org/abs/1804.04235.
    Jordan et al., "Muon: An optimizer for hidden layers in neural networks", 2024; Liu et al.,
    "Muon is Scalable for LLM Training", https://arxiv.org/abs/2502.16982 (the AdamW-matched
    learning rate, ``adjust_lr_fn="match_rms_adamw"``).

Beyond ``torch.optim``: the optimizers of ``pytorch-optimizer`` and ``schedulefree``
(``optimizer_catalog.py``, the extra ``gradbench[optimizers]``), and any optimizer class by its
import path, ``package.module:ClassName``, with no registration at all.

Options gradbench itself reads (never passed to the optimizer's constructor; ``OPTIONS``):
``no_decay_on_bias_and_norm`` (parameter groups without weight decay for biases and norm
layers), and, for an entry that updates only hidden matrices (Muon), ``companion`` (the
registered optimizer for every other parameter) and ``companion_lr`` (its learning rate; by
default the entry's own). ``param_groups.py`` says which parameter goes where.
"""

from __future__ import annotations

import importlib.util
import inspect
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from gradbench._lazy import resolve
from gradbench.axes.registry import Registry
from gradbench.axes.specs import bounds_text, outside, plain_value

from gradbench.axes.optimizer_catalog import CATALOG, LEFT_OUT, LIMITATIONS, SOURCES

if TYPE_CHECKING:
    import torch

__all__ = [
    "OptimizerSpec",
    "OPTIMIZERS",
    "register_optimizer",
    "list_optimizers",
    "get_optimizer",
    "resolve_hyperparameters",
    "build_optimizer",
    "OPTIONS",
    "HIDDEN_MATRICES",
    "USE_MUON",
]

# Options gradbench reads itself, never passed to an optimizer's constructor.
NO_DECAY = "no_decay_on_bias_and_norm"
COMPANION = "companion"
COMPANION_LR = "companion_lr"
OPTIONS = (NO_DECAY, COMPANION, COMPANION_LR)
# The splits of an entry for the hidden layers' 2-D weights (Muon): HIDDEN_MATRICES gives it
# only those and builds its companion for the rest; USE_MUON gives it every parameter in two
# groups flagged use_muon=True/False, for classes with an AdamW of their own inside
# (pytorch-optimizer's Muon family).
HIDDEN_MATRICES = "hidden_matrices"
USE_MUON = "use_muon"
SPLITS = (HIDDEN_MATRICES, USE_MUON)


@dataclass(frozen=True)
class OptimizerSpec:
    """One registered optimizer.

    Attributes:
        name: Registry name (``adam``).
        factory: The ``torch.optim.Optimizer`` subclass to construct, or its path
            (``"torch.optim:Adam"``), imported the first time ``optimizer_class`` is read.
        defaults: Hyper-parameters gradbench passes unless overridden; always holds ``lr``.
        description: One line for ``gradbench list optimizers``.
        full_batch: If true the runner feeds the whole training set every step (gradient
            descent); otherwise it draws mini-batches.
        needs_closure: ``step(closure)`` must be given a closure that recomputes the loss and
            its gradients (L-BFGS evaluates it several times per step).
        choices: For hyper-parameters that take one of a few values, those values.
        bounds: For number hyper-parameters torch's constructor does not check, ``(minimum,
            maximum)`` (``None``: open).
        source: Where the class comes from, for ``gradbench list`` (``torch.optim``,
            ``pytorch-optimizer``, a plugin's module).
        extra: The gradbench extra that installs the class's package (``optimizers``), if any.
        train_eval_modes: The optimizer has ``train()`` and ``eval()`` (Schedule-Free): the
            runner calls ``eval()`` before every evaluation, so it sees the averaged weights,
            and ``train()`` before training resumes.
        split: ``"hidden_matrices"``: the optimizer takes only the hidden layers' 2-D weights,
            and its ``companion`` option names the optimizer for the rest (Muon);
            ``"use_muon"``: it takes all, in two groups flagged ``use_muon`` (pytorch-optimizer's
            Muon family, which updates the rest with an AdamW of its own).
        limitation: Why the runner cannot train it on a CPU (shown by ``list``; the catalogue
            test skips it with this reason); empty when it can.
    """

    name: str
    factory: type[torch.optim.Optimizer] | str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    full_batch: bool = False
    needs_closure: bool = False
    choices: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    bounds: Mapping[str, tuple[float | None, float | None]] = field(default_factory=dict)
    source: str = ""
    extra: str | None = None
    train_eval_modes: bool = False
    split: str | None = None
    limitation: str = ""

    @property
    def optimizer_class(self) -> type[torch.optim.Optimizer]:
        """The class (one registered by path is imported now, and checked to be an optimizer).

        Raises:
            ValueError: if the path does not import, or names no optimizer class.
        """
        if not isinstance(self.factory, str):
            return self.factory
        self.check_installed()
        try:
            found = resolve(self.factory)
        except ValueError as error:
            raise ValueError(f"optimizer {self.name!r}: {error}") from None
        _check_optimizer_class(self.name, found)
        return found

    @property
    def installed(self) -> bool:
        """Whether the package the class comes from can be imported (found, not imported)."""
        if not isinstance(self.factory, str):
            return True
        top = self.factory.partition(":")[0].partition(".")[0]
        try:
            return importlib.util.find_spec(top) is not None
        except (ImportError, ValueError):
            return False

    def check_installed(self) -> None:
        """Check that the package of an entry that comes with an extra is installed.

        Raises:
            ValueError: one line naming the extra to install.
        """
        if self.extra is not None and not self.installed:
            raise ValueError(f"optimizer {self.name!r} comes from {self.source}, which is not installed: pip install 'gradbench[{self.extra}]'")

    def signature_default(self, key: str) -> Any:
        """The optimizer class's own default for ``key`` (``None`` where it has none)."""
        parameter = inspect.signature(self.optimizer_class.__init__).parameters.get(key)
        if parameter is None or parameter.default is inspect.Parameter.empty:
            return None
        return parameter.default

    def valid_keys(self) -> list[str]:
        """Keyword arguments the optimizer class names (besides ``params``), and gradbench's
        defaults (which a class taking ``**kwargs`` may accept without naming them)."""
        signature = inspect.signature(self.optimizer_class.__init__)
        named = [
            name
            for name, parameter in signature.parameters.items()
            if name not in ("self", "params")
            and parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
        ]
        options = [key for key in OPTIONS if self.accepts_option(key, named)]
        return named + [key for key in (*self.defaults, *options) if key not in named]

    def accepts_option(self, key: str, named: list[str] | None = None) -> bool:
        """Whether gradbench's option ``key`` applies: ``no_decay_on_bias_and_norm`` to an
        optimizer with a ``weight_decay``, the companion's to an entry that splits (Muon)."""
        if key == NO_DECAY:
            names = named if named is not None else list(inspect.signature(self.optimizer_class.__init__).parameters)
            return "weight_decay" in names or "weight_decay" in self.defaults
        return key in (COMPANION, COMPANION_LR) and self.split == HIDDEN_MATRICES

    @property
    def takes_any_keyword(self) -> bool:
        """The class takes ``**kwargs``: any key may be given; its constructor judges it."""
        parameters = inspect.signature(self.optimizer_class.__init__).parameters.values()
        return any(parameter.kind == parameter.VAR_KEYWORD for parameter in parameters)


OPTIMIZERS: Registry[OptimizerSpec] = Registry("optimizer", left_out=LEFT_OUT)


def _check_optimizer_class(name: str, optimizer_class: Any) -> None:
    import torch

    if not (inspect.isclass(optimizer_class) and issubclass(optimizer_class, torch.optim.Optimizer)):
        raise ValueError(f"optimizer_class for {name!r} must be a torch.optim.Optimizer subclass, got {optimizer_class!r}")


def register_optimizer(
    name: str,
    optimizer_class: type[torch.optim.Optimizer] | str,
    *,
    defaults: Mapping[str, Any] | None = None,
    description: str = "",
    full_batch: bool = False,
    needs_closure: bool | None = None,
    choices: Mapping[str, tuple[Any, ...]] | None = None,
    bounds: Mapping[str, tuple[float | None, float | None]] | None = None,
    source: str = "",
    extra: str | None = None,
    train_eval_modes: bool | None = None,
    split: str | None = None,
    limitation: str = "",
    overwrite: bool = False,
) -> OptimizerSpec:
    """Register ``optimizer_class`` under ``name``.

    Args:
        name: Registry name, lower-case.
        optimizer_class: Any ``torch.optim.Optimizer`` subclass taking ``params`` first, or its
            path (``"mypackage.optim:Lion"``): imported when a run first needs it, if
            ``defaults`` holds ``lr`` and ``description`` and ``needs_closure`` are given
            (otherwise now, to read them from the class).
        defaults: Hyper-parameters to pass unless overridden. If ``lr`` is missing, the class's
            own default ``lr`` is used; a class without one must be given ``lr`` here.
        description: One line shown by ``gradbench list optimizers``.
        full_batch: Train on the whole training set every step (gradient descent).
        needs_closure: Its ``step`` needs a closure (default: when ``step``'s ``closure``
            argument has no default, as L-BFGS's has none).
        choices: For hyper-parameters that take one of a few values, those values (checked
            before anything runs).
        bounds: For number hyper-parameters, ``(minimum, maximum)`` (``None``: open), where
            torch's constructor does not check them and a bad one would fail the run.
        source: Where the class comes from, shown by ``list`` (default: its module).
        extra: The gradbench extra that installs its package, named when it is missing.
        train_eval_modes: The optimizer has ``train()``/``eval()`` modes the runner must switch
            around evaluations (Schedule-Free; default: whether a class given as a class has
            both methods; a class given by path must say so).
        split: ``"hidden_matrices"`` for an optimizer of hidden 2-D weights only (Muon), the
            rest going to the optimizer its ``companion`` option names; ``"use_muon"`` for one
            that takes both in groups flagged ``use_muon``.
        limitation: Why the runner cannot train it on a CPU, if it cannot.
        overwrite: Replace an existing entry of the same name.

    Raises:
        ValueError: if the class is not an optimizer or no learning rate can be found.
    """
    if not isinstance(optimizer_class, str):
        _check_optimizer_class(name, optimizer_class)
    if split is not None and split not in SPLITS:
        raise ValueError(f"invalid split {split!r} for optimizer {name!r}; choose from: {', '.join(SPLITS)}")
    merged = {}
    for key, value in (defaults or {}).items():
        try:  # a default is part of every cell's key (JSON) and hash
            merged[key] = plain_value(value)
        except ValueError:
            raise ValueError(f"optimizer {name!r} default {key}={value!r} cannot be part of a run's configuration: give a number, a string, true/false, none, or a tuple of them") from None
    spec = OptimizerSpec(
        name=name,
        factory=optimizer_class,
        defaults=MappingProxyType(merged),
        description=description,
        full_batch=full_batch,
        needs_closure=bool(needs_closure),
        choices=MappingProxyType(dict(choices or {})),
        bounds=MappingProxyType(dict(bounds or {})),
        source=source or _module_of(optimizer_class),
        extra=extra,
        train_eval_modes=bool(train_eval_modes),
        split=split,
        limitation=limitation,
    )
    # What is left out is read from the class (a class given by path is imported for it).
    if "lr" not in merged:
        lr_default = inspect.signature(spec.optimizer_class.__init__).parameters.get("lr")
        if lr_default is None or not isinstance(lr_default.default, (int, float)):
            raise ValueError(f"optimizer {name!r} has no default learning rate: pass defaults={{'lr': ...}}")
        merged["lr"] = float(lr_default.default)
    if not description:
        description = _first_line(spec.optimizer_class.__doc__) or spec.optimizer_class.__name__
    if needs_closure is None:
        needs_closure = _step_needs_closure(spec.optimizer_class)
    if train_eval_modes is None:  # a class given by path is not imported for it: say it
        train_eval_modes = not isinstance(optimizer_class, str) and _has_train_eval_modes(optimizer_class)
    spec = replace(spec, defaults=MappingProxyType(merged), description=description, needs_closure=needs_closure, train_eval_modes=train_eval_modes)
    return OPTIMIZERS.register(name, spec, overwrite=overwrite)


def _module_of(optimizer_class: Any) -> str:
    return optimizer_class.partition(":")[0] if isinstance(optimizer_class, str) else str(optimizer_class.__module__)


def _has_train_eval_modes(optimizer_class: type[torch.optim.Optimizer]) -> bool:
    """Whether the class has ``train()`` and ``eval()`` (Schedule-Free's; torch's have neither)."""
    return callable(getattr(optimizer_class, "train", None)) and callable(getattr(optimizer_class, "eval", None))


def _step_needs_closure(optimizer_class: type[torch.optim.Optimizer]) -> bool:
    """Whether ``step``'s ``closure`` has no default (L-BFGS's has none)."""
    closure = inspect.signature(optimizer_class.step).parameters.get("closure")
    return closure is not None and closure.default is inspect.Parameter.empty


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0].strip() if lines else ""


# Optimizers named by import path (``package.module:Class``), made on first use in each
# process: a worker that receives such a cell imports the class itself.
_BY_PATH: dict[str, OptimizerSpec] = {}


def is_path(name: str) -> bool:
    """Whether ``name`` is an import path (``package.module:Class``) rather than a registry name."""
    return ":" in name


def get_optimizer(name: str) -> OptimizerSpec:
    """The registered optimizer ``name``, or the class a ``package.module:Class`` path names
    (imported now; its defaults are its own ``lr``, if it has one).

    Raises:
        ValueError: for an unknown name, or a path that does not import or names no optimizer.
    """
    if not is_path(name):
        return OPTIMIZERS.get(name)
    if name not in _BY_PATH:
        spec = OptimizerSpec(name=name, factory=name, source=name.partition(":")[0])
        optimizer_class = spec.optimizer_class
        lr = inspect.signature(optimizer_class.__init__).parameters.get("lr")
        defaults = {"lr": float(lr.default)} if lr is not None and _is_number(lr.default) else {}
        _BY_PATH[name] = replace(
            spec,
            defaults=MappingProxyType(defaults),
            description=_first_line(optimizer_class.__doc__) or optimizer_class.__name__,
            needs_closure=_step_needs_closure(optimizer_class),
            train_eval_modes=_has_train_eval_modes(optimizer_class),
        )
    return _BY_PATH[name]


def list_optimizers(pattern: str = "*") -> list[str]:
    """Registered optimizer names matching ``pattern`` (``"adam*"``)."""
    return OPTIMIZERS.names(pattern)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_option(spec: OptimizerSpec, key: str, value: Any) -> Any:
    """A gradbench option's value checked (``OPTIONS``)."""
    label = f"invalid {spec.name} option {key}={value!r}"
    if key == NO_DECAY:
        if not isinstance(value, bool):
            raise ValueError(f"{label}: expected true or false")
    elif key == COMPANION:
        # One that steps plainly: no split of its own, no closure, no train/eval modes to switch.
        companions = [
            name for name, entry in OPTIMIZERS.items()
            if entry.split is None and not (entry.full_batch or entry.needs_closure or entry.train_eval_modes or entry.limitation)
        ]
        if value not in companions:
            raise ValueError(f"{label}; choose from: {', '.join(companions)}")
    elif key == COMPANION_LR and value is not None:
        if not _is_number(value) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{label}: expected a positive number, or none for {spec.name}'s own lr")
        return float(value)
    return value


def _check_type(spec: OptimizerSpec, key: str, value: Any) -> Any:
    """``value`` checked against the type of the default: gradbench's, else the optimizer class's
    own (``sgd[maximize=(true,)]`` is not a boolean). Where gradbench's default is a float, ints
    become floats, so ``sgd[lr=1]`` and ``sgd[lr=1.0]`` are one configuration; against the
    class's own defaults values are only checked, so that the keys of stored cells stay."""
    choices = spec.choices.get(key)
    if choices is not None:
        if value not in choices:
            shown = ", ".join("none" if choice is None else str(choice) for choice in choices)
            raise ValueError(f"invalid {spec.name} hyper-parameter {key}={value!r}; choose from: {shown}")
        return value
    bounds = spec.bounds.get(key)
    if bounds is not None and value is not None:
        low, high = bounds
        if not _is_number(value) or outside(value, low, high):
            raise ValueError(f"invalid {spec.name} hyper-parameter {key}={value!r}: expected a number {bounds_text(low, high)}")
    import torch  # checking a value is building the optimizer's configuration: torch's time

    registered = spec.defaults.get(key)
    default = registered if registered is not None else spec.signature_default(key)
    if default is None or isinstance(default, torch.Tensor):  # None: any value the class accepts
        return value
    coerce = registered is not None
    label = f"{spec.name} hyper-parameter {key}={value!r}"
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"invalid {label}: expected true or false")
    elif _is_number(default):
        if not _is_number(value):
            raise ValueError(f"invalid {label}: expected a number")
        if coerce and isinstance(default, float):
            return float(value)
    elif isinstance(default, tuple):
        if not (isinstance(value, tuple) and len(value) == len(default) and all(map(_is_number, value))):
            raise ValueError(f"invalid {label}: expected a tuple of {len(default)} numbers like {default!r}")
        if coerce:
            return tuple(float(v) if isinstance(d, float) else v for v, d in zip(value, default))
    return value


def resolve_hyperparameters(name: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The full hyper-parameters of optimizer ``name``: its defaults updated by ``overrides``.

    Raises:
        ValueError: for an unknown optimizer or key, a value of the wrong type, a learning rate
            that is not a positive finite number, or anything torch's constructor rejects.
    """
    spec = get_optimizer(name)
    spec.check_installed()
    hyperparameters = dict(spec.defaults)
    valid = spec.valid_keys()
    for key, value in (overrides or {}).items():
        if key in OPTIONS:
            if not spec.accepts_option(key):
                raise ValueError(f"optimizer {name!r} has no option {key!r}; valid: {', '.join(valid) or 'none'}")
            hyperparameters[key] = _check_option(spec, key, value)
            continue
        if key not in valid and not spec.takes_any_keyword:
            raise ValueError(f"optimizer {name!r} has no hyper-parameter {key!r}; valid: {', '.join(valid) or 'none'}")
        hyperparameters[key] = _check_type(spec, key, value)
    if "lr" not in hyperparameters:
        raise ValueError(f"optimizer {name!r} has no default learning rate: give one, as {name}[lr=...] or --lr")
    lr = hyperparameters["lr"]
    if not _is_number(lr) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"invalid learning rate lr={lr!r} for {name}: must be a positive number")
    # Let torch's own constructor check the values (negative eps, betas outside [0, 1), ...).
    import torch

    # A matrix and a vector: Muon takes only matrices, its companion the vector.
    dummy = [torch.zeros(2, 2, requires_grad=True), torch.zeros(2, requires_grad=True)]
    try:
        build_optimizer(name, dummy, hyperparameters)
    except (TypeError, ValueError, RuntimeError) as error:
        raise ValueError(f"invalid hyper-parameters for {name} {hyperparameters}: {error}") from None
    return hyperparameters


def build_optimizer(
    name: str, parameters: torch.nn.Module | Iterable[torch.Tensor], hyperparameters: Mapping[str, Any]
) -> torch.optim.Optimizer:
    """Construct optimizer ``name`` with already-resolved hyper-parameters, over a model's
    parameters (split into groups as its options say; ``param_groups.py``) or bare tensors
    (where the splits see only shapes).

    An entry that updates only hidden matrices (Muon) with parameters left over becomes a
    ``CombinedOptimizer`` of it and its companion; with none left over, it alone.
    """
    from torch import nn

    from gradbench.axes.combined_optimizer import CombinedOptimizer
    from gradbench.axes.param_groups import split_decay, split_hidden_matrices

    spec = get_optimizer(name)
    hyper = dict(hyperparameters)
    options = {key: hyper.pop(key) for key in OPTIONS if key in hyper}
    source = parameters if isinstance(parameters, nn.Module) else list(parameters)
    # Biases and norm-layer parameters, if the option takes weight decay off them.
    exempt = {id(p) for _, p in split_decay(source).rest} if options.get(NO_DECAY) else None

    def groups(tensors: Sequence[torch.Tensor], **extra: Any) -> list[dict[str, Any]]:
        if exempt is None:
            return [{"params": tensors, **extra}]
        decay = [p for p in tensors if id(p) not in exempt]
        no_decay = [p for p in tensors if id(p) in exempt]
        return [group for group in ({"params": decay, **extra}, {"params": no_decay, **extra, "weight_decay": 0.0}) if group["params"]]

    if spec.split is None:
        tensors = list(source.parameters()) if isinstance(source, nn.Module) else source
        return spec.optimizer_class(groups(tensors), **hyper)
    split = split_hidden_matrices(source)
    if spec.split == USE_MUON:
        hidden, rest = [p for _, p in split.chosen], [p for _, p in split.rest]
        flagged = (groups(hidden, use_muon=True) if hidden else []) + (groups(rest, use_muon=False) if rest else [])
        return spec.optimizer_class(flagged, **hyper)
    inner = []
    if split.chosen:
        inner.append(spec.optimizer_class(groups([p for _, p in split.chosen]), **hyper))
    if split.rest:
        companion = options.get(COMPANION)
        if companion is None:
            shown = ", ".join(split.rest_names[:3]) + (", ..." if len(split.rest) > 3 else "")
            raise ValueError(f"{name} updates only hidden 2-D weight matrices; the other parameters ({shown}) need a companion: {name}[companion=adamw]")
        companion_lr = options.get(COMPANION_LR)
        companion_hyper = resolve_hyperparameters(companion, {"lr": hyper["lr"] if companion_lr is None else companion_lr})
        inner.append(get_optimizer(companion).optimizer_class(groups([p for _, p in split.rest]), **companion_hyper))
    return inner[0] if len(inner) == 1 else CombinedOptimizer(inner)


def _register_builtins() -> None:
    # By path: imported when first built or checked. Each gives lr, its description and
    # needs_closure, which would otherwise be read from the class (tests check they agree).
    sgd = "torch.optim:SGD"
    register_optimizer(
        "gd", sgd, defaults={"lr": 0.1}, full_batch=True, needs_closure=False,
        description="full-batch gradient descent: every step uses the whole training set",
    )
    register_optimizer("sgd", sgd, defaults={"lr": 0.1}, needs_closure=False, description="mini-batch stochastic gradient descent (Robbins & Monro 1951)")
    register_optimizer(
        "momentum", sgd, needs_closure=False, defaults={"lr": 0.01, "momentum": 0.9},
        description="SGD with heavy-ball momentum 0.9 (Polyak 1964)",
    )
    register_optimizer(
        "nesterov", sgd, needs_closure=False, defaults={"lr": 0.01, "momentum": 0.9, "nesterov": True},
        description="SGD with Nesterov momentum 0.9 (Sutskever et al. 2013)",
    )
    register_optimizer("adam", "torch.optim:Adam", needs_closure=False, defaults={"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8}, description="Adam (Kingma & Ba 2014)")
    register_optimizer(
        "adamw", "torch.optim:AdamW", needs_closure=False, defaults={"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01},
        description="Adam with decoupled weight decay (Loshchilov & Hutter 2017)",
    )
    register_optimizer("rmsprop", "torch.optim:RMSprop", needs_closure=False, defaults={"lr": 1e-3, "alpha": 0.99, "eps": 1e-8}, description="RMSprop (Tieleman & Hinton 2012)")
    register_optimizer("adagrad", "torch.optim:Adagrad", needs_closure=False, defaults={"lr": 0.01, "eps": 1e-10}, description="Adagrad (Duchi et al. 2011)")
    register_optimizer("adadelta", "torch.optim:Adadelta", needs_closure=False, defaults={"lr": 1.0, "rho": 0.9, "eps": 1e-6}, description="Adadelta (Zeiler 2012)")
    register_optimizer("adamax", "torch.optim:Adamax", needs_closure=False, defaults={"lr": 2e-3, "betas": (0.9, 0.999), "eps": 1e-8}, description="Adamax, Adam with the infinity norm (Kingma & Ba 2014)")
    register_optimizer("nadam", "torch.optim:NAdam", needs_closure=False, defaults={"lr": 2e-3, "betas": (0.9, 0.999), "eps": 1e-8}, description="Adam with Nesterov momentum (Dozat 2016)")
    register_optimizer("radam", "torch.optim:RAdam", needs_closure=False, defaults={"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8}, description="Rectified Adam (Liu et al. 2019)")
    register_optimizer(
        "lbfgs", "torch.optim:LBFGS", needs_closure=True, defaults={"lr": 1.0, "max_iter": 20, "history_size": 10, "line_search_fn": "strong_wolfe"},
        choices={"line_search_fn": ("strong_wolfe", None)}, bounds={"max_iter": (1, None), "max_eval": (1, None), "history_size": (1, None)},
        description="L-BFGS (Nocedal 1980; Liu & Nocedal 1989): up to max_iter iterations a step (max_eval, default 1.25 x max_iter, loss evaluations), strong-Wolfe line search",
    )
    register_optimizer("rprop", "torch.optim:Rprop", needs_closure=False, defaults={"lr": 0.01}, description="Rprop, sign-based steps with per-weight step sizes (Riedmiller & Braun 1993); meant for full batches")
    register_optimizer("asgd", "torch.optim:ASGD", needs_closure=False, defaults={"lr": 0.01}, description="averaged SGD (Polyak & Juditsky 1992); torch keeps the average in its state, the model trains and is evaluated at the iterate")
    register_optimizer("adafactor", "torch.optim:Adafactor", needs_closure=False, defaults={"lr": 0.01}, description="Adafactor, factored second moments, no momentum (Shazeer & Stern 2018)")
    register_optimizer(
        "muon", "torch.optim:Muon", needs_closure=False, split=HIDDEN_MATRICES,
        defaults={"lr": 1e-3, "weight_decay": 0.1, "momentum": 0.95, "adjust_lr_fn": "match_rms_adamw", "companion": "adamw"},
        choices={"adjust_lr_fn": ("original", "match_rms_adamw", "spectral_unclamped", None)},
        description="Muon, orthogonalised momentum for hidden 2-D weights (Jordan et al. 2024); the rest to its companion (AdamW) at the same lr, RMS-matched to AdamW (Liu et al. 2025)",
    )


def _register_catalog() -> None:
    # Other packages' optimizers, by path: registered whether installed or not (list shows
    # which), imported when a run first builds one.
    for entry in CATALOG:
        source = SOURCES[entry.source]
        defaults: dict[str, Any] = {"lr": entry.lr}
        if entry.split == HIDDEN_MATRICES:
            defaults[COMPANION] = "adamw"
        register_optimizer(
            entry.name, entry.path, defaults=defaults, description=entry.description, needs_closure=entry.needs_closure,
            source=source.distribution, extra=source.extra, train_eval_modes=entry.train_eval_modes, split=entry.split,
            limitation=LIMITATIONS.get(entry.name, ""),
        )


_register_builtins()
_register_catalog()
