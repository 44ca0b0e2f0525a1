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
    raw_emnist               EMNIST letters still raw (transposed, labels 1..26), read from .raw_emnist

A Finding has: name, severity ("error", "warning", "info"), evidence (a dict of numbers), why, fix,
and causes (ranked [{"cause", "score"}], for stuck_at_chance and divergence). to_json() writes
{"findings": [finding, ...], "skipped": {detector: reason}}.

Taught in 01 (raw EMNIST letters), 02 (stuck at chance), 03 (a linear stack, overfitting) and 05 (the
pitfalls); course.check_accuracy runs it on a model that misses its threshold,
for the grader's feedback. The package, one idea per file:

    settings.py            every threshold and knob the detectors use, each with why that value: read it first
    findings.py            Finding, Findings (the table it prints), SEVERITIES, Skip
    probe.py               the one forward pass with hooks, and the Probe the detectors read
    detectors_outputs.py   output_activation, double_softmax, nll_without_log_softmax, labels_vs_outputs
    detectors_layers.py    linear_stack, input_scale, dead_relu, raw_emnist
    detectors_training.py  stuck_at_chance, divergence, overfitting
    __init__.py            DETECTORS (the order they run in) and diagnose() itself
"""

# The thresholds: one commented block, in settings.py, each number with why that value. It is a module of
# its own, not a block here, because the detector files import it: from __init__.py they would import the
# package that is still importing them (a circular import). Named here too (mnistlab.diagnose.DEAD_WARNING),
# but the detectors read settings.py: to try another value, change it there.
from mnistlab.diagnose.settings import (  # noqa: F401
    CHUNK, CONNECTED_ATOL, CONNECTED_RTOL, CONSTANT_OUTPUTS, DEAD_WARNING, EXPLODING, FELL_BACK, FINGERPRINT_ROWS,
    FLAT_LOSS, HIGH_LR, LABELS_PER_OUTPUT, LOG_PROBS_MAX, OFF_CENTRE_MEAN, OFF_CENTRE_RATIO, OVERFIT_INFO,
    OVERFIT_WARNING, RAW_PIXELS, RAW_SCALE_MAX, RAW_SCALE_RMS, RELU_ZEROS, SAMPLE, SMALL_LR, SMALL_TRAIN, STRONG_DECAY,
    STUCK_EPOCHS, STUCK_FRACTION, SUMS_TO_ONE, TIME_BUDGET, VERY_HIGH_LR,
)

from torch import nn

from mnistlab import data as mdata
from mnistlab.diagnose.detectors_layers import dead_relu, input_scale, linear_stack, raw_emnist
from mnistlab.diagnose.detectors_outputs import (double_softmax, labels_vs_outputs, nll_without_log_softmax,
                                                 output_activation)
from mnistlab.diagnose.detectors_training import divergence, overfitting, stuck_at_chance
from mnistlab.diagnose.findings import SEVERITIES, Finding, Findings, Skip  # noqa: F401
from mnistlab.diagnose.probe import (  # noqa: F401
    ACTIVATIONS, BOUNDED, CHAINABLE, DYING, LINEAR_IN_EVAL, MAX_POOLS, NON_NEGATIVE, PROBABILITIES, WEIGHT_LAYERS,
    Call, Probe, _forward, _loss_kind, _sample, _static_calls,
)

# The detectors in the order they run; within one severity, findings are listed in this order.
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


def diagnose(model, data=None, loss_fn=None, history=None, *, optimizer=None, train_size=None, sample=SAMPLE):
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
