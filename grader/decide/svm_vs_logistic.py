"""02-svm-vs-logistic: each test cell decided from what it handed in (see grader/decide/__init__.py).

The inputs are built here again exactly as the hidden tests build them (same seeds, same data: the 150
training images, the notebook's 5 folds, the test set), and the expected values come from the formulas,
PyTorch's own losses, or the handed-in graphs measured on the grader's own copy of the data.
"""

import math
import statistics
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from grader.checks import mnist
from grader.clean import accuracy
from grader.decide import require
from mnistlab import data, train

EPOCHS, PER_CLASS, SEEDS = 100, 15, 5  # the notebook's constants
WEIGHT_DECAYS = (0, 0.1, 1, 10)
FIGURES = ["test_acc", "test_loss", "train_acc", "train_loss"]  # four_figures' keys, sorted
HYPOTHESES = {  # each hypothesis, and whether it reproduces the published run (the same on every set of seeds tried)
    "never trained": True, "optimizer of another model": True, "learning rate 1e-5": True,
    "leftover weight decay 10": False, "softmax before the loss": False, "labels shuffled": False}


# --- the notebook's data and starting point, built again -------------------------------------------------

@lru_cache(maxsize=None)
def train_set():
    """The notebook's 150 training images: data.subset(pool, per_class=PER_CLASS, seed=0)."""
    return data.subset(mnist("train"), per_class=PER_CLASS, seed=0)


@lru_cache(maxsize=None)
def validation_folds(k=5, seed=0):
    """The validation part of each of the notebook's FOLDS (its k_fold(train_set, k=5), written again)."""
    ds = train_set()
    generator = torch.Generator().manual_seed(seed)
    fold = torch.empty(len(ds), dtype=torch.int64)
    for label in ds.labels.unique():
        where = (ds.labels == label).nonzero().squeeze(1)
        fold[where[torch.randperm(len(where), generator=generator)]] = torch.arange(len(where)) % k
    return [data.derive(ds, f"fold {i}: validation", images=ds.images[fold == i], labels=ds.labels[fold == i])
            for i in range(k)]


def initial_weight(seed):
    """The weights of linear_model() right after train.seed_everything(seed): where a run with that seed starts."""
    train.seed_everything(seed)
    return nn.Linear(784, 10).weight.detach()


def outputs(run, ds):
    """(scores, labels): a handed-in graph on every image of `ds`, in order."""
    x, y = next(train.batches(ds, batch_size=len(ds), device="cpu"))
    with torch.no_grad():
        return run(x), y


def mean_loss(run, ds, loss_fn):
    """The mean loss of a handed-in graph over `ds` (train.evaluate's first figure), in float64."""
    scores, labels = outputs(run, ds)
    return loss_fn(scores.double(), labels).item()


def as_list(value):
    """A handed-in list as a Python list (numbers come back as a tensor, text as a list already)."""
    if isinstance(value, torch.Tensor):
        return value.tolist()
    return value if isinstance(value, list) else [value]


def close(a, b, atol=1e-8, rtol=1e-5):
    """torch.allclose of two numbers or tensors, in float64 (its default tolerances unless given)."""
    return torch.allclose(torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64), rtol=rtol, atol=atol)


# --- part 1: the hinge losses, train_linear, the SVM ------------------------------------------------------

def weston_watkins(scores, labels, margin=1.0):
    """Mean over the batch of sum_{j != y} max(0, margin - s_y + s_j)."""
    violations = (margin - scores.gather(1, labels[:, None]) + scores).clamp(min=0)
    return violations.scatter(1, labels[:, None], 0.0).sum(1).mean()


def crammer_singer(scores, labels, margin=1.0):
    """Mean over the batch of max(0, max_{j != y} (margin - s_y + s_j))."""
    violations = (margin - scores.gather(1, labels[:, None]) + scores).clamp(min=0)
    return violations.scatter(1, labels[:, None], 0.0).max(1).values.mean()


def gradient(loss, scores, labels, margin):
    """The gradient of `loss` (one of the two above) with respect to the scores, by autograd."""
    x = scores.clone().requires_grad_()
    return torch.autograd.grad(loss(x, labels, margin), x)[0]


def hinge(got):
    """test-ex1-hinge: WW is nn.MultiMarginLoss times C, CS lies between WW / (C - 1) and WW, both equal their
    formulas for other sizes and margins and differentiate right; numerical_gradient is right; no input changes."""
    generator = torch.Generator().manual_seed(2)
    scores, labels = torch.randn(6, 10, generator=generator, dtype=torch.float64), torch.randint(0, 10, (6,), generator=generator)
    for name in ("ww", "cs"):
        require(got[f"{name}_type"] == "Tensor" and got.shape(name) == (),
                "each loss returns one number for the batch (a 0-dimensional tensor): its mean")
    ww, cs = got["ww"], got["cs"]
    require(close(ww / 10, F.multi_margin_loss(scores, labels)),
            "hinge_weston_watkins / C must equal nn.MultiMarginLoss(): sum over the wrong classes, mean over the batch")
    require(ww / 9 - 1e-9 <= cs <= ww + 1e-9, "Crammer-Singer must lie between WW / (C - 1) and WW")
    require(abs(float(got["one_cs"]) - 0.5) < 1e-9 and abs(float(got["one_ww"]) - 0.5) < 1e-9,
            "scores [3.0, 2.5, 0.0], true class 0: class 1 violates the margin by 0.5, class 2 not, so both losses are 0.5")
    require(close(got["smooth"], [[2.0, -4.0], [1.0, 6.0]], atol=1e-5), "numerical_gradient of sum(x^2) must be 2x")

    for k, (n, c, margin, seed) in enumerate(((5, 3, 1.0, 10), (13, 26, 0.5, 11), (1, 10, 2.0, 12), (7, 4, 1.0, 13))):
        g = torch.Generator().manual_seed(seed)
        s, y = torch.randn(n, c, generator=g, dtype=torch.float64) * 2, torch.randint(0, c, (n,), generator=g)
        where = f"N={n}, C={c}, margin={margin}"
        require(abs(float(got[f"ww{k}"]) - weston_watkins(s, y, margin).item()) < 1e-9, f"WW wrong for {where}")
        require(abs(float(got[f"cs{k}"]) - crammer_singer(s, y, margin).item()) < 1e-9, f"CS wrong for {where}")
        require(close(float(got[f"ww{k}"]) / c, F.multi_margin_loss(s, y, margin=margin)),
                f"hinge_weston_watkins / C must equal nn.MultiMarginLoss(margin={margin}) ({where})")
        for name, function, reference in (("ww", "hinge_weston_watkins", weston_watkins),
                                          ("cs", "hinge_crammer_singer", crammer_singer)):
            grad, numerical = got[f"{name}{k}_grad"], got[f"{name}{k}_numerical"]
            require(isinstance(grad, torch.Tensor), f"{function}: autograd gives no gradient of the scores ({where}): "
                                                    "compute the loss with tensor operations on the scores, no .item() or NumPy")
            require(close(grad, numerical, atol=1e-5), f"{function}: autograd and numerical gradients differ (N={n}, C={c})")
            require(close(grad, gradient(reference, s, y, margin), atol=1e-5), f"{function}: its gradient is wrong ({where})")

    s32, y32 = torch.randn(4, 10, generator=torch.Generator().manual_seed(5)), torch.tensor([0, 1, 2, 3])
    require(close(float(got["ww32"]) / 10, F.multi_margin_loss(s32, y32), atol=1e-6),
            "float32 scores (the training batches): hinge_weston_watkins / C must equal nn.MultiMarginLoss() too")
    require(torch.equal(got["s32_after"], s32), "the losses must not modify the scores in place")
    x0 = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)
    require(close(got["sin_gradient"], 3 * torch.cos(x0), atol=1e-6),
            "numerical_gradient of 3 sin(x) must be 3 cos(x): central differences, one entry at a time")
    require(torch.equal(got["x0_after"], x0), "numerical_gradient must not change x")


def shape(got):
    """test-ex1-shape: the SVM's graph has exactly one linear layer, 784 -> 10; trained EPOCHS epochs with the test set."""
    linears = got.operations("svm").count("linear")
    require(linears == 1, f"a linear SVM has exactly one nn.Linear layer; found {linears}")
    matrices = [s for s in got.parameter_shapes("svm") if len(s) == 2]  # nn.Linear(784, 10).weight is [10, 784]
    require(matrices == [(10, 784)], "the layer must map 784 pixels to 10 scores")
    require(got["epochs"] == EPOCHS, f"train for EPOCHS = {EPOCHS} epochs, not {got['epochs']}")
    require("test_acc" in as_list(got["last_epoch"]), "pass test_set to train.fit, so that every epoch is tested")


def svm(got):
    """test-ex1-svm (with the clean accuracy check): trained with the hinge loss; train_linear seeds, and uses its lr."""
    hinge_loss = mean_loss(got.model("svm"), mnist("test"), F.multi_margin_loss)
    require(abs(got["test_loss"] - hinge_loss) < 1e-4, "the SVM must be trained with nn.MultiMarginLoss")
    require(close(got["again_weight"], got["weight"], atol=1e-3),
            "train_linear must call train.seed_everything(seed) before creating the model")
    require(close(got["still_weight"], initial_weight(3)), "train_linear must pass its lr to the optimizer")


# --- part 2: weight decay by cross-validation -------------------------------------------------------------

def sweep(got):
    """test-ex2-sweep: one run per fold and weight decay, validated on its own fold with the hinge loss; ||W||
    shrinks as weight decay grows; 10 ruins the SVM; the choice is the best cross-validated accuracy."""
    keys = as_list(got["keys"])
    require(keys == list(WEIGHT_DECAYS), f"cv needs the keys 0, 0.1, 1 and 10, has {keys}")
    folds = validation_folds()
    for wd, n in zip(WEIGHT_DECAYS, as_list(got["folds"])):
        require(n == len(folds), f"weight decay {wd}: one (model, history) per fold, {len(folds)}, not {n}")
    for wd, lengths in zip(WEIGHT_DECAYS, as_list(got["epochs"])):
        require(all(n == EPOCHS for n in lengths), f"weight decay {wd}: train for {EPOCHS} epochs")
    weights = got["weights"]  # [weight decay, fold, 10, 784]
    norms = weights.flatten(2).norm(dim=2).mean(1).tolist()
    require(norms[0] > norms[1] > norms[2] > norms[3], f"||W|| should shrink as weight decay grows, got {norms}")

    right, hinge_losses = {}, {}  # weight decay -> images of the 150 right when held out; -> hinge loss of each fold
    for i, wd in enumerate(WEIGHT_DECAYS):
        right[wd], hinge_losses[wd] = 0, []
        for j, fold in enumerate(folds):
            scores, labels = outputs(got.model(f"wd{i}-fold{j}"), fold)
            right[wd] += (scores.argmax(1) == labels).sum().item()
            hinge_losses[wd].append(F.multi_margin_loss(scores.double(), labels).item())
    cv_accuracy = {wd: right[wd] / len(train_set()) for wd in WEIGHT_DECAYS}
    require(cv_accuracy[10] < cv_accuracy[0.1] - 0.2, "weight decay 10 should cost far more accuracy than 0.1")
    best = [wd for wd in WEIGHT_DECAYS if cv_accuracy[wd] == max(cv_accuracy.values())]  # ties: any of them
    require(got["best_wd"] in best, "choose the weight decay with the highest cross-validated accuracy")

    for wd, last_losses in zip(WEIGHT_DECAYS, as_list(got["last_losses"])):
        for i, (last, hinge_loss) in enumerate(zip(last_losses, hinge_losses[wd])):
            require(abs(last - hinge_loss) < 1e-4, f"weight decay {wd}, fold {i}: validate on FOLDS[{i}][1], train with nn.MultiMarginLoss")
    require(close(got["again_weight"], weights[2, 2], atol=1e-3), "weight decay 1, fold 2: train on FOLDS[2][0] with seed 0")


# --- part 3: logistic regression, and the published run ---------------------------------------------------

def logistic(got):
    """test-ex3-logistic (with the clean accuracy check): trained to a low loss, with the cross-entropy, without
    weight decay, and it outputs raw scores."""
    train_loss = got["train_loss"]
    require(train_loss < 0.5, f"train loss {train_loss:.3f}: a trained model gets far below ln 10 = 2.303 on 150 images")
    scores, labels = outputs(got.model("logistic"), mnist("test"))
    require(abs(got["test_loss"] - F.cross_entropy(scores.double(), labels).item()) < 1e-4,
            "train logistic regression with nn.CrossEntropyLoss")
    require(got["weight"].norm().item() > 1.0, "the logistic regression's weights are tiny: was weight decay left on?")
    first = scores[:100]  # the first batch of 100 test images
    require(not torch.allclose(first.sum(1), torch.ones(len(first)), atol=1e-3),
            "the model outputs probabilities: remove the softmax, CrossEntropyLoss applies log_softmax itself")


def z_scores(runs, published):
    """{figure: (published - mean) / std}, std with n - 1; 0 or inf when every run has the same value."""
    z = {}
    for figure, value in published.items():
        values = [run[figure] for run in runs]
        if max(values) == min(values):
            z[figure] = 0.0 if value == values[0] else math.inf
        else:
            z[figure] = (value - statistics.mean(values)) / statistics.stdev(values)
    return z


def reproduces(runs, published, k=3):
    return all(abs(z) <= k for z in z_scores(runs, published).values())


def figures(got):
    """test-ex4-figures: four_figures measures the model after training, with loss_fn, on the whole sets; z_scores
    and reproduces follow the definitions."""
    require(sorted(as_list(got["keys"])) == FIGURES, f"four_figures must return the keys {FIGURES}")
    logistic_run, svm_run = got.model("logistic"), got.model("svm")
    require(abs(got["test_acc"] - accuracy(logistic_run, mnist("test"))) < 1e-9,
            "four_figures: test_acc is the model's accuracy on the whole test set (train.evaluate)")
    require(abs(got["train_loss"] - mean_loss(logistic_run, train_set(), F.cross_entropy)) < 1e-6,
            "measure the training loss after training with train.evaluate, not the history's running average")
    toy = [{"a": 1.0}, {"a": 2.0}, {"a": 3.0}]
    require(abs(got["toy_z"] - z_scores(toy, {"a": 4.0})["a"]) < 1e-9, "z = (published - mean) / std, std over the runs with n - 1")
    require(as_list(got["toy_reproduces"]) == [reproduces(toy, {"a": 4.0}), reproduces(toy, {"a": 5.5})],
            "reproduces: every |z| <= k")

    require(abs(got["svm_test_loss"] - mean_loss(svm_run, mnist("test"), F.multi_margin_loss)) < 1e-6, "four_figures must use loss_fn")
    require(abs(got["svm_train_acc"] - accuracy(svm_run, train_set())) < 1e-9,
            "four_figures: train_acc is the model's accuracy on the whole training set (train.evaluate)")
    runs = [{"x": 0.5, "y": 10.0}, {"x": 0.7, "y": 12.0}, {"x": 0.6, "y": 11.5}, {"x": 0.4, "y": 9.0}]
    expected = z_scores(runs, {"x": 0.1, "y": 14.0})
    require(as_list(got["z_keys"]) == sorted(expected), "z_scores: one z per figure of `published`")
    for key, z in zip(sorted(expected), as_list(got["z_values"])):
        require(abs(z - expected[key]) < 1e-9, f"z of {key}")
    require(as_list(got["y_keys"]) == ["y"], "z_scores: one z per figure of `published`")
    cases = [({"x": 0.55, "y": 10.5}, 3, "one figure out rules it out"), ({"x": 0.55, "y": 20.0}, 3, "one figure out rules it out"),
             ({"x": 0.2, "y": 10.5}, 4, "use k"), ({"x": 0.2, "y": 10.5}, 2, "use k"),
             ({"x": 0.55, "y": 2.0}, 3, "|z|: a published value far BELOW the runs rules it out too")]
    for (published, k, message), verdict in zip(cases, as_list(got["reproduces"])):
        require(verdict == reproduces(runs, published, k), message)
    same_z = as_list(got["same_z"])
    require(same_z[0] == 0 and math.isinf(same_z[1]), "std 0: z = 0 or infinity")


def hypotheses(got):
    """test-ex5-hypotheses: every hypothesis run on every seed, each verdict reproduces(runs); the two written
    hypotheses do what they say; the runs are on the seeds' subsets; the verdicts agree with the measurement."""
    names = list(HYPOTHESES)
    for key in ("run_names", "verdict_names", "hypothesis_names"):
        require(sorted(as_list(got[key])) == sorted(names), "runs and verdicts need one entry per hypothesis")
    for name, n in zip(names, as_list(got["seeds"])):
        require(n == SEEDS, f"{name}: one run per seed, {SEEDS}, not {n}")
    keys = as_list(got["run_keys"])
    verdicts, reproduced = as_list(got["verdicts"]), as_list(got["reproduced"])
    for i, name in enumerate(names):
        require(all(k == ",".join(FIGURES) for k in keys[i * SEEDS:(i + 1) * SEEDS]), f"{name}: store four_figures of each run")
        require(verdicts[i] == reproduced[i], f"{name}: verdicts[name] must be reproduces(runs[name])")

    require(torch.equal(got["untouched_weight"], initial_weight(3)), "optimizer_of_another_model: seed, create the logistic "
            "model with linear_model(), build SGD over ANOTHER model's parameters")
    operations = got.operations("softmaxed")
    require("softmax" in operations or "_softmax" in operations, "softmax_before_loss: end the model in nn.Softmax(dim=1)")
    require(not close(got["softmax_weight"], initial_weight(3)), "softmax_before_loss: train the model's own parameters")
    probabilities, _ = outputs(got.model("softmaxed"), data.subset(mnist("train"), per_class=1, seed=7))
    require(torch.allclose(probabilities.sum(1), torch.ones(len(probabilities)), atol=1e-5),
            "softmax_before_loss: the model's outputs must be probabilities, nn.Softmax(dim=1) over the 10 scores")
    require(all(abs(a - b) < 1e-3 for a, b in zip(as_list(got["again"]), as_list(got["leftover_seed1"]))),
            "runs[name][i]: the hypothesis run on data.subset(pool, per_class=PER_CLASS, seed=SEEDS[i]) with seed SEEDS[i]")
    wrong = {name: verdict for name, verdict in zip(names, verdicts) if verdict != HYPOTHESES[name]}
    require(not wrong, f"these verdicts disagree with the measurement: {wrong}")


# --- part 4: five seeds -----------------------------------------------------------------------------------

def seeds(got):
    """test-ex5-seeds (with the clean accuracy checks of the means): five runs of each kind, each accuracy that of its
    model, seed i on subset i with initialisation i, seed 0 the runs of parts 1 and 3."""
    svm_acc, logistic_acc = as_list(got["svm_acc"]), as_list(got["logistic_acc"])
    require(len(svm_acc) == len(logistic_acc) == SEEDS, f"one accuracy per seed: {SEEDS} each")
    require(as_list(got["models"]) == [SEEDS, SEEDS], f"one trained model per seed: {SEEDS} each")
    require(all(0 <= a <= 1 for a in svm_acc + logistic_acc), "accuracies are fractions between 0 and 1")
    for kind, accuracies in (("svm", svm_acc), ("logistic", logistic_acc)):
        measured = [accuracy(got.model(f"{kind}{i}"), mnist("test")) for i in range(SEEDS)]
        require(all(abs(a - b) < 1e-9 for a, b in zip(measured, accuracies)),
                f"the accuracies {accuracies} are not those of the models, {measured}: append each model and its accuracy")
    require(abs(got["seed1_acc"] - svm_acc[1]) <= 0.002, "seed 1: train on data.subset(pool, per_class=PER_CLASS, seed=1) with seed=1")
    require(abs(svm_acc[0] - got["svm_history_acc"]) <= 0.01, "seed 0 should repeat the SVM of part 1")
    require(abs(logistic_acc[0] - got["logistic_history_acc"]) <= 0.01, "seed 0 should repeat the logistic regression of part 3")


CELLS = {
    "test-ex1-hinge": hinge,
    "test-ex1-shape": shape,
    "test-ex1-svm": svm,
    "test-ex2-sweep": sweep,
    "test-ex3-logistic": logistic,
    "test-ex4-figures": figures,
    "test-ex5-hypotheses": hypotheses,
    "test-ex5-seeds": seeds,
}
