"""The probe: what diagnose measures once (one forward pass with hooks) for every detector to read.

No lesson teaches this file; it is how diagnose sees a model. _forward runs the sample through the
model in eval mode, without gradients, and records each leaf module that ran (a Call: what went in,
what came out, which ReLU units ever turned on). Probe holds those Calls with the model, the loss,
the labels and the history, plus small measurements several detectors share (the output's last
activation, the weights' size against their initial size). The layer-kind tuples below say which
PyTorch modules count as weight layers, linear steps, max-pooling or activations.
"""

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mnistlab import data as mdata
from mnistlab import train as mtrain
from mnistlab.diagnose.findings import Skip
from mnistlab.diagnose.settings import CHUNK, FINGERPRINT_ROWS, LOG_PROBS_MAX, RELU_ZEROS, SUMS_TO_ONE, TIME_BUDGET

WEIGHT_LAYERS = (nn.Linear, nn.Bilinear, nn.modules.conv._ConvNd)
# Layers that compute a linear (affine) function of their input in eval mode: between two weight
# layers they add no nonlinearity, so the two still collapse into one linear map.
LINEAR_IN_EVAL = (
    nn.Flatten, nn.Unflatten, nn.Identity, nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm,
    nn.modules.pooling._AvgPoolNd, nn.modules.pooling._AdaptiveAvgPoolNd,
)
# Max-pooling is a nonlinearity (piecewise linear: the largest of a few neighbours), not an activation of each
# unit: linear_stack reports weight layers with only max-pooling between them, and says that they are not linear.
MAX_POOLS = (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd)
ACTIVATIONS = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardsigmoid, nn.Hardswish, nn.Softplus, nn.Softsign, nn.LogSigmoid,
    nn.Threshold, nn.Softmax, nn.LogSoftmax, nn.Softmin, nn.Softmax2d,
)
DYING = (nn.ReLU, nn.ReLU6)  # units that output exactly 0, with zero gradient, for every negative input
NON_NEGATIVE = ("ReLU", "ReLU6", "Sigmoid", "Softplus", "Hardsigmoid")  # activations whose output is >= 0
PROBABILITIES = ("Softmax", "Softmin", "Softmax2d")
BOUNDED = {"Sigmoid": (0, 1), "Tanh": (-1, 1), "Hardtanh": (-1, 1), "Hardsigmoid": (0, 1), "Softsign": (-1, 1)}
CHAINABLE = ("weight", "linear", "max_pool")  # kinds of call a stack of layers without activation may contain


@dataclass
class Call:
    """One leaf module that ran during the forward pass (a module used twice gives two calls)."""

    name: str  # e.g. "3 (Linear)" or "fc1 (Linear)"
    module: nn.Module
    first_in: torch.Tensor = None  # first rows of the input, flattened per row (weight/linear layers only)
    first_out: torch.Tensor = None
    moments: dict = None  # n, sum, sumsq, min, max of the input (the first weight layer only)
    ever_active: torch.Tensor = None  # per unit: positive for at least one image (ReLU modules)
    in_ever_active: torch.Tensor = None  # per input unit of a weight layer, when its input is >= 0
    out_ever_positive: torch.Tensor = None  # first weight layer: per output unit, > 0 for at least one image
    out_ever_non_positive: torch.Tensor = None  # first weight layer: per output unit, <= 0 for at least one image

    @property
    def in_stats(self):
        """mean, std, min, max and rms of the input, from the moments."""
        m = self.moments
        if not m:
            return None
        mean = m["sum"] / m["n"]
        variance = max(m["sumsq"] / m["n"] - mean**2, 0.0)
        rms = math.sqrt(m["sumsq"] / m["n"])
        return {"mean": mean, "std": math.sqrt(variance), "min": m["min"], "max": m["max"], "rms": rms}

    @property
    def kind(self):
        if isinstance(self.module, WEIGHT_LAYERS):
            return "weight"
        if isinstance(self.module, LINEAR_IN_EVAL):
            return "linear"
        if isinstance(self.module, MAX_POOLS):
            return "max_pool"
        if isinstance(self.module, ACTIVATIONS):
            return "activation"
        return "other"


@dataclass
class Probe:
    """Everything the detectors look at, measured once by diagnose()."""

    model: nn.Module
    loss_fn: object = None
    loss_name: str = "nn.CrossEntropyLoss"
    loss_kind: str = "raw"  # "raw" (scores), "log_probs" (NLLLoss), or None (unknown loss)
    loss_assumed: bool = True  # no loss_fn given: nn.CrossEntropyLoss assumed
    dataset: object = None  # the mnistlab Dataset, when one was given
    x: torch.Tensor = None  # the sample fed to the model
    labels: torch.Tensor = None  # all labels given (CPU)
    calls: list = None  # Calls in execution order; None without a forward pass
    static_order: bool = False  # calls come from an nn.Sequential's order, not a forward pass
    outputs: torch.Tensor = None  # model(x), float, CPU
    forward_error: str = None
    history: list = None
    optimizer: object = None
    train_size: int = None
    train_size_from: str = None

    # ---- derived measurements shared by several detectors

    @property
    def num_outputs(self):
        if self.outputs is not None and self.outputs.dim() == 2:
            return self.outputs.shape[1]
        last = [m for m in self.model.modules() if isinstance(m, nn.Linear)]
        return last[-1].out_features if last else None

    @property
    def num_classes(self):
        """Classes the labels actually use when known, else the number of outputs."""
        if self.labels is not None and len(self.labels):
            return int(self.labels.unique().numel())
        if self.dataset is not None:
            return len(self.dataset.classes)
        return self.num_outputs

    @property
    def assumption(self):
        if not self.loss_assumed:
            return ""
        return " (no loss_fn given: assuming nn.CrossEntropyLoss, the default of train.fit)"

    def weight_calls(self):
        return [c for c in self.calls if c.kind == "weight"]

    def outputs_finite(self):
        return self.outputs is not None and bool(torch.isfinite(self.outputs).all())

    def output_activations(self):
        """Activations applied after the last weight layer, e.g. ["ReLU", "Softmax"].

        Read from the modules that ran after the last nn.Linear/nn.Conv2d (checked against the output
        itself), or, for activations written as functions (F.relu, torch.softmax) that hooks cannot
        see, recognised from the output: rows summing to 1 = softmax; rows whose exp sums to 1 =
        log-softmax; all >= 0 with exact zeros = ReLU.
        """
        signature = self.output_signature()
        if self.calls is None:
            return []
        weights = [i for i, c in enumerate(self.calls) if c.kind == "weight"]
        after = self.calls[weights[-1] + 1 :] if weights else []
        names = [type(c.module).__name__ for c in after if c.kind == "activation"]
        if names and self.outputs_finite():  # check the modules against the output they should have made
            last, out = names[-1], self.outputs
            if last in PROBABILITIES + ("LogSoftmax",):
                made_it = signature == ("Softmax" if last in PROBABILITIES else "LogSoftmax")
            elif last in NON_NEGATIVE:
                made_it = bool(out.min() >= 0)
            else:
                made_it = True
            if not made_it:
                names = []  # those modules ran after the last layer but did not produce the output
        if not names and signature is not None:
            names = [signature]
        return names

    def output_signature(self):
        """"Softmax", "LogSoftmax", "ReLU" or None, recognised from the output numbers alone."""
        out = self.outputs
        if out is None or out.dim() != 2 or not self.outputs_finite() or out.shape[1] < 2:
            return None
        if out.min() >= 0 and (out.sum(1) - 1).abs().max() < SUMS_TO_ONE:
            return "Softmax"
        if out.max() <= LOG_PROBS_MAX and out.logsumexp(1).abs().max() < SUMS_TO_ONE:
            return "LogSoftmax"
        if out.min() >= 0 and (out == 0).float().mean() >= RELU_ZEROS:
            return "ReLU"
        return None

    def weight_norm_ratio(self):
        """||weights|| / the norm PyTorch's default init gives them (all Linear and Conv layers together).

        nn.Linear and nn.Conv2d start with weights ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), whose
        expected squared norm is numel / (3 fan_in). Training usually grows weights (ratio > 1); a ratio
        far below 1 means something pulled them towards 0, typically weight decay.
        """
        actual = expected = 0.0
        for module in self.model.modules():
            if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
                weight = module.weight.detach()
                fan_in = weight[0].numel()
                actual += weight.float().pow(2).sum().item()
                expected += weight.numel() / (3 * fan_in)
        return math.sqrt(actual / expected) if expected else None


def _loss_kind(loss_fn):
    """(name, kind) of a loss: kind "raw" takes raw scores, "log_probs" takes log-probabilities."""
    if loss_fn is None:
        return "nn.CrossEntropyLoss", "raw"
    table = [
        ((nn.CrossEntropyLoss, F.cross_entropy), "CrossEntropyLoss", "raw"),
        ((nn.MultiMarginLoss, F.multi_margin_loss), "MultiMarginLoss", "raw"),
        ((nn.NLLLoss, F.nll_loss), "NLLLoss", "log_probs"),
    ]
    for kinds, name, kind in table:
        module_type, function = kinds
        if isinstance(loss_fn, module_type) or loss_fn is function:
            return f"nn.{name}", kind
    return getattr(loss_fn, "__name__", type(loss_fn).__name__), None


def _model_device(model):
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _sample(model, data, sample):
    """(x, all labels, dataset): up to `sample` evenly spaced images, as the model receives them."""
    device = _model_device(model)
    if hasattr(data, "__len__") and len(data) == 0:
        raise ValueError("data is empty: pass a Dataset or (x, y) with at least one image")
    if isinstance(data, mdata.Dataset):
        # Evenly spaced, not the first `sample`: a dataset sorted by label still gives every class.
        index = torch.linspace(0, len(data) - 1, min(sample, len(data))).long()
        part = mdata.derive(data, images=data.images[index], labels=data.labels[index])
        x, _ = next(mtrain.batches(part, batch_size=len(part), device=device))
        return x, data.labels, data
    if isinstance(data, torch.Tensor):
        data = (data, None)
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        x, y = data
        if y is not None and (not isinstance(y, torch.Tensor) or len(y) != len(x)):
            raise ValueError(f"data=(x, y) needs y to be a tensor with one label per row of x ({len(x)} rows)")
        index = torch.linspace(0, len(x) - 1, min(sample, len(x))).long()
        x_part = x[index.to(x.device)].to(device)
        x_part = x_part.float() if not x_part.is_floating_point() else x_part  # as given: no /255
        return x_part, (y.detach().cpu().long() if y is not None else None), None
    raise TypeError(
        f"data must be a mnistlab Dataset (e.g. data.load('mnist')), a tuple (x, y) of tensors, or a tensor x; "
        f"got {type(data).__name__}"
    )


def _rows(t):
    return t[:FINGERPRINT_ROWS].detach().reshape(min(len(t), FINGERPRINT_ROWS), -1).float().clone()


def _per_unit_any(values):
    """values [B, units] or [B, channels, ...] -> [units]: true where any image (and position) is > 0."""
    if values.dim() == 1:
        return (values.max() > 0).reshape(1).cpu()
    dims = [d for d in range(values.dim()) if d != 1]
    return (values.amax(dim=dims) > 0).cpu()


def _forward(model, x):
    """The forward pass, in eval mode with hooks on every leaf module. Returns (outputs, calls).

    Runs x in chunks of CHUNK images and stops early once TIME_BUDGET seconds have passed, so that a
    large CNN costs a fraction of a second too (the evidence says how many images were used).
    Leaves the model exactly as it was: gradients off, train/eval flags restored module by module,
    hooks removed and the random number generator state restored, even if the forward pass fails.
    """
    calls, current, hooks, outputs = [], [], [], []
    flags = {module: module.training for module in model.modules()}

    def record(name, module, inputs, output):
        uses = sum(c.module is module for c in current) + 1
        call = Call(f"{name} ({type(module).__name__})" + (f" call {uses}" if uses > 1 else ""), module)
        current.append(call)
        x_in = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
        if not isinstance(output, torch.Tensor) or x_in is None:
            return
        x_in, output = x_in.detach(), output.detach()
        if call.kind in CHAINABLE:
            call.first_in, call.first_out = _rows(x_in), _rows(output)
        if call.kind == "weight":
            if not any(c.kind == "weight" for c in current[:-1]):  # the first weight layer: what it is fed
                values = x_in.double()  # float64 sums: exact enough for 0..255 pixels too
                call.moments = {"n": values.numel(), "sum": values.sum().item(), "sumsq": values.pow(2).sum().item(),
                                "min": values.min().item(), "max": values.max().item()}
                if output.dim() >= 2:
                    units = output.reshape(len(output), -1)
                    call.out_ever_positive = (units > 0).any(0).cpu()
                    call.out_ever_non_positive = (units <= 0).any(0).cpu()
            if x_in.dim() >= 2 and x_in.min() >= 0:
                call.in_ever_active = _per_unit_any(x_in)
        if isinstance(module, DYING) and output.dim() >= 2:
            call.ever_active = _per_unit_any(output)

    leaves = [(name or type(m).__name__, m) for name, m in model.named_modules() if not any(True for _ in m.children())]
    devices = [x.device] if x.device.type == "cuda" else []
    started = time.perf_counter()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            for name, module in leaves:
                hooks.append(module.register_forward_hook(lambda m, i, o, name=name: record(name, m, i, o)))
            model.eval()
            for first in range(0, len(x), CHUNK):
                if first and time.perf_counter() - started > TIME_BUDGET:
                    break
                current.clear()
                out = model(x[first : first + CHUNK])
                if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
                    out = out[0]  # e.g. (scores, features): the scores come first
                if not isinstance(out, torch.Tensor):
                    raise TypeError(f"the model returned {type(out).__name__}, not a tensor of class scores")
                if not first:
                    calls = list(current)
                elif not _merge(calls, current):
                    break  # this chunk took another path through the model: keep what we have
                outputs.append(out.detach().float().cpu())
    finally:
        for hook in hooks:
            hook.remove()
        for module, flag in flags.items():
            module.training = flag
    return torch.cat(outputs), calls



def _merge(calls, more):
    """Add a later chunk's measurements to the first chunk's calls (same modules, same order)."""
    if [c.module for c in calls] != [c.module for c in more]:
        return False
    for call, extra in zip(calls, more):
        for unit in ("ever_active", "in_ever_active", "out_ever_positive", "out_ever_non_positive"):
            a, b = getattr(call, unit), getattr(extra, unit)
            if a is not None and b is not None and a.shape == b.shape:
                setattr(call, unit, a | b)
        if call.moments and extra.moments:
            m, e = call.moments, extra.moments
            call.moments = {"n": m["n"] + e["n"], "sum": m["sum"] + e["sum"], "sumsq": m["sumsq"] + e["sumsq"],
                            "min": min(m["min"], e["min"]), "max": max(m["max"], e["max"])}
    return True


def _static_calls(model):
    """Without data: the leaf modules of an nn.Sequential in order (which is the order they run)."""
    if not isinstance(model, nn.Sequential):
        return None
    leaves = [(name, m) for name, m in model.named_modules() if not any(True for _ in m.children())]
    return [Call(f"{name} ({type(m).__name__})", m) for name, m in leaves]


def _need_forward(p):
    """For a detector that reads the forward pass: Skip, saying why, when there was none."""
    if p.forward_error is not None:
        raise Skip("the forward pass failed")
    if p.outputs is None:
        raise Skip("needs data (a Dataset or (x, y)) for one forward pass")
