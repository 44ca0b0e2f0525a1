"""grader/decide/svm_vs_logistic.py: notebook 02's test cells decided from values handed in here, in Python.

No notebook runs and nothing is trained: each test hands in (mnistlab.course.hand_in, hand_in_model) what the
cell's hidden code hands in, made with the notebook's solution or with a typical mistake, and checks the clean
verdict. The models are linear classifiers built directly (nearest class mean), not trained.
"""

import math

import pytest
import torch
from torch import nn

from grader.checks import mnist
from grader.decide import decide
from grader.decide.svm_vs_logistic import CELLS, HYPOTHESES, initial_weight
from mnistlab import course, data, train

EXAMPLE = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))
FIGURES = ["test_acc", "test_loss", "train_acc", "train_loss"]


@pytest.fixture
def verdict(hand_in_folder):
    """verdict(cell, values, models): hand `values` and `models` in for `cell` (as the grader's run of the notebook
    would), then decide it."""
    def run(cell, values=None, models=None):
        if values:
            course.hand_in(cell, **values)
        for name, model in (models or {}).items():
            course.hand_in_model(cell, name, model, EXAMPLE)
        return decide(str(hand_in_folder), cell, CELLS[cell])

    return run


def failed_with(result, words):
    return not result["passed"] and words in result["reason"]


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_nothing_handed_in_fails(verdict, cell):
    assert failed_with(verdict(cell), "nothing was handed in")


# --- models without training ------------------------------------------------------------------------------

def train_set():
    return data.subset(mnist("train"), per_class=15, seed=0)


def linear(weight, bias):
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    with torch.no_grad():
        model[1].weight.copy_(weight)
        model[1].bias.copy_(bias)
    return model


def centroids(scale=1.0, noise=0.0, seed=0):
    """The nearest-class-mean classifier of the 150 training images, as one nn.Linear (times `scale`, plus noise)."""
    ds = train_set()
    x = ds.images.flatten(1).float() / 255
    means = torch.stack([x[ds.labels == k].mean(0) for k in range(10)])
    weight = means + noise * torch.randn(10, 784, generator=torch.Generator().manual_seed(seed))
    return linear(scale * weight, -0.5 * scale * (weight ** 2).sum(1))


def weight_of(model):
    return next(m for m in model.modules() if isinstance(m, nn.Linear)).weight.detach()


# --- test-ex1-hinge ---------------------------------------------------------------------------------------

def weston_watkins(scores, labels, margin=1.0):
    true = scores.gather(1, labels[:, None])
    wrong = torch.ones_like(scores, dtype=torch.bool).scatter(1, labels[:, None], False)
    return ((margin - true + scores).clamp(min=0) * wrong).sum(1).mean()


def crammer_singer(scores, labels, margin=1.0):
    true = scores.gather(1, labels[:, None])
    wrong = torch.ones_like(scores, dtype=torch.bool).scatter(1, labels[:, None], False)
    return (margin - true + scores).masked_fill(~wrong, -math.inf).max(1).values.clamp(min=0).mean()


def numerical_gradient(f, x, eps=1e-6, restore=True):
    x = x.detach().clone() if restore else x
    grad = torch.zeros_like(x)
    flat, flat_grad = x.view(-1), grad.view(-1)
    for i in range(flat.numel()):
        saved = flat[i].item()
        flat[i] = saved + eps
        plus = float(f(x))
        flat[i] = saved - eps
        minus = float(f(x))
        flat[i] = saved if restore else saved - eps  # the mistake: x is left moved
        flat_grad[i] = (plus - minus) / (2 * eps)
    return grad


def hinge_values(ww_fn=weston_watkins, cs_fn=crammer_singer, gradient_fn=numerical_gradient):
    """What test-ex1-hinge hands in: the visible test's outputs, then the hidden part's (the same code)."""
    generator = torch.Generator().manual_seed(2)
    scores, labels = torch.randn(6, 10, generator=generator, dtype=torch.float64), torch.randint(0, 10, (6,), generator=generator)
    ww, cs = ww_fn(scores, labels), cs_fn(scores, labels)
    one = torch.tensor([[3.0, 2.5, 0.0]], dtype=torch.float64)
    smooth = gradient_fn(lambda x: (x ** 2).sum(), torch.tensor([[1.0, -2.0], [0.5, 3.0]], dtype=torch.float64))
    values = dict(ww=ww, cs=cs, ww_type=type(ww).__name__, cs_type=type(cs).__name__, one_ww=ww_fn(one, torch.tensor([0])),
                  one_cs=cs_fn(one, torch.tensor([0])), smooth=smooth)
    s32 = torch.randn(4, 10, generator=torch.Generator().manual_seed(5))
    values["ww32"] = ww_fn(s32, torch.tensor([0, 1, 2, 3]))
    cs_fn(s32, torch.tensor([0, 1, 2, 3]))
    x0 = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)
    values.update(sin_gradient=gradient_fn(lambda x: (3 * torch.sin(x)).sum(), x0), s32_after=s32, x0_after=x0)
    for k, (n, c, margin, seed) in enumerate(((5, 3, 1.0, 10), (13, 26, 0.5, 11), (1, 10, 2.0, 12), (7, 4, 1.0, 13))):
        g = torch.Generator().manual_seed(seed)
        s, y = torch.randn(n, c, generator=g, dtype=torch.float64) * 2, torch.randint(0, c, (n,), generator=g)
        values.update({f"ww{k}": ww_fn(s, y, margin=margin), f"cs{k}": cs_fn(s, y, margin=margin)})
        for name, loss in (("ww", ww_fn), ("cs", cs_fn)):
            x = s.clone().requires_grad_()
            value = loss(x, y, margin=margin)
            if value.requires_grad:
                value.backward()
            values.update({f"{name}{k}_grad": x.grad, f"{name}{k}_numerical": gradient_fn(lambda t: loss(t, y, margin=margin), s)})
    return values


def test_hinge_passes_for_the_solution(verdict):
    assert verdict("test-ex1-hinge", hinge_values())["passed"]


@pytest.mark.parametrize("mistake, words", [
    (dict(ww_fn=lambda s, y, margin=1.0: weston_watkins(s, y, margin) / s.shape[1]), "must equal nn.MultiMarginLoss()"),
    (dict(ww_fn=lambda s, y, margin=1.0: weston_watkins(s, y, margin) * torch.ones(1)), "a 0-dimensional tensor"),
    (dict(cs_fn=lambda s, y, margin=1.0: (margin - s.gather(1, y[:, None]) + s).max(1).values.mean()), "both losses are 0.5"),
    (dict(cs_fn=lambda s, y, margin=1.0: crammer_singer(s, y) if margin == 1.0 else crammer_singer(s, y, margin) + 0.1),
     "CS wrong for N=13, C=26, margin=0.5"),
    (dict(ww_fn=lambda s, y, margin=1.0: torch.tensor(weston_watkins(s, y, margin).item(), dtype=s.dtype)),
     "autograd gives no gradient"),
    (dict(gradient_fn=lambda f, x, eps=1e-6: numerical_gradient(f, x, eps, restore=False)), "numerical_gradient must not change x"),
    (dict(gradient_fn=lambda f, x, eps=1e-6: 2 * numerical_gradient(f, x, eps)), "numerical_gradient of sum(x^2) must be 2x"),
])
def test_hinge_fails_for_typical_mistakes(verdict, mistake, words):
    assert failed_with(verdict("test-ex1-hinge", hinge_values(**mistake)), words)


def test_hinge_fails_when_the_losses_change_the_scores(verdict):
    values = hinge_values()
    values["s32_after"] = values["s32_after"].clamp(min=0)
    assert failed_with(verdict("test-ex1-hinge", values), "must not modify the scores in place")


def test_hinge_fails_when_autograd_and_the_numerical_gradient_differ(verdict):
    values = hinge_values()
    values["cs2_grad"] = values["cs2_grad"] * 2
    assert failed_with(verdict("test-ex1-hinge", values), "hinge_crammer_singer: autograd and numerical gradients differ")


# --- test-ex1-shape, test-ex1-svm -------------------------------------------------------------------------

def test_shape(verdict):
    history_keys = ["epoch", "seconds", "test_acc", "test_loss", "train_acc", "train_loss"]
    good = dict(epochs=100, last_epoch=history_keys)
    assert verdict("test-ex1-shape", good, {"svm": centroids()})["passed"]


@pytest.mark.parametrize("values, model, words", [
    ({}, nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10)), "exactly one nn.Linear layer; found 2"),
    ({}, nn.Sequential(nn.Flatten(), nn.Linear(784, 20)), "map 784 pixels to 10 scores"),
    (dict(epochs=10), None, "train for EPOCHS = 100 epochs, not 10"),
    (dict(last_epoch=["epoch", "seconds", "train_acc", "train_loss"]), None, "pass test_set to train.fit"),
])
def test_shape_fails(verdict, values, model, words):
    handed = dict(dict(epochs=100, last_epoch=["epoch", "test_acc"]), **values)
    assert failed_with(verdict("test-ex1-shape", handed, {"svm": model or centroids()}), words)


def svm_values(model, loss_fn=nn.MultiMarginLoss()):
    weight = weight_of(model)
    return dict(test_loss=train.evaluate(model, mnist("test"), loss_fn)[0], weight=weight,
                again_weight=weight + 1e-4, still_weight=initial_weight(3))


def test_svm(verdict):
    model = centroids()
    assert verdict("test-ex1-svm", svm_values(model), {"svm": model})["passed"]


@pytest.mark.parametrize("change, words", [
    (dict(test_loss="cross-entropy"), "trained with nn.MultiMarginLoss"),
    (dict(again_weight="another seed"), "must call train.seed_everything(seed)"),
    (dict(still_weight="trained"), "must pass its lr to the optimizer"),
])
def test_svm_fails(verdict, change, words):
    model = centroids()
    values = svm_values(model, nn.CrossEntropyLoss() if "test_loss" in change else nn.MultiMarginLoss())
    if "again_weight" in change:
        values["again_weight"] = initial_weight(1)
    if "still_weight" in change:
        values["still_weight"] = initial_weight(3) + 0.01
    assert failed_with(verdict("test-ex1-svm", values, {"svm": model}), words)


# --- test-ex2-sweep ---------------------------------------------------------------------------------------

def k_fold(ds, k=5, seed=0):
    """The notebook's k_fold (its 'folds' cell): the validation part of each fold."""
    generator = torch.Generator().manual_seed(seed)
    fold = torch.empty(len(ds), dtype=torch.int64)
    for label in ds.labels.unique():
        where = (ds.labels == label).nonzero().squeeze(1)
        fold[where[torch.randperm(len(where), generator=generator)]] = torch.arange(len(where)) % k
    return [data.Dataset(ds.images[fold == i], ds.labels[fold == i], ds.classes, "validation") for i in range(k)]


def sweep(scales=(1.0, 0.8, 0.5), validate_on=None, best_wd=None):
    """cv as the notebook's sweep leaves it, and what test-ex2-sweep hands in: weight decays 0, 0.1 and 1 are the class
    means scaled down, 10 is a model near 0 (chance accuracy), each fold's model a little different."""
    folds = k_fold(train_set())
    cv = {wd: [centroids(scale, noise=0.01, seed=j) if wd != 10 else centroids(0.001, noise=1.0, seed=j) for j in range(5)]
          for wd, scale in zip((0, 0.1, 1, 10), scales + (None,))}
    last_losses = [[train.evaluate(model, validate_on or fold, nn.MultiMarginLoss())[0] for model, fold in zip(cv[wd], folds)]
                   for wd in cv]
    cv_accuracy = {}
    for wd, models in cv.items():
        right = sum((train.predict(model, fold) == fold.labels).sum().item() for model, fold in zip(models, folds))
        cv_accuracy[wd] = right / 150
    values = dict(keys=sorted(cv), best_wd=max(cv_accuracy, key=cv_accuracy.get) if best_wd is None else best_wd,
                  folds=[5, 5, 5, 5], epochs=[[100] * 5] * 4, last_losses=last_losses,
                  weights=[[weight_of(model) for model in cv[wd]] for wd in cv], again_weight=weight_of(cv[1][2]))
    models = {f"wd{i}-fold{j}": model for i, wd in enumerate(cv) for j, model in enumerate(cv[wd])}
    return values, models


def test_sweep(verdict):
    assert verdict("test-ex2-sweep", *sweep())["passed"]


@pytest.mark.parametrize("change, words", [
    (dict(keys=[0, 0.1, 1]), "cv needs the keys 0, 0.1, 1 and 10"),
    (dict(folds=[5, 5, 4, 5]), "weight decay 1: one (model, history) per fold, 5, not 4"),
    (dict(epochs=[[100] * 5, [100] * 5, [100] * 5, [10] * 5]), "weight decay 10: train for 100 epochs"),
    (dict(best_wd=10), "choose the weight decay with the highest cross-validated accuracy"),
    (dict(again_weight=torch.zeros(10, 784)), "weight decay 1, fold 2: train on FOLDS[2][0] with seed 0"),
])
def test_sweep_fails(verdict, change, words):
    values, models = sweep()
    assert failed_with(verdict("test-ex2-sweep", dict(values, **change), models), words)


def test_sweep_fails_when_the_weights_do_not_shrink(verdict):
    assert failed_with(verdict("test-ex2-sweep", *sweep(scales=(0.5, 0.8, 1.0))), "||W|| should shrink as weight decay grows")


def test_sweep_fails_when_validated_on_the_test_set(verdict):
    assert failed_with(verdict("test-ex2-sweep", *sweep(validate_on=mnist("test"))), "fold 0: validate on FOLDS[0][1]")


# --- test-ex3-logistic ------------------------------------------------------------------------------------

def logistic_values(model, train_loss=0.06):
    return dict(train_loss=train_loss, test_loss=train.evaluate(model, mnist("test"), nn.CrossEntropyLoss())[0],
                weight=weight_of(model))


def test_logistic(verdict):
    model = centroids(scale=5.0)
    assert verdict("test-ex3-logistic", logistic_values(model), {"logistic": model})["passed"]


@pytest.mark.parametrize("make, train_loss, words", [
    (lambda: centroids(scale=5.0), 2.3271, "train loss 2.327: a trained model gets far below ln 10"),
    (lambda: centroids(scale=0.01), 0.06, "weights are tiny: was weight decay left on?"),
    (lambda: nn.Sequential(centroids(scale=5.0), nn.Softmax(dim=1)), 0.06, "the model outputs probabilities: remove the softmax"),
])
def test_logistic_fails(verdict, make, train_loss, words):
    model = make()
    assert failed_with(verdict("test-ex3-logistic", logistic_values(model, train_loss), {"logistic": model}), words)


def test_logistic_fails_when_trained_with_the_hinge_loss(verdict):
    model = centroids(scale=5.0)
    values = dict(logistic_values(model), test_loss=train.evaluate(model, mnist("test"), nn.MultiMarginLoss())[0])
    assert failed_with(verdict("test-ex3-logistic", values, {"logistic": model}), "train logistic regression with nn.CrossEntropyLoss")


# --- test-ex4-figures -------------------------------------------------------------------------------------

def four_figures(model, train_set, test_set, loss_fn=nn.CrossEntropyLoss()):
    train_loss, train_acc = train.evaluate(model, train_set, loss_fn)
    test_loss, test_acc = train.evaluate(model, test_set, loss_fn)
    return {"train_loss": train_loss, "train_acc": train_acc, "test_loss": test_loss, "test_acc": test_acc}


def z_scores(runs, published, ddof=1):
    z = {}
    for figure, value in published.items():
        values = [run[figure] for run in runs]
        if max(values) == min(values):
            z[figure] = 0.0 if value == values[0] else math.inf
            continue
        mean = sum(values) / len(values)
        z[figure] = (value - mean) / math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - ddof))
    return z


def reproduces(runs, published, k=3):
    return all(abs(z) <= k for z in z_scores(runs, published).values())


def figures_values(four_figures=four_figures, z_scores=z_scores, reproduces=reproduces):
    """What test-ex4-figures hands in (the visible test's outputs, then the hidden part's), and its two models."""
    logistic, svm = centroids(scale=5.0), centroids()
    figures = four_figures(logistic, train_set(), mnist("test"))
    toy = [{"a": 1.0}, {"a": 2.0}, {"a": 3.0}]
    figures_svm = four_figures(svm, train_set(), mnist("test"), nn.MultiMarginLoss())
    runs_ = [{"x": 0.5, "y": 10.0}, {"x": 0.7, "y": 12.0}, {"x": 0.6, "y": 11.5}, {"x": 0.4, "y": 9.0}]
    z_ = z_scores(runs_, {"x": 0.1, "y": 14.0})
    same = [{"a": 0.5}, {"a": 0.5}, {"a": 0.5}]
    values = dict(keys=sorted(figures), test_acc=figures["test_acc"], train_loss=figures["train_loss"],
                  toy_z=z_scores(toy, {"a": 4.0})["a"], toy_reproduces=[reproduces(toy, {"a": 4.0}), reproduces(toy, {"a": 5.5})],
                  svm_test_loss=figures_svm["test_loss"], svm_train_acc=figures_svm["train_acc"],
                  z_keys=sorted(z_), z_values=[z_[key] for key in sorted(z_)], y_keys=sorted(z_scores(runs_, {"y": 10.0})),
                  reproduces=[reproduces(runs_, {"x": 0.55, "y": 10.5}), reproduces(runs_, {"x": 0.55, "y": 20.0}),
                              reproduces(runs_, {"x": 0.2, "y": 10.5}, k=4), reproduces(runs_, {"x": 0.2, "y": 10.5}, k=2),
                              reproduces(runs_, {"x": 0.55, "y": 2.0})],
                  same_z=[z_scores(same, {"a": 0.5})["a"], z_scores(same, {"a": 0.25})["a"]])
    return values, {"logistic": logistic, "svm": svm}


def test_figures(verdict):
    assert verdict("test-ex4-figures", *figures_values())["passed"]


def without_loss_fn(model, train_set, test_set, loss_fn=None):
    return four_figures(model, train_set, test_set)


def same_is_nan(runs, published, ddof=1):
    values = [run["a"] for run in runs] if "a" in published else None
    if values and max(values) == min(values):
        return {"a": math.nan}
    return z_scores(runs, published)


@pytest.mark.parametrize("mistake, words", [
    (dict(four_figures=without_loss_fn), "four_figures must use loss_fn"),
    (dict(z_scores=lambda runs, published: z_scores(runs, published, ddof=0)), "std over the runs with n - 1"),
    (dict(reproduces=lambda runs, published, k=3: reproduces(runs, published)), "use k"),
    (dict(z_scores=same_is_nan), "std 0: z = 0 or infinity"),
    (dict(z_scores=lambda runs, published: {key: z for key, z in z_scores(runs, published).items() if key != "x"}),
     "z_scores: one z per figure of `published`"),
])
def test_figures_fails_for_typical_mistakes(verdict, mistake, words):
    assert failed_with(verdict("test-ex4-figures", *figures_values(**mistake)), words)


def test_figures_fails_for_the_running_average(verdict):
    values, models = figures_values()
    values["train_loss"] += 0.05  # the history's last train_loss: an average taken while the weights still moved
    assert failed_with(verdict("test-ex4-figures", values, models), "not the history's running average")


# --- test-ex5-hypotheses ----------------------------------------------------------------------------------

def hypotheses_values(**change):
    """What test-ex5-hypotheses hands in, for runs that agree with the measurement (made-up figures); `change`:
    values to hand in instead (a function: called here), `model` the model instead of the softmax one."""
    change = {name: value() if callable(value) else value for name, value in change.items()}
    names = list(HYPOTHESES)
    softmaxed = nn.Sequential(centroids(), nn.Softmax(dim=1))
    values = dict(run_names=sorted(names), verdict_names=sorted(names), hypothesis_names=sorted(names), seeds=[5] * 6,
                  run_keys=[",".join(FIGURES)] * 30, verdicts=list(HYPOTHESES.values()), reproduced=list(HYPOTHESES.values()),
                  untouched_weight=initial_weight(3), softmax_weight=weight_of(softmaxed),
                  again=[0.14, 2.245, 0.16, 2.211], leftover_seed1=[0.1405, 2.2452, 0.16, 2.2109])
    models = {"softmaxed": change.pop("model", softmaxed)}
    return dict(values, **change), models


def test_hypotheses(verdict):
    assert verdict("test-ex5-hypotheses", *hypotheses_values())["passed"]


@pytest.mark.parametrize("change, words", [
    (dict(run_names=sorted(HYPOTHESES)[1:]), "runs and verdicts need one entry per hypothesis"),
    (dict(seeds=[5, 5, 5, 4, 5, 5]), "leftover weight decay 10: one run per seed, 5, not 4"),
    (dict(run_keys=[",".join(FIGURES)] * 29 + ["test_acc,train_acc"]), "labels shuffled: store four_figures of each run"),
    (dict(reproduced=[True, True, True, False, False, True]), "labels shuffled: verdicts[name] must be reproduces(runs[name])"),
    (dict(untouched_weight=lambda: initial_weight(3) - 0.001), "build SGD over ANOTHER model's parameters"),
    (dict(model=lambda: centroids()), "softmax_before_loss: end the model in nn.Softmax(dim=1)"),
    (dict(softmax_weight=lambda: initial_weight(3)), "softmax_before_loss: train the model's own parameters"),
    (dict(again=[0.14, 2.3, 0.16, 2.211]), "runs[name][i]: the hypothesis run on data.subset"),
    (dict(verdicts=[True, True, True, True, False, False], reproduced=[True, True, True, True, False, False]),
     "these verdicts disagree with the measurement: {'leftover weight decay 10': True}"),
])
def test_hypotheses_fails(verdict, change, words):
    assert failed_with(verdict("test-ex5-hypotheses", *hypotheses_values(**change)), words)


def test_hypotheses_fails_when_the_softmax_is_not_over_the_classes(verdict):
    values, _ = hypotheses_values()
    wrong = nn.Sequential(centroids(), nn.Softmax(dim=0))
    assert failed_with(verdict("test-ex5-hypotheses", values, {"softmaxed": wrong}), "the model's outputs must be probabilities")


# --- test-ex5-seeds ---------------------------------------------------------------------------------------

def seeds_values():
    """What test-ex5-seeds hands in: five models of each kind (the class means with different noise), their accuracies."""
    svm_models = [centroids(noise=0.05, seed=seed) for seed in range(5)]
    logistic_models = [centroids(scale=5.0, noise=0.05, seed=10 + seed) for seed in range(5)]
    svm_acc = [train.evaluate(model, mnist("test"))[1] for model in svm_models]
    logistic_acc = [train.evaluate(model, mnist("test"))[1] for model in logistic_models]
    values = dict(svm_acc=svm_acc, logistic_acc=logistic_acc, models=[5, 5], seed1_acc=svm_acc[1] + 0.001,
                  svm_history_acc=svm_acc[0], logistic_history_acc=logistic_acc[0] - 0.005)
    models = {**{f"svm{i}": m for i, m in enumerate(svm_models)}, **{f"logistic{i}": m for i, m in enumerate(logistic_models)}}
    return values, models


def test_seeds(verdict):
    values, models = seeds_values()
    assert len(set(values["svm_acc"])) > 1, "the test needs models of different accuracies"
    assert verdict("test-ex5-seeds", values, models)["passed"]


@pytest.mark.parametrize("change, words", [
    (lambda v: dict(svm_acc=v["svm_acc"][:4]), "one accuracy per seed: 5 each"),
    (lambda v: dict(models=[5, 4]), "one trained model per seed: 5 each"),
    (lambda v: dict(svm_acc=[100 * a for a in v["svm_acc"]]), "accuracies are fractions between 0 and 1"),
    (lambda v: dict(svm_acc=v["svm_acc"][::-1]), "are not those of the models"),
    (lambda v: dict(seed1_acc=v["svm_acc"][1] + 0.01), "seed 1: train on data.subset(pool, per_class=PER_CLASS, seed=1)"),
    (lambda v: dict(svm_history_acc=v["svm_acc"][0] + 0.02), "seed 0 should repeat the SVM of part 1"),
    (lambda v: dict(logistic_history_acc=v["logistic_acc"][0] - 0.02), "seed 0 should repeat the logistic regression of part 3"),
])
def test_seeds_fails(verdict, change, words):
    values, models = seeds_values()
    assert failed_with(verdict("test-ex5-seeds", dict(values, **change(values)), models), words)
