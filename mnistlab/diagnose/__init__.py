"""Find the pitfall behind a bad model: a list of findings, each with its evidence and its fix.

    >>> from mnistlab.diagnose import diagnose
    >>> findings = diagnose(model, train_set, loss_fn=nn.CrossEntropyLoss(), history=history)
    >>> findings                 # a table in Jupyter; print(findings) in a terminal
    >>> findings.to_json()       # plain data, for the grader's feedback

What diagnose looks at (only what you give it):
  model      its module tree, and one forward pass (no gradients, eval mode) on up to 512 images, in
             chunks of 128 (no new chunk after 0.3 s, so a big CNN stays fast), recorded with forward
             hooks: which layers ran in which order, and what went in and came out
  data       a mnistlab Dataset: the images go through mnistlab.train.batches, so the model sees
             exactly what train.fit feeds it (floats in [0, 1]). Or a tuple (x, y) of tensors, or a
             tensor x: these are fed to the model AS GIVEN (a uint8 tensor becomes float WITHOUT
             dividing by 255), so pass what your own training loop feeds the model.
  loss_fn    the loss (an nn.Module or F.cross_entropy & co). None means nn.CrossEntropyLoss, the
             default of train.fit, and the findings that depend on it say so.
  history    the list of dicts train.fit returns (epoch, train_loss, train_acc, test_loss, test_acc)
  optimizer  (keyword) the optimizer you trained with: its lr and weight_decay become evidence
  train_size (keyword) the number of training images; by default len(data) when data is a Dataset

It never trains and never changes the model: no gradients, every module's train/eval flag restored,
hooks removed, the random number generator untouched, nothing moved to another device.

Each check is a small function, a *detector*: it takes the measurements (a Probe) and returns a
list of Findings, or raises Skip to say what it would need. DETECTORS lists them in the order they
run, like nbgrader's preprocessors: a pipeline of small stages, each with one idea.

    output_activation        ReLU/sigmoid/... on the output before CrossEntropyLoss or MultiMarginLoss
    double_softmax           softmax (error) or log-softmax (info) before CrossEntropyLoss
    nll_without_log_softmax  NLLLoss on outputs that are not log-probabilities
    linear_stack             Linear/Conv layers with no activation between them (max-pooling at most)
    labels_vs_outputs        labels out of range, an output whose class never occurs, outputs != classes
    input_scale              first layer fed raw 0..255 (rms > 5), or off-centre (|mean| > 0.5 and > 1.5 std)
    dead_relu                ReLU units never active on the sample (>= 50% of a layer: warning; 100%: error)
    stuck_at_chance          training loss >= 90% of ln(C) for the last 3 epochs, with its causes ranked
    divergence               NaN/inf weights, outputs or losses, or an epoch's loss above 3 ln(C)
    overfitting              train accuracy >= 15 points above test (>= 25 with 1000+ images: warning)
    raw_emnist               EMNIST letters still raw (transposed, labels 1..26), read from .source

A Finding has: name, severity ("error", "warning", "info"), evidence (a dict of numbers), why, fix,
and causes (ranked [{"cause", "score"}], for stuck_at_chance and divergence). to_json() writes
{"findings": [finding, ...], "skipped": {detector: reason}}.
"""

import html
import json
import math
import textwrap
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from mnistlab import data as mdata
from mnistlab import train as mtrain

# error: this breaks training; warning: this costs accuracy; info: worth knowing
SEVERITIES = ("error", "warning", "info")

# --------------------------------------------------------------------------- findings


@dataclass
class Finding:
    """One problem found: what it is, how bad, the numbers measured, why it hurts, and the fix."""

    name: str  # short and stable, e.g. "output_activation": the grader can key on it
    severity: str  # "error", "warning" or "info"
    evidence: dict  # measured numbers, e.g. {"input_mean": 0.87, "input_std": 0.31}
    why: str  # what was seen and why it hurts, in words a student understands
    fix: str  # what to change
    causes: list = field(default_factory=list)  # ranked likely causes, best first: [{"cause": ..., "score": 0..1}]

    def __post_init__(self):
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")


class Findings(list):
    """The list of Findings diagnose returns, worst first. Prints as a table (text or HTML).

    `.skipped` maps each detector that could not run to the reason (e.g. "needs data").
    """

    def __init__(self, findings=(), skipped=None):
        super().__init__(findings)
        self.skipped = dict(skipped or {})

    def names(self):
        return [finding.name for finding in self]

    def get(self, name):
        """The finding called `name`, or None."""
        return next((finding for finding in self if finding.name == name), None)

    def to_dicts(self):
        """Plain data: a list of dicts with keys name, severity, evidence, why, fix, causes."""
        return [_plain(asdict(finding)) for finding in self]

    def to_json(self, indent=None):
        """JSON text: {"findings": [...], "skipped": {detector: reason}}. NaN/inf become "nan"/"inf"."""
        return json.dumps({"findings": self.to_dicts(), "skipped": self.skipped}, indent=indent)

    def _summary(self):
        if not self:
            return "diagnose: no problems found"
        counts = [sum(f.severity == s for f in self) for s in SEVERITIES]
        counts = [f"{n} {s}{'s' if n != 1 and s != 'info' else ''}" for n, s in zip(counts, SEVERITIES)]
        return f"diagnose: {len(self)} finding{'s' * (len(self) != 1)} ({', '.join(counts)})"

    def __str__(self):
        lines = [self._summary()]
        for finding in self:
            lines.append(f"\n[{finding.severity.upper()}] {finding.name}")
            lines.append(_wrap("evidence: " + _format_evidence(finding.evidence)))
            lines.append(_wrap("why: " + finding.why))
            if finding.causes:
                ranked = "; ".join(f"{i}. {c['cause']} ({c['score']:.2f})" for i, c in enumerate(finding.causes, 1))
                lines.append(_wrap("likely causes: " + ranked))
            lines.append(_wrap("fix: " + finding.fix))
        if self.skipped:
            lines.append("\nnot checked: " + "; ".join(f"{name} ({reason})" for name, reason in self.skipped.items()))
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self):
        colors = {"error": "#c62828", "warning": "#ef6c00", "info": "#1565c0"}
        rows = []
        for f in self:
            causes = ""
            if f.causes:
                items = "".join(f"<li>{html.escape(c['cause'])} ({c['score']:.2f})</li>" for c in f.causes)
                causes = f"<br><b>likely causes</b><ol style='margin:0'>{items}</ol>"
            evidence = "<br>".join(f"{html.escape(str(k))} = {html.escape(str(v))}" for k, v in f.evidence.items())
            rows.append(
                "<tr style='vertical-align:top'>"
                f"<td><span style='color:white;background:{colors[f.severity]};padding:1px 6px;border-radius:3px'>"
                f"{f.severity}</span></td>"
                f"<td><code>{html.escape(f.name)}</code></td>"
                f"<td style='text-align:left;white-space:nowrap'>{evidence}</td>"
                f"<td style='text-align:left'>{html.escape(f.why)}{causes}</td>"
                f"<td style='text-align:left'>{html.escape(f.fix)}</td></tr>"
            )
        table = ""
        if rows:
            columns = ("severity", "finding", "evidence", "why", "fix")
            head = "".join(f"<th style='text-align:left'>{h}</th>" for h in columns)
            table = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        skipped = ""
        if self.skipped:
            items = "; ".join(f"<code>{html.escape(n)}</code> ({html.escape(r)})" for n, r in self.skipped.items())
            skipped = f"<p style='color:#666'>not checked: {items}</p>"
        return f"<p><b>{html.escape(self._summary())}</b></p>{table}{skipped}"


def _wrap(text):
    return textwrap.fill(text, width=100, initial_indent="  ", subsequent_indent="      ")


def _format_evidence(evidence):
    return ", ".join(f"{key}={value}" for key, value in evidence.items())


def _num(x, digits=4):
    """A plain Python number with `digits` significant digits (ints and bools stay ints)."""
    if isinstance(x, torch.Tensor):
        x = x.item()
    if isinstance(x, (bool, int)):
        return int(x)
    x = float(x)
    if not math.isfinite(x) or x == 0:
        return x
    return round(x, digits - 1 - int(math.floor(math.log10(abs(x)))))


def _plain(value):
    """JSON cannot hold NaN or infinity: write them as the strings "nan", "inf", "-inf"."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


class Skip(Exception):
    """Raised by a detector that cannot run on what it was given; the message says what it needs."""


# --------------------------------------------------------------------------- the probe: what we measure once

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
FINGERPRINT_ROWS = 16  # rows of a layer's input/output kept to tell whether two layers are directly connected


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
        if out.min() >= 0 and (out.sum(1) - 1).abs().max() < 1e-3:
            return "Softmax"
        if out.max() <= 1e-6 and out.logsumexp(1).abs().max() < 1e-3:
            return "LogSoftmax"
        if out.min() >= 0 and (out == 0).float().mean() >= 0.01:
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
        part = mdata.Dataset(data.images[index], data.labels[index], data.classes, data.source)
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


CHUNK, TIME_BUDGET = 128, 0.3  # images per forward pass; seconds after which no further chunk starts


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


# --------------------------------------------------------------------------- detectors
# Each takes the Probe and returns a list of Findings (empty: nothing wrong), or raises Skip.


def _need_forward(p):
    if p.forward_error is not None:
        raise Skip("the forward pass failed")
    if p.outputs is None:
        raise Skip("needs data (a Dataset or (x, y)) for one forward pass")


def output_activation(p):
    """An activation (ReLU, sigmoid, softmax...) on the output, before a loss that wants raw scores.

    nn.CrossEntropyLoss and nn.MultiMarginLoss expect raw scores that can be any real number. A ReLU
    on the output clips every negative score to 0 with zero gradient, so a class whose score is
    negative for every image gets no gradient into its own weights: the loss cannot raise it again
    (only changes in the layers below can). Sigmoid and tanh keep the scores in a narrow range, so
    even a perfect answer keeps a loss above 0. (Softmax before CrossEntropyLoss is the detector
    double_softmax; log-softmax before MultiMarginLoss changes no margin, so it is not reported.)
    """
    if p.loss_kind is None:
        raise Skip(f"unknown loss {p.loss_name}: this checks nn.CrossEntropyLoss and nn.MultiMarginLoss")
    if p.loss_kind != "raw":
        return []  # not this detector's loss
    if p.calls is None:
        raise Skip("needs data (a Dataset or (x, y)) for one forward pass, unless the model is an nn.Sequential")
    names = p.output_activations()
    if p.loss_name == "nn.CrossEntropyLoss":
        names = [n for n in names if n not in PROBABILITIES + ("LogSoftmax",)]
    else:  # log_softmax(s) = s - logsumexp(s): every difference of two scores, so every margin, is unchanged
        names = [n for n in names if n != "LogSoftmax"]
    if not names:
        return []
    evidence = {"num_outputs": p.num_outputs}
    if p.outputs is not None and p.outputs_finite():
        out = p.outputs
        evidence.update(outputs_min=_num(out.min()), outputs_max=_num(out.max()),
                        fraction_outputs_zero=_num((out == 0).float().mean()),
                        outputs_zero_for_every_image=int((out == 0).all(0).sum()))
    chain = " then ".join(names)
    why = (
        f"The model's output passes through {chain} before {p.loss_name}{p.assumption}, which expects raw "
        "scores (any real number, negative included). "
    )
    severity, last = "error", names[-1]
    if any(n in ("ReLU", "ReLU6") for n in names):
        why += ("ReLU turns every negative score into 0, with zero gradient: a class whose score is negative for "
                "every image gets no gradient into its own weights, so the loss cannot raise it again (only changes "
                "in the layers below can), and meanwhile it loses every image to any class with a positive score. "
                "No score can go below 0 either: a class can be made unlikely only by raising the others.")
        if evidence.get("outputs_zero_for_every_image"):
            why += (f" Here {evidence['outputs_zero_for_every_image']} of the {p.num_outputs} outputs are 0 for every "
                    f"one of the {len(p.outputs)} images.")
    elif last in PROBABILITIES:
        why += ("Softmax squashes the scores into [0, 1], so the margin of 1 MultiMarginLoss asks for is reached "
                "only in the limit (probability exactly 1 on the right class, 0 on all others): the loss never "
                "settles at 0 and keeps pushing the probabilities to the extremes.")
    elif last in BOUNDED:
        low, high = BOUNDED[last]
        C = p.num_outputs or 2
        floor = math.log(1 + (C - 1) * math.exp(-(high - low)))
        why += (f"{last} keeps every score between {low:g} and {high:g}, so the scores of two classes can differ "
                f"by at most {high - low:g}: even a perfect answer keeps a loss above 0"
                + (f" (with {C} classes and nn.CrossEntropyLoss at least ln(1 + {C - 1}e^-{high - low:g}) = "
                   f"{floor:.2f})" if p.loss_name == "nn.CrossEntropyLoss" else "")
                + ", so training keeps pushing the scores against the bounds, where the gradient fades.")
    else:
        severity = "warning"
        why += (f"{chain} is not needed there: {p.loss_name} works on the raw scores of a linear layer, and "
                f"{last} restricts or bends them on the way.")
    fix = (
        f"Remove the final {chain}: the last layer should be a plain nn.Linear, whose raw scores go straight into "
        f"{p.loss_name}. Apply torch.softmax(model(x), dim=1) yourself when you want probabilities to show."
    )
    return [Finding("output_activation", severity, evidence, why, fix)]


def double_softmax(p):
    """Softmax (or log-softmax) on the output before nn.CrossEntropyLoss, which applies log-softmax itself.

    CrossEntropyLoss computes log_softmax(scores), so a softmax in the model makes it a softmax of
    probabilities: every input lies in [0, 1], so even a perfect answer keeps a large loss, and the
    gradient reaching the model passes through the first softmax's derivative, which vanishes when
    the model is confident (right or wrong). Log-softmax before it does no harm (log-softmax of
    log-probabilities changes nothing) but is redundant.
    """
    if p.loss_name != "nn.CrossEntropyLoss":
        return []  # not this detector's loss
    if p.calls is None:
        raise Skip("needs data (a Dataset or (x, y)) for one forward pass, unless the model is an nn.Sequential")
    names = p.output_activations()
    probs = [n for n in names if n in PROBABILITIES]
    evidence = {}
    if p.outputs is not None and p.outputs_finite():
        evidence["max_row_sum_minus_1"] = _num((p.outputs.sum(1) - 1).abs().max())
    C = p.num_outputs
    if probs:
        floor = math.log(1 + (C - 1) / math.e) if C else float("nan")
        evidence.update(num_outputs=C, lowest_possible_loss=_num(floor))
        why = (
            f"The model ends with {probs[-1]}, and {p.loss_name}{p.assumption} applies log-softmax again: "
            "the loss sees probabilities in [0, 1] as scores. Even a perfect answer (probability 1 on the right "
            f"class) then has a loss of ln(1 + {C - 1}/e) = {floor:.2f}. The gradient reaching the model passes "
            "through the derivative of its softmax, which vanishes when the model is confident: a confidently wrong "
            "answer is hardly corrected."
        )
        fix = (
            f"Remove the final {probs[-1]} from the model: {p.loss_name} wants raw scores. Use "
            "torch.softmax(model(x), dim=1) only when you need probabilities to show."
        )
        return [Finding("double_softmax", "error", evidence, why, fix)]
    if "LogSoftmax" in names:
        why = (
            f"The model ends with LogSoftmax, and {p.loss_name}{p.assumption} applies log-softmax again. "
            "This is harmless (log-softmax of log-probabilities returns them unchanged) but redundant."
        )
        fix = "Either remove the LogSoftmax, or keep it and use nn.NLLLoss, the loss made for log-probabilities."
        return [Finding("double_softmax", "info", evidence, why, fix)]
    return []


def nll_without_log_softmax(p):
    """nn.NLLLoss on outputs that are not log-probabilities.

    NLLLoss only picks -output[label]: it expects log-probabilities (a LogSoftmax at the end). On raw
    scores it has no lower bound, the model just makes the right score huge and the loss runs to minus
    infinity; on softmax probabilities it minimises -p instead of -log p, which learns slowly.
    """
    if p.loss_kind != "log_probs":
        return []  # not this detector's loss
    _need_forward(p)
    names = p.output_activations()
    if names and names[-1] == "LogSoftmax":
        return []
    out = p.outputs
    evidence = {"outputs_max": _num(out.max()), "max_abs_logsumexp": _num(out.logsumexp(1).abs().max())}
    if names and names[-1] in PROBABILITIES:
        why = "The model ends with Softmax but nn.NLLLoss expects log-probabilities: it minimises -p, not -log p."
    else:
        why = ("nn.NLLLoss expects log-probabilities (rows whose exp sums to 1), but these outputs are raw scores: "
               "the loss has no lower bound and can run off to minus infinity.")
    fix = "End the model with nn.LogSoftmax(dim=1), or drop any softmax and use nn.CrossEntropyLoss on raw scores."
    return [Finding("nll_without_log_softmax", "error", evidence, why, fix)]


def linear_stack(p):
    """Weight layers (Linear, Conv) stacked with no activation between them.

    Two linear maps in a row are one linear map: Linear(784, 200) then Linear(200, 10) computes
    exactly what a single Linear(784, 10) can, so the extra layer adds parameters but no power.
    Max-pooling in between changes that: the largest of a few neighbours is a (piecewise-linear)
    nonlinearity, so conv -> max-pool -> conv is not one linear map. Such stacks are reported too,
    as information, with what is true of them: each weight layer is linear, and choosing which
    neighbour wins is the only nonlinearity. Whether an activation after each layer helps is then
    a measurement (train both), not a rule.
    Measured, not guessed: in the forward pass each layer received exactly what the one before it
    produced (only reshaping, dropout, batch norm or max-pooling in between).
    """
    if p.calls is None:
        raise Skip("needs data (a Dataset or (x, y)) for one forward pass, unless the model is an nn.Sequential")
    chains, chain = [], []

    def connected(a, b):
        if p.static_order:
            return True
        if a.first_out is None or b.first_in is None or a.first_out.shape != b.first_in.shape:
            return False
        return torch.allclose(a.first_out, b.first_in, rtol=1e-5, atol=1e-6)

    for call in p.calls:
        if call.kind in CHAINABLE and chain and connected(chain[-1], call):
            chain.append(call)
            continue
        if sum(c.kind == "weight" for c in chain) >= 2:
            chains.append(chain)
        chain = [call] if call.kind in CHAINABLE else []
    if sum(c.kind == "weight" for c in chain) >= 2:
        chains.append(chain)
    if not chains:
        return []
    described, pooled, linear_pairs, pooled_pairs = [], 0, [], []
    for chain in chains:
        weights = [i for i, c in enumerate(chain) if c.kind == "weight"]
        chain = chain[weights[0] : weights[-1] + 1]  # dropout/flatten at either end are not part of the story
        pooled += any(c.kind == "max_pool" for c in chain)
        described.append(" -> ".join(c.name for c in chain))
        weights = [i for i, c in enumerate(chain) if c.kind == "weight"]
        for a, b in zip(weights, weights[1:]):  # each pair of successive weight layers: what lies between them
            pair = f"{chain[a].name} and {chain[b].name}"
            (pooled_pairs if any(c.kind == "max_pool" for c in chain[a + 1 : b]) else linear_pairs).append(pair)
    weights_in_chains = [sum(c.kind == "weight" for c in chain) for chain in chains]
    evidence = {"linear_stacks": len(chains), "stacks_with_only_max_pooling": pooled,
                "weight_layers_in_stacks": sum(weights_in_chains),
                "weight_layers": sum(c.kind == "weight" for c in p.calls),
                "pairs_composing_one_linear_map": len(linear_pairs), "pairs_with_only_max_pooling": len(pooled_pairs)}
    why = (f"{len(chains)} stack{'s' * (len(chains) > 1)} of weight layers with no activation between them: "
           f"{'; '.join(described)}.")
    if linear_pairs:
        why += (f" {'; '.join(linear_pairs)}: only linear steps between them, so each such pair computes one linear "
                "map, which a single layer could compute: the extra layer adds parameters but no power.")
    if pooled_pairs:
        why += (f" {'; '.join(pooled_pairs)}: only max-pooling between them. Max-pooling keeps the largest of a few "
                "neighbours, a piecewise-linear nonlinearity, so these layers do not collapse into one linear map; "
                "but each weight layer is linear, and which neighbour wins is the only nonlinearity. An activation "
                "after each layer is the usual design: whether it helps this model is a measurement (train both).")
    fix = "Put an activation (nn.ReLU()) after every Linear/Conv layer except the last one."
    if not linear_pairs:
        fix += " Compare the two models' accuracy before concluding that the activations matter here."
    return [Finding("linear_stack", "warning" if linear_pairs else "info", evidence, why, fix)]


def labels_vs_outputs(p):
    """Labels that do not fit the model's outputs: out of range, a class never used, or a count mismatch.

    Output k scores class k, so labels must run from 0 to (number of outputs - 1). A label outside
    that range crashes the loss (or is silently wrong elsewhere); an output whose class never occurs
    (raw EMNIST letters use 1..26, so output 0 is never right) is wasted and hints at shifted labels.
    """
    if p.labels is None or not len(p.labels):
        raise Skip("needs labels: pass a Dataset or (x, y)")
    C = p.num_outputs
    if C is None:
        raise Skip("the number of outputs is unknown (the forward pass failed)")
    labels = p.labels
    low, high = int(labels.min()), int(labels.max())
    findings = []
    if low < 0 or high >= C:
        evidence = {"label_min": low, "label_max": high, "num_outputs": C}
        why = (f"Labels run from {low} to {high} but the model has {C} outputs, which can only score labels "
               f"0..{C - 1}: nn.CrossEntropyLoss fails (on a GPU with a cryptic 'device-side assert').")
        fix = (f"Give the last layer {high + 1} outputs, or shift the labels to start at 0 (raw EMNIST letters are "
               "1..26: use mnistlab.data.fix_emnist).")
        findings.append(Finding("labels_out_of_range", "error", evidence, why, fix))
    if p.dataset is not None and C != len(p.dataset.classes):
        n = len(p.dataset.classes)
        evidence = {"num_outputs": C, "num_classes": n}
        why = (f"The model has {C} outputs but the dataset has {n} classes ({', '.join(p.dataset.classes[:3])}, ...): "
               "one output per class is the rule.")
        fix = f"Make the last layer nn.Linear(..., {n})."
        findings.append(Finding("outputs_vs_classes", "warning", evidence, why, fix))
    # Classes that have an output but never occur. Only with enough labels that it is not bad luck.
    scored = min(C, len(p.dataset.classes)) if p.dataset is not None else C
    if len(labels) >= 20 * scored and low >= 0:
        counts = torch.bincount(labels, minlength=scored)[:scored]
        missing = (counts == 0).nonzero().squeeze(1).tolist()
        if missing:
            evidence = {"outputs_never_correct": len(missing), "first_unused_label": missing[0], "num_outputs": C,
                        "labels_seen": len(labels)}
            listed = ", ".join(map(str, missing[:5])) + (", ..." if len(missing) > 5 else "")
            why = (f"Label{'s' * (len(missing) > 1)} {listed} never occur{'s' * (len(missing) == 1)} in {len(labels)} "
                   f"labels, so output{'s' * (len(missing) > 1)} {listed} can never be right: wasted, and a sign that "
                   "the labels are shifted (raw EMNIST letters are 1..26, with no 0).")
            fix = ("Make labels run 0..C-1 with C outputs: for EMNIST letters use mnistlab.data.fix_emnist and "
                   "26 outputs.")
            findings.append(Finding("class_never_occurs", "warning", evidence, why, fix))
    return findings


def input_scale(p):
    """What reaches the first layer: its scale (raw 0..255 pixels?) and its centre (inverted images?).

    PyTorch initialises a layer for inputs of roughly unit size. Pixels 0..255 make the first layer's
    outputs ~255x as large as with pixels in [0, 1] (huge steps, divergence). Inputs far off-centre
    compared with their spread (inverted MNIST: background 1, mean 0.87) give every unit a large
    offset shared by all images: the finding counts the first layer's units that are > 0 for every
    image or <= 0 for every image (behind a ReLU: linear, or dead).
    """
    _need_forward(p)
    weights = p.weight_calls()
    if not weights or weights[0].in_stats is None:
        raise Skip("no Linear/Conv layer ran")
    s = weights[0].in_stats
    evidence = {"input_mean": _num(s["mean"]), "input_std": _num(s["std"]), "input_min": _num(s["min"]),
                "input_max": _num(s["max"]), "input_rms": _num(s["rms"])}
    findings = []
    if s["rms"] > RAW_SCALE_RMS or max(abs(s["min"]), abs(s["max"])) > RAW_SCALE_MAX:
        raw = s["max"] > 100
        why = (f"The first weight layer, {weights[0].name}, receives values from {s['min']:.3g} to {s['max']:.3g} "
               f"(rms {s['rms']:.3g}){' - raw 0..255 pixels' if raw else ''}, but PyTorch initialises it for inputs "
               f"of size about 1: its outputs start about {s['rms']:.0f}x as large as for inputs of rms 1, and the "
               "gradients of its weights grow with the inputs too, so a learning rate suited to [0, 1] inputs takes "
               "steps that are far too large: training tends to diverge, or to stall once units die.")
        fix = ("Scale the pixels to [0, 1] (x / 255, as mnistlab.train.batches does) and, better, standardise "
               "(x - mean) / std.")
        findings.append(Finding("input_scale", "error", evidence, why, fix))
    elif abs(s["mean"]) > OFF_CENTRE_MEAN and abs(s["mean"]) > OFF_CENTRE_RATIO * s["std"]:
        why = (f"The first weight layer, {weights[0].name}, receives inputs with mean {s['mean']:.2f} but spread "
               f"(std) only {s['std']:.2f}: most inputs sit near the same value (e.g. inverted images, background 1). "
               "Every unit's w.x + b then carries a large offset shared by all images, next to which the part that "
               "differs from image to image is small.")
        first = weights[0]
        if first.out_ever_positive is not None and first.out_ever_non_positive is not None:
            on = (~first.out_ever_non_positive).float().mean().item()
            off = (~first.out_ever_positive).float().mean().item()
            evidence.update(first_layer_units_positive_for_every_image=_num(on),
                            first_layer_units_non_positive_for_every_image=_num(off))
            why += (f" On these {len(p.outputs)} images {on:.0%} of its units are > 0 for every image (behind a "
                    f"ReLU: a linear unit) and {off:.0%} are <= 0 for every image (behind a ReLU: a dead unit).")
        fix = ("Standardise the input: x = (x - mean) / std with the training set's mean and std "
               f"(here about ({s['mean']:.2f}, {s['std']:.2f})), e.g. as the first step of forward(); or invert "
               "the images back.")
        findings.append(Finding("input_off_centre", "warning", evidence, why, fix))
    return findings


RAW_SCALE_RMS, RAW_SCALE_MAX = 5.0, 20.0  # standardised inputs have rms ~1 and rarely exceed |x| = 10
OFF_CENTRE_MEAN, OFF_CENTRE_RATIO = 0.5, 1.5  # MNIST in [0, 1]: mean 0.13, std 0.31; inverted: 0.87, 0.31


def dead_relu(p):
    """ReLU units that are never active on the sample: dead units.

    A ReLU unit whose input is negative for every image outputs 0 and passes back zero gradient, so
    its weights stop learning: only changes in the layers before it can turn it back on (in the first
    layer, nothing can). A few are normal; most of a layer dead means the model is far smaller than
    it looks (usual causes: a learning rate too high, badly scaled or off-centre inputs).
    """
    _need_forward(p)
    if not p.outputs_finite():
        raise Skip("the outputs are NaN or infinite (see divergence)")
    layers = [(c.name, c.ever_active) for c in p.calls if c.ever_active is not None]
    if not layers:  # ReLU written as F.relu: look at what enters each weight layer but the first
        later = [c for c in p.weight_calls()[1:] if c.in_ever_active is not None]
        layers = [(f"input of {c.name}", c.in_ever_active) for c in later]
    if not layers:
        return []  # no ReLU units in this model
    fractions = {name: 1 - active.float().mean().item() for name, active in layers if len(active) > 1}
    if not fractions:
        return []
    worst = max(fractions, key=fractions.get)
    if fractions[worst] < DEAD_WARNING:
        return []
    severity = "error" if fractions[worst] >= 1.0 else "warning"
    evidence = {"images": len(p.outputs), "worst_dead_fraction": _num(fractions[worst])}
    evidence.update({f"dead_fraction[{name}]": _num(f) for name, f in fractions.items()})
    dead = {name: f for name, f in fractions.items() if f >= DEAD_WARNING}
    why = (f"{', '.join(f'{f:.0%} of {name}' for name, f in dead.items())} never turn on for any of these "
           f"{len(p.outputs)} images. A ReLU unit that is off for every training image gets zero gradient into its "
           "weights and bias, so training cannot turn it back on (only changes in the layers before it can; in the "
           "first layer nothing can): "
           + ("a layer with every unit off passes nothing on, so the model's output is the same for every one of "
              "these images (unless something bypasses that layer)."
              if severity == "error" else "the layer works as if it had that many fewer units."))
    fix = ("Standardise the inputs (mean 0, std 1), lower the learning rate, and do not put a ReLU on the output; "
           "nn.LeakyReLU cannot die if the problem persists.")
    return [Finding("dead_relu", severity, evidence, why, fix)]


DEAD_WARNING = 0.5  # a fresh or healthy MNIST network has a few % dead units; half dead is a problem


def _chance_loss(p, C):
    if p.loss_name == "nn.MultiMarginLoss":
        return (C - 1) / C  # every score equal: each wrong class violates the margin of 1 by 1
    if p.loss_name in ("nn.CrossEntropyLoss", "nn.NLLLoss"):
        return math.log(C)  # uniform guess: -ln(1/C)
    return None


def _history(p):
    if not p.history:
        raise Skip("needs history (the list train.fit returns)")
    if not isinstance(p.history, list) or not all(isinstance(row, dict) for row in p.history):
        raise Skip("history must be the list of dicts train.fit returns")
    return p.history


def stuck_at_chance(p):
    """Training stuck at chance: the loss stays at the loss of a uniform guess, ln(C), epoch after epoch.

    A loss of ln(C) is what a model scores when it gives every class the same probability: it has
    learned nothing about the images. The usual causes are ranked by the evidence: a softmax or ReLU
    on the output, weights decayed to almost 0 (weight decay too strong), weights that hardly moved
    (learning rate too small), or outputs identical for every image (a dead layer).
    """
    history = _history(p)
    C = p.num_classes
    if not C or C < 2:
        raise Skip("the number of classes is unknown: pass data")
    chance = _chance_loss(p, C)
    if chance is None:
        raise Skip(f"chance level of the loss {p.loss_name} unknown")
    losses = [row.get("train_loss", float("nan")) for row in history]
    last = history[-min(STUCK_EPOCHS, len(history)) :]
    if len(history) < 2 or not all(math.isfinite(l) for l in losses):
        return []
    if not all(row["train_loss"] >= STUCK_FRACTION * chance for row in last):
        return []
    at_chance = sum(1 for l in losses if l >= STUCK_FRACTION * chance)
    evidence = {"train_loss": _num(losses[-1]), "chance_loss": _num(chance),
                "train_acc": _num(history[-1].get("train_acc", float("nan"))), "chance_acc": _num(1 / C),
                "epochs": len(history), "epochs_at_chance": at_chance, "loss_drop": _num(losses[0] - losses[-1])}

    # ---- the usual causes, each scored 0..1 by its own evidence
    ratio = p.weight_norm_ratio()
    ratio = ratio if ratio is not None and math.isfinite(ratio) and ratio > 0 else None
    lr, decay = _optimizer_settings(p.optimizer)
    evidence["weight_norm_ratio"] = _num(ratio) if ratio is not None else float("nan")
    if lr is not None:
        evidence.update(lr=_num(lr), weight_decay=_num(decay))
    scores = {}
    # an activation on the output (softmax, ReLU) before a loss that wants raw scores starves the gradient
    squashed = []
    if p.calls is not None and p.loss_kind == "raw":
        squashed = [n for n in p.output_activations() if n != "LogSoftmax"]
    scores["activation on the output"] = 0.95 if squashed else 0.0
    # weights far below their initial size: something pulled them to 0
    s = max(0.0, min(1.0, (0.5 - ratio) / 0.4)) if ratio is not None else 0.0
    if decay is not None:
        s = 0.0 if decay == 0 else max(s, 0.9 if lr * decay >= 0.1 else s)
    scores["weight decay too strong"] = s
    # weights still at their initial size and the loss flat: the steps are too small to move them
    s = 0.0
    if ratio is not None:
        s = max(0.0, 1 - abs(math.log(ratio)) / 0.1) * (1.0 if losses[0] - losses[-1] < 0.02 * chance else 0.5)
    if lr is not None:
        s = max(s, 0.9) if lr < 1e-3 else s * 0.3
    scores["learning rate too small"] = s
    # outputs identical for every image: nothing of the image gets through (dead layer, zero weights)
    s = 0.0
    if p.outputs is not None and p.outputs_finite() and len(p.outputs) > 1:
        spread = p.outputs.std(0).max().item()
        evidence["output_std"] = _num(spread)
        s = 1.0 if spread <= 1e-6 * (1 + p.outputs.abs().max().item()) else 0.0
    scores["outputs constant for every image"] = s
    causes = [{"cause": c, "score": round(v, 2)} for c, v in sorted(scores.items(), key=lambda kv: -kv[1]) if v > 0]
    fixes = {
        "activation on the output": f"remove the {' and '.join(squashed)} at the end of the model "
                                    "(see output_activation, double_softmax)",
        "weight decay too strong": "lower weight_decay (e.g. 10x-1000x; lr x weight_decay should be far below 1)",
        "learning rate too small": "raise the learning rate (10x at a time; SGD on MNIST likes ~0.1)",
        "outputs constant for every image": "find the dead layer (see dead_relu, output_activation) and remove "
                                            "the ReLU on the output",
    }
    train_acc = history[-1].get("train_acc")
    why = (f"The training loss is still {losses[-1]:.3f} after {len(history)} epochs, {losses[-1] / chance:.0%} of "
           f"the chance level {chance:.3f} (= the loss of giving all {C} classes the same score): by its loss, the "
           "model is barely better than a uniform guess"
           + (f" (train accuracy {train_acc:.1%}, chance {1 / C:.1%})." if isinstance(train_acc, (int, float))
              and math.isfinite(train_acc) else "."))
    if causes:
        fix = "Most likely first: " + "; ".join(f"{i}. {fixes[c['cause']]}" for i, c in enumerate(causes, 1)) + "."
    else:
        fix = ("None of the usual causes shows clearly: check that the labels match the images, that the loss gets "
               "raw scores, and try a 10x larger learning rate.")
    return [Finding("stuck_at_chance", "error", evidence, why, fix, causes)]


STUCK_EPOCHS, STUCK_FRACTION = 3, 0.9  # the last 3 epochs all at 90% of the chance loss or more


def _optimizer_settings(optimizer):
    """(lr, weight_decay) of an optimizer (largest over its parameter groups), or (None, None)."""
    if optimizer is None:
        return None, None
    groups = getattr(optimizer, "param_groups", None)
    if not groups:
        return None, None
    lr = max(float(g.get("lr", 0.0)) for g in groups)
    decay = max(float(g.get("weight_decay", 0.0)) for g in groups)
    return lr, decay


def divergence(p):
    """Divergence: NaN or infinite numbers, or a loss that explodes.

    When a step is too large the loss overshoots, the next gradient is larger still, and within a few
    steps the numbers overflow to inf and NaN. After that the weights are NaN and the model is lost:
    train again, from scratch, with smaller steps or better scaled inputs.
    """
    rows = p.history if isinstance(p.history, list) else []
    losses = [row.get("train_loss") for row in rows if isinstance(row, dict) and row.get("train_loss") is not None]
    bad_params = sum(int((~torch.isfinite(t.detach())).sum()) for t in p.model.parameters() if t.is_floating_point())
    bad_outputs = int((~torch.isfinite(p.outputs)).sum()) if p.outputs is not None else 0
    bad_losses = sum(1 for l in losses if not math.isfinite(l))
    C = p.num_classes
    chance = _chance_loss(p, C) if C and C > 1 else None
    exploding = chance is not None and bad_losses == 0 and losses and max(losses) > EXPLODING * chance
    if not (bad_params or bad_outputs or bad_losses or exploding):
        return []
    evidence = {"non_finite_parameters": bad_params, "non_finite_outputs": bad_outputs, "non_finite_losses": bad_losses}
    if losses:
        evidence.update(first_train_loss=_num(losses[0]), max_train_loss=_num(max(losses)),
                        last_train_loss=_num(losses[-1]))
    if chance is not None:
        evidence["chance_loss"] = _num(chance)
    lr, _ = _optimizer_settings(p.optimizer)
    if lr is not None:
        evidence["lr"] = _num(lr)
    rms = None
    if p.calls is not None and p.weight_calls() and p.weight_calls()[0].in_stats is not None:
        rms = p.weight_calls()[0].in_stats["rms"]
        evidence["input_rms"] = _num(rms)
    scores = {"learning rate too high": 0.5 if lr is None else (0.9 if lr >= 1 else 0.6 if lr >= 0.3 else 0.2)}
    if rms is not None:
        scores["inputs not normalised"] = 0.9 if rms > RAW_SCALE_RMS else 0.1
    causes = [{"cause": c, "score": v} for c, v in sorted(scores.items(), key=lambda kv: -kv[1])]
    what = []
    if bad_params:
        what.append(f"{bad_params} model parameters are NaN/inf")
    if bad_outputs:
        what.append(f"{bad_outputs} outputs are NaN/inf")
    if bad_losses:
        what.append(f"{bad_losses} epochs have a NaN/inf loss")
    if exploding:
        fell_back = losses[-1] < max(losses) / 10
        what.append(f"the training loss reached {max(losses):.3g}, over {EXPLODING}x the chance level {chance:.3g}"
                    + (" (it fell back later: not a recovery if units died on the way, see dead_relu)"
                       if fell_back else ""))
    why = ("Training diverged: " + "; ".join(what) + ". The usual mechanism: a step too large overshoots, the next "
           "gradients are larger still, and the numbers grow until they overflow.")
    fix = ("Rebuild the model (NaN weights cannot recover) and train" if bad_params else "Train again") + (
        " with a 10x smaller learning rate; make sure inputs are scaled to [0, 1] or standardised.")
    return [Finding("divergence", "error", evidence, why, fix, causes)]


EXPLODING = 3  # an epoch's mean training loss above 3x the chance loss: no healthy run gets there


def overfitting(p):
    """Overfitting: training accuracy far above test accuracy.

    A model that scores much better on the images it trained on than on new ones has fit its training
    set more closely than what carries over to new images. With a small training set (150 images)
    some gap is expected, so it is only information there; more data, augmentation, weight decay or a
    smaller model usually narrow the gap. The epoch to stop at is chosen on a validation split, not
    on the test set.
    """
    history = _history(p)
    last = history[-1]
    if "test_acc" not in last or "train_acc" not in last:
        raise Skip("needs test accuracy in the history: train.fit(model, train, test)")
    gap = last["train_acc"] - last["test_acc"]
    if not gap >= OVERFIT_INFO:
        return []
    best = max((row for row in history if "test_acc" in row), key=lambda row: row["test_acc"])
    evidence = {"train_acc": _num(last["train_acc"]), "test_acc": _num(last["test_acc"]), "gap": _num(gap),
                "best_test_acc": _num(best["test_acc"]), "best_epoch": best.get("epoch", history.index(best) + 1)}
    size = ""
    if p.train_size is not None:
        evidence["train_size"] = p.train_size
        size = f" with {p.train_size} training images{' (' + p.train_size_from + ')' if p.train_size_from else ''}"
        if p.train_size < SMALL_TRAIN:
            size += ", a small training set where some gap is expected"
    # With a small training set a large gap is expected (information); with plenty of data it is a problem.
    small = p.train_size is not None and p.train_size < SMALL_TRAIN
    severity = "warning" if gap >= OVERFIT_WARNING and not small else "info"
    why = (f"Train accuracy {last['train_acc']:.1%} vs test {last['test_acc']:.1%} (a gap of {gap:.1%}){size}: "
           "the model does much better on the images it trained on than on new ones.")
    fix = ("More training data, data augmentation, weight decay, or a smaller model. To stop early, choose the epoch "
           "on a validation split carved from the training data (mnistlab.data.split_validation), not on the test "
           f"set: the best test accuracy here (epoch {evidence['best_epoch']}) was picked on the test set, so it "
           "overstates what the model would score on new images.")
    return [Finding("overfitting", severity, evidence, why, fix)]


OVERFIT_INFO, OVERFIT_WARNING, SMALL_TRAIN = 0.15, 0.25, 1000


def raw_emnist(p):
    """EMNIST letters used raw: images stored transposed and labels 1..26, as the dataset ships them.

    Raw EMNIST letters read sideways and are labelled 1..26 with an unused class 0 "N/A". A fully
    connected model trained from scratch learns the transposed images just as well (a fixed shuffle
    of pixels), but plots read sideways, flips and rotations in augmentation mean something else,
    and label k is the (k-1)-th letter, an off-by-one waiting to happen.
    """
    if p.dataset is None:
        raise Skip("needs a mnistlab Dataset (its .source says if it is raw EMNIST)")
    if mdata.EMNIST_RAW not in p.dataset.source:
        return []
    labels = p.dataset.labels
    evidence = {"label_min": int(labels.min()), "label_max": int(labels.max()), "num_classes": len(p.dataset.classes)}
    if p.num_outputs is not None:
        evidence["num_outputs"] = p.num_outputs
    why = (f"This is raw EMNIST letters ({p.dataset.source!r}): images transposed (they read sideways) and labels "
           f"{evidence['label_min']}..{evidence['label_max']} with class 0 'N/A' unused.")
    fix = "ds = mnistlab.data.fix_emnist(ds): upright images, labels 0..25; then give the model 26 outputs."
    return [Finding("raw_emnist", "warning", evidence, why, fix)]


DETECTORS = [
    output_activation,
    double_softmax,
    nll_without_log_softmax,
    linear_stack,
    labels_vs_outputs,
    input_scale,
    dead_relu,
    stuck_at_chance,
    divergence,
    overfitting,
    raw_emnist,
]


# --------------------------------------------------------------------------- diagnose


def diagnose(model, data=None, loss_fn=None, history=None, *, optimizer=None, train_size=None, sample=512):
    """Look for the usual pitfalls in `model` (and its data, loss and training history).

    Returns Findings: a list of Finding(name, severity, evidence, why, fix, causes), worst first, which
    shows as a table in Jupyter and serialises with .to_json(). See the module docstring for what each
    argument may be. `sample` is how many images the forward pass uses (evenly spaced over the data).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch nn.Module, got {type(model).__name__}")
    loss_name, loss_kind = _loss_kind(loss_fn)
    probe = Probe(model, loss_fn, loss_name, loss_kind, loss_fn is None, history=history, optimizer=optimizer)
    if data is not None:
        probe.x, probe.labels, probe.dataset = _sample(model, data, sample)
        try:
            probe.outputs, probe.calls = _forward(model, probe.x)
        except Exception as error:  # a model that cannot take the data is itself the finding
            probe.forward_error = f"{type(error).__name__}: {error}"
    if probe.calls is None:  # no data, or the forward pass failed: an nn.Sequential still shows its order
        probe.calls = _static_calls(model)
        probe.static_order = probe.calls is not None
    if train_size is not None:
        probe.train_size, probe.train_size_from = int(train_size), None
    elif isinstance(data, mdata.Dataset):
        probe.train_size, probe.train_size_from = len(data), "counted as len(data)"

    findings, skipped = [], {}
    if probe.forward_error is not None:
        shape = list(probe.x.shape)
        findings.append(Finding(
            "forward_failed", "error", {"batch_size": shape[0], "input_dims": len(shape)},
            f"The model could not run on a batch of shape {shape}: {probe.forward_error}",
            "A model that starts with nn.Linear needs nn.Flatten() first; a Conv2d model needs input "
            "[batch, channels, 28, 28].",
        ))
    for detector in DETECTORS:
        try:
            findings += detector(probe)
        except Skip as reason:
            skipped[detector.__name__] = str(reason)
        except Exception as error:  # one broken check must not hide the others' findings
            skipped[detector.__name__] = f"detector failed: {type(error).__name__}: {error}"
    findings.sort(key=lambda f: SEVERITIES.index(f.severity))  # stable: detectors' order within a severity
    return Findings(findings, skipped)
