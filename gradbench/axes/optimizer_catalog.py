"""The optimizers of other packages, as data: names, import paths, default learning rates and
one-line descriptions, so listing them imports neither torch nor the packages.

Each source is an optional extra (``pip install "gradbench[optimizers]"``); its entries are
registered whether or not it is installed, and naming one without it is one line saying which
extra to install (``optimizers.py``).

Names: the own own short name, lower-case. Where it clashes with a ``torch.optim``
algorithm gradbench registers (``muon``, ``adafactor``, ``asgd``, ``radam``, ``adamax``,
``adadelta``), the ``torch.optim`` one keeps the bare name and the other gets its package"s
prefix (``po_muon``): the bare name always means the class shipped with torch.

``tests/axes/test_optimizer_catalog.py`` checks this table against the installed packages
(paths, learning rates) and trains every entry for a few steps.
"""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["CatalogEntry", "Source", "SOURCES", "CATALOG", "LIMITATIONS", "LEFT_OUT"]


class Source(NamedTuple):
    """Where entries come from: the distribution, its module, and the gradbench extra."""

    distribution: str
    module: str
    extra: str


SOURCES = {
    "pytorch-optimizer": Source("pytorch-optimizer", "pytorch_optimizer", "optimizers"),
    "schedulefree": Source("schedulefree", "schedulefree", "optimizers"),
}


class CatalogEntry(NamedTuple):
    """One optimizer of another package."""

    name: str
    path: str
    lr: float
    description: str
    source: str
    train_eval_modes: bool = False  # has optimizer.train() / .eval(): schedule-free averaging
    split: str | None = None  # "hidden_matrices" (with a companion) or "use_muon" (flagged groups)
    needs_closure: bool = False


def _po(name: str, path: str, lr: float, description: str, **options: Any) -> CatalogEntry:
    return CatalogEntry(name, path, lr, description, "pytorch-optimizer", **options)


def _sf(name: str, path: str, lr: float, description: str) -> CatalogEntry:
    return CatalogEntry(name, path, lr, description, "schedulefree", True)


# pytorch-optimizer 4.1: every optimizer it lists (get_supported_optimizers) but the torch.optim
# classes it re-exports (adam, adamw, lbfgs, nadam, rmsprop, sgd) and LEFT_OUT. Descriptions
# are the first lines of the classes" docstrings; learning rates the classes" own defaults.
_PYTORCH_OPTIMIZER = [
    _po("a2grad", "pytorch_optimizer:A2Grad", 1e-3, "Adaptive accelerated stochastic gradient descent with three averaging variants"),
    _po("accsgd", "pytorch_optimizer:AccSGD", 0.001, "Accelerated SGD with coupled short and long steps"),
    _po("adabelief", "pytorch_optimizer:AdaBelief", 0.001, "Adaptive updates based on gradient prediction error"),
    _po("adabound", "pytorch_optimizer:AdaBound", 0.001, "Adam updates with learning rate bounds that converge to SGD"),
    _po("po_adadelta", "pytorch_optimizer:AdaDelta", 1.0, "Adaptive updates based on accumulated squared gradients and updates"),
    _po("po_adafactor", "pytorch_optimizer:AdaFactor", 0.001, "Factored adaptive updates with the BigVision AdaFactor variant"),
    _po("adagc", "pytorch_optimizer:AdaGC", 0.001, "Adam with adaptive gradient clipping for stable training"),
    _po("adago", "pytorch_optimizer:AdaGO", 0.05, "Orthogonal momentum updates with AdaGrad step size adaptation", split="use_muon"),
    _po("adahessian", "pytorch_optimizer:AdaHessian", 0.1, "Adaptive second-order updates using Hutchinson Hessian estimates"),
    _po("adai", "pytorch_optimizer:Adai", 0.001, "SGD with gradient dependent momentum and optional stable weight decay"),
    _po("adalite", "pytorch_optimizer:Adalite", 0.001, "Adaptive updates with factored moments and tensor wise trust ratios"),
    _po("po_adamax", "pytorch_optimizer:AdaMax", 0.001, "Adam with an exponentially weighted infinity norm denominator"),
    _po("adamc", "pytorch_optimizer:AdamC", 0.001, "Adam with weight decay scaled by the learning rate in normalization layers"),
    _po("adamg", "pytorch_optimizer:AdamG", 1.0, "Parameter free adaptive updates with gradient dependent scaling"),
    _po("adamod", "pytorch_optimizer:AdaMod", 0.001, "Adam with bounds from a moving average of adaptive learning rates"),
    _po("adamp", "pytorch_optimizer:AdamP", 0.001, "Adam with projected updates for scale invariant weights"),
    _po("adams", "pytorch_optimizer:AdamS", 0.001, "Adam with stable weight decay"),
    _po("adamuon", "pytorch_optimizer:AdaMuon", 0.02, "Adaptive momentum updates with Newton-Schulz matrix orthogonalization", split="use_muon"),
    _po("adamwsn", "pytorch_optimizer:AdamWSN", 0.001, "AdamW with subset norm and subspace momentum scaling"),
    _po("adan", "pytorch_optimizer:Adan", 0.001, "Adaptive updates with gradient difference momentum"),
    _po("adanorm", "pytorch_optimizer:AdaNorm", 0.001, "Adam with adaptive gradient norm correction"),
    _po("adapnm", "pytorch_optimizer:AdaPNM", 0.001, "Adam with positive negative momentum"),
    _po("adashift", "pytorch_optimizer:AdaShift", 0.001, "Adaptive updates with temporally decorrelated gradient moments"),
    _po("adasmooth", "pytorch_optimizer:AdaSmooth", 0.001, "Adaptive updates with effective ratio smoothing"),
    _po("adatam", "pytorch_optimizer:AdaTAM", 0.001, "Adam with gradient momentum alignment scaling"),
    _po("ademamix", "pytorch_optimizer:AdEMAMix", 0.001, "Adam with a mixture of fast and slow gradient momentum"),
    _po("adopt", "pytorch_optimizer:ADOPT", 0.001, "Adaptive updates using the previous second moment and gradient clipping"),
    _po("aggmo", "pytorch_optimizer:AggMo", 0.001, "SGD with aggregated momentum buffers at multiple decay rates"),
    _po("aida", "pytorch_optimizer:Aida", 0.001, "Adaptive updates using alternating gradient and momentum projections"),
    _po("alice", "pytorch_optimizer:Alice", 0.02, "Adaptive subspace updates with full rank gradient compensation"),
    _po("alig", "pytorch_optimizer:AliG", 1e-3, "Gradient steps scaled by loss with an optional learning rate cap", needs_closure=True),
    _po("amos", "pytorch_optimizer:Amos", 0.001, "Adaptive updates with weight decay toward a target parameter scale"),
    _po("ano", "pytorch_optimizer:Ano", 0.0001, "Ano optimizer with adaptive momentum and sign based updates"),
    _po("apollo", "pytorch_optimizer:APOLLO", 0.01, "AdamW with low rank gradient projection and norm based update scaling"),
    _po("apollodqn", "pytorch_optimizer:ApolloDQN", 0.01, "Adaptive updates with a diagonal quasi-Newton preconditioner"),
    _po("po_asgd", "pytorch_optimizer:ASGD", 0.01, "Adaptive SGD with estimation of the local smoothness (curvature)"),
    _po("avagrad", "pytorch_optimizer:AvaGrad", 0.1, "Adaptive updates with a lagged second moment preconditioner"),
    _po("bcos", "pytorch_optimizer:BCOS", 0.001, "Stochastic approximation with block coordinate optimal step sizes"),
    _po("came", "pytorch_optimizer:CAME", 0.0002, "Factored adaptive updates with confidence weighted momentum"),
    _po("conda", "pytorch_optimizer:Conda", 0.001, "Adam with gradient projection in a basis derived from momentum"),
    _po("dadaptadagrad", "pytorch_optimizer:DAdaptAdaGrad", 1.0, "AdaGrad with D-Adaptation"),
    _po("dadaptadam", "pytorch_optimizer:DAdaptAdam", 1.0, "Adam with D-Adaptation V3"),
    _po("dadaptadan", "pytorch_optimizer:DAdaptAdan", 1.0, "Adan with D-Adaptation"),
    _po("dadaptlion", "pytorch_optimizer:DAdaptLion", 1.0, "Lion with D-Adaptation V3"),
    _po("dadaptsgd", "pytorch_optimizer:DAdaptSGD", 1.0, "SGD with D-Adaptation V3"),
    _po("dash", "pytorch_optimizer:DASH", 0.001, "Accelerated Shampoo with batched blocks and Newton-Denman-Beavers inverse roots"),
    _po("diffgrad", "pytorch_optimizer:DiffGrad", 0.001, "Adam updates scaled by changes between consecutive gradients"),
    _po("dualadam", "pytorch_optimizer:DualAdam", 0.001, "Adam with a decaying inverse Adam update contribution"),
    _po("emofact", "pytorch_optimizer:EmoFact", 0.001, "Factored adaptive updates with EmoNavi loss driven scaling"),
    _po("emolynx", "pytorch_optimizer:EmoLynx", 0.001, "Sign based momentum updates with EmoNavi loss driven scaling"),
    _po("emonavi", "pytorch_optimizer:EmoNavi", 0.001, "Adam style updates with loss driven momentum scaling and optional shadow weights"),
    _po("exadam", "pytorch_optimizer:EXAdam", 0.001, "Adam with adaptive cross moment corrections"),
    _po("fadam", "pytorch_optimizer:FAdam", 0.001, "Natural gradient Adam using diagonal empirical Fisher information"),
    _po("fira", "pytorch_optimizer:Fira", 0.001, "AdamW with low rank updates and full rank gradient compensation"),
    _po("flashadamw", "pytorch_optimizer:FlashAdamW", 0.001, "AdamW with grouped 8-bit optimizer states and optional master weight error correction"),
    _po("focus", "pytorch_optimizer:FOCUS", 0.01, "Sign based updates with attraction toward the running parameter average"),
    _po("fromage", "pytorch_optimizer:Fromage", 0.01, "Gradient descent scaled by the ratio of parameter and gradient norms"),
    _po("ftrl", "pytorch_optimizer:FTRL", 0.001, "Follow the Regularized Leader updates with L1 and L2 penalties"),
    _po("galore", "pytorch_optimizer:GaLore", 0.001, "AdamW with low rank gradient projection"),
    _po("grams", "pytorch_optimizer:Grams", 0.001, "Adaptive updates combining gradient signs with momentum magnitudes"),
    _po("gravity", "pytorch_optimizer:Gravity", 0.01, "Kinematic optimization with a gradient dependent velocity update"),
    _po("grokfastadamw", "pytorch_optimizer:GrokFastAdamW", 0.0001, "AdamW with amplification of slow gradient components"),
    _po("kate", "pytorch_optimizer:Kate", 0.001, "Scale invariant AdaGrad-style updates without square root normalization"),
    _po("kron", "pytorch_optimizer:Kron", 0.001, "Preconditioned SGD with Kronecker factored preconditioners"),
    _po("lamb", "pytorch_optimizer:Lamb", 0.001, "Adam updates with a trust ratio for each parameter tensor"),
    _po("laprop", "pytorch_optimizer:LaProp", 0.0004, "Adaptive updates with momentum of preconditioned gradients"),
    _po("lars", "pytorch_optimizer:LARS", 0.001, "SGD with learning rates scaled by parameter and gradient norms"),
    _po("lion", "pytorch_optimizer:Lion", 0.0001, "Sign based updates from interpolated gradient momentum"),
    _po("madgrad", "pytorch_optimizer:MADGRAD", 0.001, "Momentumized adaptive dual averaged gradient descent"),
    _po("mars", "pytorch_optimizer:MARS", 0.003, "Adaptive updates with variance reduced gradient corrections"),
    _po("msvag", "pytorch_optimizer:MSVAG", 0.01, "Adaptive momentum updates with gradient variance damping"),
    _po("po_muon", "pytorch_optimizer:Muon", 0.02, "Momentum updates with Newton-Schulz matrix orthogonalization", split="use_muon"),
    _po("muonclip", "pytorch_optimizer:MuonClip", 0.02, "Muon with per-head query/key weight clipping from the Kimi K2 report", split="use_muon"),
    _po("nero", "pytorch_optimizer:Nero", 0.01, "Neuron wise adaptive updates with optional weight constraints"),
    _po("normuon", "pytorch_optimizer:NorMuon", 0.02, "Muon updates with row wise second moment normalization", split="use_muon"),
    _po("novograd", "pytorch_optimizer:NovoGrad", 0.001, "Adaptive updates with layer wise squared gradient norms"),
    _po("padam", "pytorch_optimizer:PAdam", 0.1, "Partially adaptive Adam with a configurable second moment exponent"),
    _po("pid", "pytorch_optimizer:PID", 0.001, "SGD with proportional, integral, and derivative update terms"),
    _po("pnm", "pytorch_optimizer:PNM", 0.001, "SGD with alternating positive and negative momentum"),
    _po("prodigy", "pytorch_optimizer:Prodigy", 1.0, "Adam with distance adaptive step sizes"),
    _po("qhadam", "pytorch_optimizer:QHAdam", 0.001, "Adam with quasi-hyperbolic moment averaging"),
    _po("qhm", "pytorch_optimizer:QHM", 0.001, "SGD with quasi-hyperbolic momentum"),
    _po("racs", "pytorch_optimizer:RACS", 0.001, "Row and Column Scaled SGD"),
    _po("po_radam", "pytorch_optimizer:RAdam", 0.001, "Rectified Adam"),
    _po("ranger", "pytorch_optimizer:Ranger", 0.001, "RAdam with Lookahead and optional gradient centralization"),
    _po("rose", "pytorch_optimizer:ROSE", 0.001, "Gradient updates scaled by row and column ranges"),
    _po("sara", "pytorch_optimizer:SaRA", 1e-3, "AdamW updates on progressively refined masks of small magnitude weights"),
    _po("scalableshampoo", "pytorch_optimizer:ScalableShampoo", 0.001, "Shampoo with blockwise preconditioning and optional gradient grafting"),
    _po("schedulefreeadamw", "pytorch_optimizer:ScheduleFreeAdamW", 0.0025, "Schedule free AdamW with weighted parameter averaging", train_eval_modes=True),
    _po("schedulefreeradam", "pytorch_optimizer:ScheduleFreeRAdam", 0.0025, "Schedule free RAdam with weighted parameter averaging", train_eval_modes=True),
    _po("schedulefreesgd", "pytorch_optimizer:ScheduleFreeSGD", 1.0, "Schedule free SGD with weighted parameter averaging", train_eval_modes=True),
    _po("scion", "pytorch_optimizer:SCION", 0.001, "Norm constrained updates using linear minimization oracles"),
    _po("scionlight", "pytorch_optimizer:SCIONLight", 0.001, "Variant of SCION that stores momentum in gradient buffers"),
    _po("sgdp", "pytorch_optimizer:SGDP", 0.001, "SGD with projected updates for scale invariant weights"),
    _po("sgdsai", "pytorch_optimizer:SGDSaI", 0.01, "SGD with learning rate scaling from the initial gradient signal-to-noise ratio"),
    _po("sgdw", "pytorch_optimizer:SGDW", 0.0001, "SGD with optional decoupled weight decay"),
    _po("shampoo", "pytorch_optimizer:Shampoo", 0.001, "Stochastic tensor optimization with matrix preconditioning"),
    _po("signsgd", "pytorch_optimizer:SignSGD", 0.001, "Sign based SGD with optional momentum"),
    _po("simplifiedademamix", "pytorch_optimizer:SimplifiedAdEMAMix", 0.0001, "Adaptive updates that mix the current gradient with gradient momentum"),
    _po("sm3", "pytorch_optimizer:SM3", 0.1, "Adaptive updates with memory efficient per dimension accumulators"),
    _po("soap", "pytorch_optimizer:SOAP", 0.003, "Adam updates in Shampoo preconditioner eigenbases"),
    _po("sophiah", "pytorch_optimizer:SophiaH", 0.06, "Clipped second-order updates using Hutchinson Hessian estimates"),
    _po("spam", "pytorch_optimizer:SPAM", 0.001, "Adam with sparse update masks, gradient spike clipping, and momentum resets"),
    _po("spectralsphere", "pytorch_optimizer:SpectralSphere", 0.0003, "Matrix updates with a spectral tangent constraint", split="hidden_matrices"),
    _po("splus", "pytorch_optimizer:SPlus", 0.1, "Adaptive updates with matrix whitening and gradient momentum", train_eval_modes=True),
    _po("srmm", "pytorch_optimizer:SRMM", 0.01, "Stochastic regularized majorization-minimization with weakly convex and multi convex surrogates"),
    _po("stableadamw", "pytorch_optimizer:StableAdamW", 0.001, "AdamW with update clipping and optional low precision Kahan summation"),
    _po("stablespam", "pytorch_optimizer:StableSPAM", 0.001, "Adam with adaptive gradient scaling, spike clipping, and momentum resets"),
    _po("swats", "pytorch_optimizer:SWATS", 0.001, "Adaptive updates that switch from Adam to SGD"),
    _po("tam", "pytorch_optimizer:TAM", 0.001, "SGD with gradient momentum alignment scaling"),
    _po("tiger", "pytorch_optimizer:Tiger", 0.001, "Sign based updates with a single gradient momentum buffer"),
    _po("vsgd", "pytorch_optimizer:VSGD", 0.1, "SGD with variational gradient estimates"),
    _po("yogi", "pytorch_optimizer:Yogi", 0.01, "Adaptive updates with sign controlled second moment accumulation"),
]

_SCHEDULEFREE = [
    _sf("adamw_schedulefree", "schedulefree:AdamWScheduleFree", 0.0025, "Schedule-Free AdamW (Defazio et al. 2024), the reference implementation"),
    _sf("sgd_schedulefree", "schedulefree:SGDScheduleFree", 1.0, "Schedule-Free SGD with momentum 0.9 (Defazio et al. 2024), the reference implementation"),
    _sf("radam_schedulefree", "schedulefree:RAdamScheduleFree", 0.0025, "Schedule-Free RAdam: no warm-up, no schedule (Defazio et al.), the reference implementation"),
]

CATALOG: tuple[CatalogEntry, ...] = tuple(_PYTORCH_OPTIMIZER + _SCHEDULEFREE)

# Registered, but not trainable by the runner on a CPU as it is: listed with the reason, and
# skipped (with it) by the registry-driven training test.
_HESSIAN = "needs Hessian-vector products: a backward pass that keeps its graph (create_graph=True), which the runner's step does not take"
LIMITATIONS: dict[str, str] = {
    "adahessian": _HESSIAN,
    "sophiah": _HESSIAN,
    "sara": "updates only a mask of small-magnitude weights, for fine-tuning a trained model: from a fresh initialisation it leaves the loss unchanged (200 steps of the catalogue test)",
}

# Offered by the packages, not registered: what they need is not an optimizer over parameters.
# Each reason reads after "it": naming one is answered "optimizer NAME is left out: it REASON".
LEFT_OUT: dict[str, str] = {
    "adalomo": "takes the model, and fuses its update into the backward pass: no optimizer step of its own to time",
    "lomo": "takes the model, and fuses its update into the backward pass: no optimizer step of its own to time",
    "adammini": "takes the model (it partitions parameters by transformer block names), not parameters",
    "magma": "wraps another optimizer instance, which a name[key=value] spec cannot give",
    "bsam": "is a SAM-family wrapper that needs the size of the training set (num_data) at construction and a closure",
    "distributedmuon": "needs torch.distributed's process group (po_muon is the same algorithm on one device)",
    "demo": "is for distributed training (it exchanges compressed momentum between workers), and needs einops",
    "ranger21": "needs the length of the run (num_iterations) at construction for its built-in warm-up and warm-down",
    "lorarite": (
        "optimizes LoRA factor pairs (lora_a, lora_b in alternating order): on an ordinary network it would take each weight "
        "and its bias for the two factors of one low-rank product, and on a GRU the shapes do not multiply (a LoRA model can "
        "name it by path: pytorch_optimizer:LoRARite)"
    ),
}
