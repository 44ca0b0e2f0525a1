"""mnistlab.diagnose: every detector on a positive and a negative case, and the seeds' own models.

The seeds' models are built and briefly trained on the offline stand-ins (a few epochs), so the
whole file stays well under a minute on one CPU core.
"""

import json
import math
import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

os.environ.setdefault("MNISTLAB_DATA_SOURCE", "offline")
os.environ.setdefault("MNISTLAB_QUIET", "1")

from mnistlab import data, train  # noqa: E402
from mnistlab.diagnose import DETECTORS, Finding, Findings, diagnose  # noqa: E402

torch.set_num_threads(1)


# --------------------------------------------------------------------------- data and models


@pytest.fixture(scope="module")
def mnist():
    return data.load("mnist", "train"), data.load("mnist", "test")


@pytest.fixture(scope="module")
def emnist():
    return data.load("emnist-letters", "train"), data.load("emnist-letters", "test")


def mlp(out_relu=False, normalise=None):
    """784-200-100-10 ReLU network; out_relu puts a ReLU after the last layer (the negative-MNIST seed)."""
    layers = [nn.Flatten(), nn.Linear(784, 200), nn.ReLU(), nn.Linear(200, 100), nn.ReLU(), nn.Linear(100, 10)]
    if normalise is not None:
        layers.insert(0, Standardise(*normalise))
    if out_relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class Standardise(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, x):
        return (x - self.mean) / self.std


def keras_cnn(fixed):
    """The colored-MNIST Keras CNN ported to PyTorch (narrower, to train fast): Conv, Conv, MaxPool,
    Dropout, Flatten, Dense, Dropout, Dense. The seed has no activations in between and ReLU + softmax
    on the output; the fixed version has ReLUs in between and raw scores out."""
    def act():
        return [nn.ReLU()] if fixed else []

    layers = [nn.Conv2d(3, 8, 3), *act(), nn.Conv2d(8, 16, 3), *act(), nn.MaxPool2d(2), nn.Dropout(0.25),
              nn.Flatten(), nn.Linear(16 * 12 * 12, 64), *act(), nn.Dropout(0.5), nn.Linear(64, 10)]
    if not fixed:
        layers += [nn.ReLU(), nn.Softmax(dim=1)]
    return nn.Sequential(*layers)


class FunctionalMLP(nn.Module):
    """A custom module whose activations are functions (invisible to hooks)."""

    def __init__(self, out=None, hidden_act=True):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(784, 64), nn.Linear(64, 10)
        self.out, self.hidden_act = out, hidden_act

    def forward(self, x):
        h = self.fc1(x.flatten(1))
        scores = self.fc2(F.relu(h) if self.hidden_act else h)
        if self.out == "relu":
            return F.relu(scores)
        if self.out == "softmax":
            return torch.softmax(scores, dim=1)
        if self.out == "log_softmax":
            return F.log_softmax(scores, dim=1)
        return scores


def fit(model, train_set, test_set, epochs, lr=0.1, weight_decay=0.0, adam=False, seed=0):
    train.seed_everything(seed)
    if adam:
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, weight_decay=weight_decay)
    history = train.fit(model, train_set, test_set, optimizer=optimizer, epochs=epochs, device="cpu", quiet=True)
    return history, optimizer


def serious(findings):
    return [f.name for f in findings if f.severity in ("error", "warning")]


def logistic(outputs=10):
    return nn.Sequential(nn.Flatten(), nn.Linear(784, outputs))


def seeded(make, seed=0):
    torch.manual_seed(seed)
    return make()


# --------------------------------------------------------------------------- the seeds' models


@pytest.fixture(scope="module")
def negative_mnist(mnist):
    train_set, test_set = (data.negative(ds) for ds in mnist)
    torch.manual_seed(0)
    seed = mlp(out_relu=True)
    history, _ = fit(seed, train_set, test_set, epochs=6)  # its ReLUs die as it trains: >= 55% dead by epoch 6
    torch.manual_seed(0)
    fixed = mlp(normalise=(0.87, 0.31))
    fixed_history, _ = fit(fixed, train_set, test_set, epochs=4)
    return train_set, (seed, history), (fixed, fixed_history)


def test_negative_mnist_seed(negative_mnist):
    train_set, (model, history), _ = negative_mnist
    findings = diagnose(model, train_set, nn.CrossEntropyLoss(), history)
    assert findings.get("output_activation").severity == "error"
    assert findings.get("output_activation").evidence["outputs_min"] == 0
    off_centre = findings.get("input_off_centre")
    assert off_centre.severity == "warning" and 0.85 < off_centre.evidence["input_mean"] < 0.89
    dead = findings.get("dead_relu")
    assert dead is not None and dead.evidence["worst_dead_fraction"] >= 0.5
    assert not [s for s in findings.skipped.values() if "failed" in s]


def test_negative_mnist_fixed_is_clean(negative_mnist):
    train_set, _, (model, history) = negative_mnist
    findings = diagnose(model, train_set, nn.CrossEntropyLoss(), history)
    assert serious(findings) == [], str(findings)
    assert history[-1]["test_acc"] > 0.8  # the fix is real: the network learns


@pytest.fixture(scope="module")
def colored_mnist(mnist):
    train_set = data.colorize(data.subset(mnist[0], per_class=100))
    test_set = data.colorize(data.subset(mnist[1], per_class=30), seed=1)
    runs = []
    for fixed in (False, True):
        torch.manual_seed(0)
        model = keras_cnn(fixed)
        history, _ = fit(model, train_set, test_set, epochs=3, lr=1e-3, adam=True)
        runs.append((model, history))
    return train_set, runs


def test_colored_mnist_seed(colored_mnist):
    train_set, [(model, history), _] = colored_mnist
    findings = diagnose(model, train_set, nn.CrossEntropyLoss(), history)
    assert {"output_activation", "double_softmax", "linear_stack"} <= set(serious(findings)), str(findings)
    assert "ReLU" in findings.get("output_activation").why
    stack = findings.get("linear_stack")  # conv -> conv -> max-pool -> ... -> linear -> dropout -> linear
    assert stack.evidence["weight_layers_in_stacks"] == 4 and stack.evidence["stacks_with_only_max_pooling"] == 1
    assert "0 (Conv2d) -> 1 (Conv2d) -> 2 (MaxPool2d)" in stack.why
    # conv -> conv and linear -> dropout -> linear compose into linear maps; conv -> max-pool -> linear does not
    assert stack.severity == "warning" and stack.evidence["pairs_composing_one_linear_map"] == 2
    assert stack.evidence["pairs_with_only_max_pooling"] == 1
    assert "0 (Conv2d) and 1 (Conv2d); 5 (Linear) and 7 (Linear): only linear steps" in stack.why


def test_colored_mnist_fixed_is_clean(colored_mnist):
    train_set, [_, (model, history)] = colored_mnist
    findings = diagnose(model, train_set, nn.CrossEntropyLoss(), history)
    assert serious(findings) == [], str(findings)


def test_raw_emnist_softmax_regression(emnist):
    train_set, test_set = emnist
    torch.manual_seed(0)
    model = logistic(27)  # 27 outputs, so that the raw labels 1..26 fit
    history, _ = fit(model, train_set, test_set, epochs=1)
    findings = diagnose(model, train_set, nn.CrossEntropyLoss(), history)
    assert set(serious(findings)) == {"raw_emnist", "class_never_occurs"}, str(findings)
    assert findings.get("class_never_occurs").evidence["first_unused_label"] == 0
    assert findings.get("raw_emnist").evidence["label_min"] == 1


def test_fixed_emnist_is_clean(emnist):
    train_set, test_set = (data.fix_emnist(ds) for ds in emnist)
    torch.manual_seed(0)
    model = logistic(26)
    history, _ = fit(model, train_set, test_set, epochs=1)
    assert serious(diagnose(model, train_set, nn.CrossEntropyLoss(), history)) == []


@pytest.fixture(scope="module")
def small_mnist(mnist):
    return data.subset(mnist[0], per_class=15), mnist[1]


def test_weight_decay_10_logistic_regression_is_stuck_at_chance(small_mnist):
    train_set, test_set = small_mnist
    torch.manual_seed(0)
    model = logistic()
    history, optimizer = fit(model, train_set, test_set, epochs=10, weight_decay=10)
    for extra in ({}, {"optimizer": optimizer}):  # the weight norms alone are evidence enough
        findings = diagnose(model, train_set, nn.CrossEntropyLoss(), history, **extra)
        stuck = findings.get("stuck_at_chance")
        assert stuck is not None and stuck.severity == "error", str(findings)
        assert stuck.causes[0]["cause"] == "weight decay too strong"
        assert stuck.evidence["weight_norm_ratio"] < 0.2
        assert abs(stuck.evidence["chance_loss"] - math.log(10)) < 1e-3
        assert "barely better than a uniform guess (train accuracy" in stuck.why
    assert stuck.evidence["weight_decay"] == 10


def test_weight_decay_fixed_logistic_regression_is_clean(small_mnist):
    train_set, test_set = small_mnist
    torch.manual_seed(0)
    model = logistic()
    history, optimizer = fit(model, train_set, test_set, epochs=10, weight_decay=1e-3)
    findings = diagnose(model, train_set, nn.CrossEntropyLoss(), history, optimizer=optimizer)
    assert serious(findings) == [], str(findings)
    # 150 images: train accuracy runs far ahead of test, which is said, but only as information
    assert findings.get("overfitting").severity == "info"
    assert findings.get("overfitting").evidence["train_size"] == 150


# --------------------------------------------------------------------------- detectors, one by one


def test_output_activation_positive_and_negative(mnist):
    ds = mnist[0]
    assert diagnose(seeded(lambda: mlp(out_relu=True)), ds).get("output_activation") is not None
    assert diagnose(seeded(mlp), ds).get("output_activation") is None
    # a functional F.relu on the output is recognised from the outputs themselves
    functional = diagnose(seeded(lambda: FunctionalMLP(out="relu")), ds).get("output_activation")
    assert functional is not None and functional.evidence["fraction_outputs_zero"] > 0.01
    # MultiMarginLoss also wants raw scores: a softmax before it is flagged here
    softmax = seeded(lambda: nn.Sequential(nn.Flatten(), nn.Linear(784, 10), nn.Softmax(dim=1)))
    assert diagnose(softmax, ds, nn.MultiMarginLoss()).get("output_activation") is not None
    assert diagnose(seeded(logistic), ds, nn.MultiMarginLoss()).get("output_activation") is None
    sigmoid = seeded(lambda: nn.Sequential(nn.Flatten(), nn.Linear(784, 10), nn.Sigmoid()))
    bounded = diagnose(sigmoid, ds).get("output_activation")
    assert bounded.severity == "error" and "between 0 and 1" in bounded.why and "= 1.46" in bounded.why
    # log-softmax keeps every difference of scores, so MultiMarginLoss's margins are unchanged: nothing to report
    log_softmax = seeded(lambda: nn.Sequential(nn.Flatten(), nn.Linear(784, 10), nn.LogSoftmax(dim=1)))
    assert diagnose(log_softmax, ds, nn.MultiMarginLoss()).get("output_activation") is None
    # an unbounded activation (LeakyReLU) is not needed there, but it is not said to squash the scores
    leaky = diagnose(seeded(lambda: nn.Sequential(nn.Flatten(), nn.Linear(784, 10), nn.LeakyReLU())), ds)
    assert leaky.get("output_activation").severity == "warning" and "squash" not in leaky.get("output_activation").why
    # a ReLU'd output that is 0 for every image is counted, and not said to be unable ever to come back
    dead = seeded(lambda: mlp(out_relu=True))
    with torch.no_grad():
        dead[5].bias[:3] = -100.0  # these 3 outputs are 0 for every image, the other 7 for none
        dead[5].bias[3:] = 100.0
    relu = diagnose(dead, ds).get("output_activation")
    assert relu.evidence["outputs_zero_for_every_image"] == 3 and "Here 3 of the 10 outputs" in relu.why
    assert "only changes in the layers below can" in relu.why and "never come back" not in relu.why


def test_double_softmax_positive_and_negative(mnist):
    ds = mnist[0]
    softmax = seeded(lambda: nn.Sequential(nn.Flatten(), nn.Linear(784, 10), nn.Softmax(dim=1)))
    finding = diagnose(softmax, ds).get("double_softmax")
    assert finding.severity == "error" and abs(finding.evidence["lowest_possible_loss"] - 1.461) < 1e-3
    assert "assuming nn.CrossEntropyLoss" in finding.why  # no loss given: the assumption is stated
    functional = diagnose(seeded(lambda: FunctionalMLP(out="softmax")), ds, F.cross_entropy)
    assert functional.get("double_softmax").severity == "error"
    # log-softmax before CrossEntropyLoss is harmless (log_softmax is idempotent): information only
    log_softmax = diagnose(seeded(lambda: FunctionalMLP(out="log_softmax")), ds, nn.CrossEntropyLoss())
    assert log_softmax.get("double_softmax").severity == "info"
    assert diagnose(seeded(logistic), ds, nn.CrossEntropyLoss()).get("double_softmax") is None
    # ... and with NLLLoss it is right; NLLLoss on raw scores is not
    assert diagnose(seeded(lambda: FunctionalMLP(out="log_softmax")), ds, nn.NLLLoss()).names() == []
    assert diagnose(seeded(logistic), ds, nn.NLLLoss()).get("nll_without_log_softmax") is not None


class KeepsProbabilities(nn.Module):
    """Returns raw scores, but also runs an nn.Softmax after the last layer, to keep probabilities for display."""

    def __init__(self):
        super().__init__()
        self.fc, self.softmax = nn.Linear(784, 10), nn.Softmax(dim=1)

    def forward(self, x):
        scores = self.fc(x.flatten(1))
        self.probabilities = self.softmax(scores)
        return scores


def test_an_activation_off_the_output_path_is_not_blamed(mnist):
    findings = diagnose(seeded(KeepsProbabilities), mnist[0], nn.CrossEntropyLoss())
    assert findings.names() == []


def test_linear_stack_positive_and_negative(mnist):
    ds = mnist[0]
    stacked = seeded(lambda: nn.Sequential(nn.Flatten(), nn.Linear(784, 200), nn.Dropout(0.5), nn.Linear(200, 10)))
    finding = diagnose(stacked, ds).get("linear_stack")
    assert finding is not None and finding.evidence["weight_layers_in_stacks"] == 2
    assert diagnose(seeded(lambda: FunctionalMLP(hidden_act=False)), ds).get("linear_stack") is not None
    # F.relu between the layers is invisible to hooks, but the second layer's input shows it
    assert diagnose(seeded(FunctionalMLP), ds).get("linear_stack") is None
    assert diagnose(seeded(mlp), ds).get("linear_stack") is None
    # the published colored-MNIST CNN: conv, max-pool, conv, max-pool, no activation in between
    pooled = seeded(lambda: nn.Sequential(nn.Conv2d(1, 4, 3), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3), nn.MaxPool2d(2),
                                          nn.Flatten(), nn.Linear(4 * 5 * 5, 10)))
    pooled_finding = diagnose(pooled, ds).get("linear_stack")
    assert pooled_finding.evidence["stacks_with_only_max_pooling"] == 1
    # max-pooling is a nonlinearity: such a stack is not one linear map, and the finding must not say it is
    assert pooled_finding.severity == "info" and pooled_finding.evidence["pairs_composing_one_linear_map"] == 0
    assert "do not collapse into one linear map" in pooled_finding.why
    assert "linear map of a linear map" not in pooled_finding.why and "one linear map, which" not in pooled_finding.why
    assert finding.severity == "warning" and "computes one linear map" in finding.why  # Linear, Dropout, Linear
    relu_pooled = seeded(lambda: nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3),
                                               nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 5 * 5, 10)))
    assert diagnose(relu_pooled, ds).get("linear_stack") is None
    # without data an nn.Sequential is read in order; a custom module needs data
    assert diagnose(stacked).get("linear_stack") is not None
    assert "linear_stack" in diagnose(seeded(FunctionalMLP)).skipped


def test_labels_vs_outputs(mnist, emnist):
    raw = emnist[0]
    x, y = next(train.batches(data.subset(raw, per_class=40), batch_size=2000, device="cpu"))
    out_of_range = diagnose(seeded(lambda: logistic(26)), (x, y)).get("labels_out_of_range")
    assert out_of_range.evidence == {"label_min": 1, "label_max": 26, "num_outputs": 26}
    assert diagnose(seeded(lambda: logistic(27)), raw).get("class_never_occurs") is not None
    too_many = diagnose(seeded(lambda: logistic(12)), mnist[0])
    assert too_many.get("outputs_vs_classes").evidence["num_classes"] == 10
    assert too_many.get("class_never_occurs") is None  # 12 outputs for 10 classes is one finding, not two
    clean = diagnose(seeded(logistic), mnist[0])
    assert not {"labels_out_of_range", "class_never_occurs", "outputs_vs_classes"} & set(clean.names())


def test_input_scale_and_centre(mnist):
    ds = mnist[0]
    x, y = next(train.batches(ds, batch_size=256, device="cpu"))
    raw = diagnose(seeded(mlp), ((x * 255).round().to(torch.uint8), y))  # a uint8 tensor is fed as given
    assert raw.get("input_scale").severity == "error" and raw.get("input_scale").evidence["input_max"] > 200
    assert diagnose(seeded(mlp), ds).names() == []  # [0, 1] MNIST: mean 0.13
    inverted = data.negative(ds)
    off_centre = diagnose(seeded(mlp), inverted).get("input_off_centre")
    # measured, not asserted: how many first-layer units have the same sign for every image (a fresh network:
    # some on for all, some off for all, most change sign; on normal MNIST none does)
    on, off = (off_centre.evidence[f"first_layer_units_{k}_for_every_image"] for k in ("positive", "non_positive"))
    assert 0 < on < 0.5 and 0 < off < 0.5 and f"{on:.0%} of its units are > 0 for every image" in off_centre.why
    # what counts is what reaches the first weight layer: a model that standardises first is fine
    assert diagnose(seeded(lambda: mlp(normalise=(0.87, 0.31))), inverted).get("input_off_centre") is None
    standardised = ((x - 0.13) / 0.31, y)
    assert diagnose(seeded(mlp), standardised).names() == []


def test_dead_relu_positive_and_negative(mnist):
    ds = mnist[0]
    model = seeded(mlp)
    assert diagnose(model, ds).get("dead_relu") is None
    with torch.no_grad():
        model[1].bias[:150] = -100.0  # 150 of 200 first-layer units can never turn on
    finding = diagnose(model, ds).get("dead_relu")
    assert finding.severity == "warning" and 0.75 <= finding.evidence["dead_fraction[2 (ReLU)]"] < 0.8
    with torch.no_grad():
        model[1].bias[:] = -100.0  # the whole layer: the output is the same for every image
    assert diagnose(model, ds).get("dead_relu").severity == "error"
    # functional ReLUs: read from what enters the next layer
    functional = seeded(FunctionalMLP)
    with torch.no_grad():
        functional.fc1.bias[:40] = -100.0
    assert 0.625 <= diagnose(functional, ds).get("dead_relu").evidence["worst_dead_fraction"] < 0.7


def test_stuck_at_chance_learning_rate_too_small(mnist):
    train_set, test_set = mnist
    torch.manual_seed(0)
    model = logistic()
    history, _ = fit(model, train_set, test_set, epochs=3, lr=1e-5)
    stuck = diagnose(model, train_set, history=history).get("stuck_at_chance")
    assert stuck is not None and stuck.causes[0]["cause"] == "learning rate too small"
    # a model that learns is not stuck
    torch.manual_seed(0)
    model = logistic()
    history, _ = fit(model, train_set, test_set, epochs=2)
    assert diagnose(model, train_set, history=history).get("stuck_at_chance") is None


class Times255(nn.Module):
    """Undoes train.batches' /255: the model sees raw 0..255 pixels."""

    def forward(self, x):
        return x * 255


def test_divergence_positive_and_negative(mnist):
    train_set, test_set = data.subset(mnist[0], per_class=50), mnist[1]
    torch.manual_seed(0)
    model = nn.Sequential(Times255(), *mlp())
    with pytest.raises(train.TrainingDiverged) as diverged:
        fit(model, train_set, test_set, epochs=2, lr=1000.0)
    findings = diagnose(model, train_set, history=diverged.value.history)  # the epochs before: none here
    finding = findings.get("divergence")
    assert finding is not None and finding.evidence["non_finite_parameters"] > 0
    assert finding.causes[0]["cause"] == "inputs not normalised"
    assert findings.get("dead_relu") is None  # NaN weights would fake dead units: that check steps aside
    # exploding without NaN: a huge loss in epoch 1, then the ReLUs die and the loss falls back to ln(10)
    torch.manual_seed(0)
    model = nn.Sequential(Times255(), *mlp())
    history, _ = fit(model, train_set, test_set, epochs=2, lr=0.1)
    exploded = diagnose(model, train_set, history=history).get("divergence")
    assert exploded is not None and exploded.evidence["max_train_loss"] > 100
    assert exploded.causes[0]["cause"] == "inputs not normalised"
    fine = [{"epoch": 1, "train_loss": 0.6, "train_acc": 0.85}, {"epoch": 2, "train_loss": 0.4, "train_acc": 0.9}]
    assert diagnose(seeded(logistic), train_set, history=fine).get("divergence") is None


def test_overfitting_positive_and_negative():
    def history(train_acc, test_acc):
        return [{"epoch": 1, "train_loss": 0.5, "train_acc": 0.8, "test_loss": 0.6, "test_acc": 0.75},
                {"epoch": 2, "train_loss": 0.01, "train_acc": train_acc, "test_loss": 1.2, "test_acc": test_acc}]

    model = seeded(logistic)
    finding = diagnose(model, history=history(1.0, 0.62), train_size=60000).get("overfitting")
    assert finding.severity == "warning" and finding.evidence["gap"] == 0.38 and finding.evidence["best_epoch"] == 1
    small = diagnose(model, history=history(1.0, 0.62), train_size=150).get("overfitting")
    assert small.severity == "info" and "small training set" in small.why  # expected with 150 images
    assert diagnose(model, history=history(0.95, 0.91)).get("overfitting") is None


def test_raw_emnist_positive_and_negative(emnist):
    raw = emnist[1]
    assert diagnose(seeded(lambda: logistic(27)), raw).get("raw_emnist") is not None
    assert diagnose(seeded(lambda: logistic(26)), data.fix_emnist(raw)).get("raw_emnist") is None


# --------------------------------------------------------------------------- contract: no side effects, API


class Everything(nn.Module):
    """Dropout, batch norm buffers and a submodule left in eval mode: what diagnose must not disturb."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5))
        self.head = nn.Linear(4 * 26 * 26, 10)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


def test_no_side_effects(mnist):
    ds = mnist[0]
    model = seeded(Everything)
    model.train()
    model.features[1].eval()  # a mix of modes must come back exactly
    before_state = {k: v.clone() for k, v in model.state_dict().items()}
    before_flags = [m.training for m in model.modules()]
    before_grads = [p.grad for p in model.parameters()]
    rng = torch.get_rng_state()
    history = [{"epoch": 1, "train_loss": 2.3, "train_acc": 0.1, "test_loss": 2.3, "test_acc": 0.1}] * 3
    diagnose(model, ds, nn.CrossEntropyLoss(), history)
    after = model.state_dict()
    assert all(torch.equal(before_state[k], after[k]) for k in before_state)  # batch norm statistics included
    assert [m.training for m in model.modules()] == before_flags
    assert [p.grad for p in model.parameters()] == before_grads
    assert all(not m._forward_hooks for m in model.modules())
    assert torch.equal(torch.get_rng_state(), rng)
    assert next(model.parameters()).device.type == "cpu"


def test_findings_api(mnist):
    findings = diagnose(seeded(lambda: mlp(out_relu=True)), data.negative(mnist[0]), history=[
        {"epoch": 1, "train_loss": float("nan"), "train_acc": 0.1}])
    assert isinstance(findings, Findings) and isinstance(findings, list)
    severities = [f.severity for f in findings]
    assert severities == sorted(severities, key=("error", "warning", "info").index)  # worst first
    plain = json.loads(findings.to_json())
    assert set(plain) == {"findings", "skipped"}
    assert set(plain["findings"][0]) == {"name", "severity", "evidence", "why", "fix", "causes"}
    divergence = next(f for f in plain["findings"] if f["name"] == "divergence")
    assert divergence["evidence"]["last_train_loss"] == "nan"  # JSON has no NaN: written as a string
    for finding in plain["findings"]:
        assert all(isinstance(v, (int, float, str)) for v in finding["evidence"].values())
    text, page = str(findings), findings._repr_html_()
    assert "[ERROR] output_activation" in text and "fix:" in text
    assert page.count("<tr") == len(findings) + 1 and "output_activation" in page
    clean = str(diagnose(seeded(mlp), mnist[0]))
    assert clean.startswith("diagnose: no problems found\n\nnot checked: stuck_at_chance")
    with pytest.raises(ValueError):
        Finding("x", "fatal", {}, "", "")


def test_bad_inputs_say_what_to_do(mnist):
    with pytest.raises(TypeError, match="mnistlab Dataset"):
        diagnose(seeded(mlp), [1, 2, 3])
    with pytest.raises(TypeError, match="nn.Module"):
        diagnose("model")
    no_flatten = seeded(lambda: nn.Sequential(nn.Linear(784, 10)))
    failed = diagnose(no_flatten, mnist[0]).get("forward_failed")
    assert failed.severity == "error" and "nn.Flatten()" in failed.fix
    assert no_flatten.training and not no_flatten[0]._forward_hooks  # restored although the forward pass failed


def test_every_detector_teaches():
    for detector in DETECTORS:
        doc = detector.__doc__ or ""
        assert len(doc.split()) >= 25, f"{detector.__name__} needs a docstring that explains the pitfall"


def test_overfitting_names_the_epoch_from_the_history_rows():
    """Histories logged every few epochs keep their own epoch numbers: the best one is named by them."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    history = [{"epoch": e, "train_loss": 0.1, "train_acc": 1.0, "test_loss": 1.0, "test_acc": acc}
               for e, acc in [(5, 0.70), (10, 0.80), (15, 0.75)]]
    findings = diagnose(model, history=history, train_size=5000)
    assert "overfitting" not in findings.skipped
    assert findings.get("overfitting").evidence["best_epoch"] == 10
    assert "epoch 10" in findings.get("overfitting").fix
    # the epoch is to be chosen on a validation split, not on the test set the history reports
    assert "split_validation" in findings.get("overfitting").fix and "memorised" not in findings.get("overfitting").why
