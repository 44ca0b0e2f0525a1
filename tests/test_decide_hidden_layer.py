"""grader/decide/hidden_layer.py: notebook 03's test cells decided from handed-in values, without running the
notebook. Each test hands in (mnistlab.course.hand_in, as the test cells do) the outputs of a correct
implementation, or of a typical wrong one, and checks the clean verdict and its reason."""

import numpy as np
import pytest
import torch
from torch import nn

from grader import decide
from grader.checks import mnist, small_mnist
from mnistlab import course, data, train

ASSIGNMENT = "03-hidden-layer"


def verdict(hand_in_folder, cell):
    (result,) = decide.decide_submission(str(hand_in_folder), ASSIGNMENT, cells=[cell])
    assert result["cell"] == cell and result["kind"] == "test"
    return result


def passes(hand_in_folder, cell):
    result = verdict(hand_in_folder, cell)
    assert result["passed"], result["reason"]


def fails(hand_in_folder, cell, *words):
    result = verdict(hand_in_folder, cell)
    assert not result["passed"]
    assert all(word in result["reason"] for word in words), result["reason"]


def test_every_test_cell_of_the_notebook_is_decided():
    import json
    from pathlib import Path

    nb = json.loads(Path(__file__).parents[1].joinpath("source/03-hidden-layer/03-hidden-layer.ipynb").read_text())
    tests = {c["metadata"]["nbgrader"]["grade_id"] for c in nb["cells"]
             if c["metadata"].get("nbgrader", {}).get("grade") and not c["metadata"]["nbgrader"].get("solution")}
    assert set(decide.cells_of(ASSIGNMENT)) == tests


def test_nothing_handed_in_fails_every_cell(hand_in_folder):
    for result in decide.decide_submission(str(hand_in_folder), ASSIGNMENT):
        assert not result["passed"] and "nothing was handed in" in result["reason"]


# --- test_two_layer ------------------------------------------------------------------------------------------

def two_layer(hidden, relu=True):
    layers = [nn.Flatten(), nn.Linear(784, hidden)] + ([nn.ReLU()] if relu else []) + [nn.Linear(hidden, 10)]
    return nn.Sequential(*layers)


def hand_in_two_layer(make):
    """What test_two_layer's hidden part hands in, for a two_layer function `make`."""
    x = torch.rand(4, 1, 28, 28)
    course.hand_in_model("test_two_layer", "relu-5000", make(5000), x)
    for hidden in (7, 300):
        course.hand_in_model("test_two_layer", f"relu-{hidden}", make(hidden), x)
        course.hand_in_model("test_two_layer", f"plain-{hidden}", make(hidden, relu=False), x)


def test_two_layer_right(hand_in_folder):
    hand_in_two_layer(two_layer)
    passes(hand_in_folder, "test_two_layer")


def test_two_layer_relu_ignored(hand_in_folder):
    hand_in_two_layer(lambda hidden, relu=True: two_layer(hidden))
    fails(hand_in_folder, "test_two_layer", "must have no nonlinearity at all")


def test_two_layer_without_any_relu(hand_in_folder):
    hand_in_two_layer(lambda hidden, relu=True: two_layer(hidden, relu=False))
    fails(hand_in_folder, "test_two_layer", "must have a ReLU between the layers")


def test_two_layer_relu_after_the_last_layer(hand_in_folder):
    hand_in_two_layer(lambda hidden, relu=True: nn.Sequential(two_layer(hidden), nn.ReLU()) if relu else two_layer(hidden, relu))
    fails(hand_in_folder, "test_two_layer", "no activation after the last layer")


def test_two_layer_wrong_sizes(hand_in_folder):
    hand_in_two_layer(lambda hidden, relu=True: two_layer(100 if hidden != 5000 else hidden, relu))
    fails(hand_in_folder, "test_two_layer", "two_layer(7): Linear layers [(784, 100), (100, 10)]")


def test_two_layer_extra_parameters(hand_in_folder):
    class Extra(nn.Module):
        def __init__(self, hidden, relu=True):
            super().__init__()
            self.layers, self.unused = two_layer(hidden, relu), nn.Linear(3, 3)  # never called: still parameters

        def forward(self, x):
            return self.layers(x)

    hand_in_two_layer(Extra)
    fails(hand_in_folder, "test_two_layer", f"{784 * 5000 + 5000 + 5000 * 10 + 10 + 12} parameters")


def test_two_layer_scores_of_the_wrong_shape(hand_in_folder):
    hand_in_two_layer(lambda hidden, relu=True: nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU()))
    fails(hand_in_folder, "test_two_layer", "shape [4, 10], got [4, 5000]")


# --- test_150 ------------------------------------------------------------------------------------------------

HEADS = {"SVM": nn.MultiMarginLoss(), "logistic": nn.CrossEntropyLoss()}


def hand_in_150(make_linear=lambda: two_layer_linear(), make_hidden=lambda: two_layer(5000), epoch=30, losses=HEADS):
    """What test_150's hidden part hands in: four (untrained) models, their last epoch and training loss
    (the loss of losses[head] on the 150 images: the right head's loss unless a test swaps them)."""
    x, y = next(train.batches(small_mnist(), batch_size=150, device="cpu"))
    for head in HEADS:
        for short, make in (("linear", make_linear), ("5000", make_hidden)):
            torch.manual_seed(0)
            model = make()
            with torch.no_grad():
                loss = losses[head](model(x), y).item()
            course.hand_in_model("test_150", f"{head}-{short}", model, x[:8])
            course.hand_in("test_150", **{f"{head}-{short}-epoch": epoch, f"{head}-{short}-train_loss": loss})


def two_layer_linear():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))


def test_150_right(hand_in_folder):
    hand_in_150()
    passes(hand_in_folder, "test_150")


def test_150_wrong_epochs(hand_in_folder):
    hand_in_150(epoch=25)
    fails(hand_in_folder, "test_150", "train for EPOCHS_SMALL epochs")


def test_150_trained_with_the_other_loss(hand_in_folder):
    hand_in_150(losses={"SVM": nn.CrossEntropyLoss(), "logistic": nn.CrossEntropyLoss()})
    fails(hand_in_folder, "test_150", "runs['SVM', 'linear'] must be trained with MultiMarginLoss()")


def test_150_hidden_model_in_the_linear_run(hand_in_folder):
    hand_in_150(make_linear=lambda: two_layer(5000))
    fails(hand_in_folder, "test_150", "runs['SVM', 'linear'] has Linear layers [5000, 10]")


def test_150_missing_value(hand_in_folder):
    hand_in_150()
    (hand_in_folder / "cells" / "test_150" / "logistic-5000-epoch.npy").unlink()
    fails(hand_in_folder, "test_150", "did not hand in `logistic-5000-epoch`")


# --- test_my_evaluate ----------------------------------------------------------------------------------------

def evaluate_right(model, ds, loss_fn, batch_size=64, weigh=True, eval_mode=True, restore=True, floats=True,
                   no_grad=True):
    """The solution's my_evaluate; the flags put back typical mistakes."""
    was_training = model.training
    if eval_mode:
        model.eval()
    total_loss, correct, batch_means = 0.0, 0, []
    with torch.set_grad_enabled(not no_grad):
        for x, y in train.batches(ds, batch_size, device="cpu"):
            scores = model(x)
            loss = loss_fn(scores, y)
            if not no_grad:
                loss.backward()
            total_loss += loss.item() * len(y)
            batch_means.append(loss.item())
            correct += (scores.argmax(1) == y).sum().item()
    if restore:
        model.train(was_training)
    loss, acc = (total_loss / len(ds) if weigh else sum(batch_means) / len(batch_means)), correct / len(ds)
    return (loss, acc) if floats else (torch.tensor(loss, dtype=torch.float64), torch.tensor(acc, dtype=torch.float64))


def hand_in_my_evaluate(my_evaluate, evaluate_calls=0):
    """What test_my_evaluate's hidden part hands in (a small trained-like model stands for the 5000-unit one).
    With evaluate_calls, my_evaluate called train.evaluate: the cell stops there (the refusal raises)."""
    torch.manual_seed(5)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    small = small_mnist()
    mine = [my_evaluate(model, ds, nn.CrossEntropyLoss()) for ds in (small, mnist("test"))]
    course.hand_in("test_my_evaluate", mine_small=mine[0], mine_test=mine[1])
    course.hand_in_model("test_my_evaluate", "model", model, next(train.batches(small, batch_size=8, device="cpu"))[0])
    course.hand_in("test_my_evaluate", evaluate_calls=evaluate_calls)
    if evaluate_calls:
        return
    torch.manual_seed(0)
    dropout_model = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 10))
    dropout_model.train()
    results = [my_evaluate(dropout_model, small, nn.MultiMarginLoss(), batch_size=b) for b in (7, 150, 1000)]
    course.hand_in("test_my_evaluate", results=results,
                   types=[[type(value).__name__ for value in result] for result in results],
                   training_after=dropout_model.training,
                   has_grad=[p.grad is not None for p in dropout_model.parameters()])


def test_my_evaluate_right(hand_in_folder):
    hand_in_my_evaluate(evaluate_right)
    passes(hand_in_folder, "test_my_evaluate")


@pytest.mark.parametrize("mistake, words", [
    ({"weigh": False}, ["mean loss", "weigh each batch by its size"]),
    ({"eval_mode": False}, ["batch size 7", "evaluate in eval mode (dropout off)"]),
    ({"restore": False}, ["restore the model's training mode"]),
    ({"floats": False}, ["return Python floats"]),
    ({"no_grad": False}, ["no gradients in an evaluation"]),
])
def test_my_evaluate_mistakes(hand_in_folder, mistake, words):
    hand_in_my_evaluate(lambda *args, **kwargs: evaluate_right(*args, **kwargs, **mistake))
    fails(hand_in_folder, "test_my_evaluate", *words)


def test_my_evaluate_numpy_floats_pass(hand_in_folder):
    hand_in_my_evaluate(lambda *args, **kwargs: tuple(np.float64(v) for v in evaluate_right(*args, **kwargs)))
    passes(hand_in_folder, "test_my_evaluate")


def test_my_evaluate_calls_train_evaluate(hand_in_folder):
    hand_in_my_evaluate(lambda model, ds, loss_fn, batch_size=64: train.evaluate(model, ds, loss_fn), evaluate_calls=1)
    fails(hand_in_folder, "test_my_evaluate", "not call train.evaluate")


# --- test_full_data ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained():
    """{"with ReLU", "without ReLU"}: 100-unit two-layer models trained a little (well above the untrained)."""
    models = {}
    for name, relu in (("with ReLU", True), ("without ReLU", False)):
        train.seed_everything(0)
        model = two_layer(100, relu)
        train.fit(model, small_mnist(), optimizer=torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
                  epochs=15, batch_size=32, quiet=True, device="cpu")
        models[name] = model
    return models


def hand_in_full_data(tuned, linear, epochs=None):
    example = next(train.batches(mnist("test"), batch_size=8, device="cpu"))[0]
    course.hand_in_model("test_full_data", "tuned", tuned, example)
    course.hand_in_model("test_full_data", "linear", linear, example)
    notebook_epochs = 3 if not data.is_standin(mnist("train")) else 12
    course.hand_in("test_full_data", tuned_epochs=epochs or notebook_epochs)


def untrained_linear():
    torch.manual_seed(0)
    return two_layer_linear()


def test_full_data_right(hand_in_folder, trained):
    hand_in_full_data(trained["with ReLU"], untrained_linear())
    passes(hand_in_folder, "test_full_data")


def test_full_data_too_wide(hand_in_folder):
    hand_in_full_data(two_layer(2000), untrained_linear())
    fails(hand_in_folder, "test_full_data", "two_layer(hidden <= 1000), got Linear outputs [2000, 10]")


def test_full_data_no_relu(hand_in_folder, trained):
    hand_in_full_data(trained["without ReLU"], untrained_linear())
    fails(hand_in_folder, "test_full_data", "keeps its ReLU")


def test_full_data_other_epochs(hand_in_folder, trained):
    hand_in_full_data(trained["with ReLU"], untrained_linear(), epochs=20)
    fails(hand_in_folder, "test_full_data", "EPOCHS epochs like the others", "not 20")


def test_full_data_does_not_beat_the_linear_model(hand_in_folder, trained):
    torch.manual_seed(0)
    hand_in_full_data(two_layer(100), nn.Sequential(trained["with ReLU"]))  # the trained model in the linear's place
    fails(hand_in_folder, "test_full_data", "should beat the linear one")


# --- test_collapse -------------------------------------------------------------------------------------------

def collapse_right(first, second, bias=True):
    layer = nn.Linear(first.in_features, second.out_features)
    with torch.no_grad():
        layer.weight.copy_(second.weight @ first.weight)
        layer.bias.copy_(second.weight @ first.bias + second.bias if bias else second.bias)
    return layer


def collapse_into_second(first, second):
    """Right numbers, but written into `second`, which it returns."""
    with torch.no_grad():
        bias = second.weight @ first.bias + second.bias
        second.weight = nn.Parameter(second.weight @ first.weight)
        second.bias.copy_(bias)
    second.in_features = first.in_features
    return second


def hand_in_collapse(collapse):
    """What test_collapse's hidden part hands in (its code, for a collapse function)."""
    cases = {"visible": (784, 100, 10, None), "small": (5, 3, 7, 1.0), "wide": (20, 64, 2, 3.0), "narrow": (784, 1, 10, 0.5)}
    for seed, (case, (n_in, n_hidden, n_out, scale)) in enumerate(cases.items()):
        torch.manual_seed(seed)
        first, second = nn.Linear(n_in, n_hidden), nn.Linear(n_hidden, n_out)
        if scale is not None:
            with torch.no_grad():
                for p in (*first.parameters(), *second.parameters()):
                    p.mul_(scale).add_(0.1)
        x = torch.rand(32, n_in) if scale is None else torch.randn(50, n_in)
        one = collapse(first, second)
        course.hand_in("test_collapse", **{f"{case}-classes": [f"{c.__module__}.{c.__qualname__}" for c in type(one).__mro__]})
        if not isinstance(one, nn.Linear):
            return  # the cell stops at `one.in_features`
        with torch.no_grad():
            outputs = one(x)
        course.hand_in("test_collapse", **{
            f"{case}-features": [one.in_features, one.out_features], f"{case}-outputs": outputs,
            f"{case}-first_weight": first.weight, f"{case}-first_bias": first.bias,
            f"{case}-second_weight": second.weight, f"{case}-second_bias": second.bias,
            f"{case}-weight_ptr": one.weight.data_ptr(),
            f"{case}-layer_ptrs": [p.data_ptr() for p in (*first.parameters(), *second.parameters())]})


def test_collapse_right(hand_in_folder):
    hand_in_collapse(collapse_right)
    passes(hand_in_folder, "test_collapse")


def test_collapse_forgets_the_first_bias(hand_in_folder):
    hand_in_collapse(lambda first, second: collapse_right(first, second, bias=False))
    fails(hand_in_folder, "test_collapse", "collapse(784->100->10) is off by")


def test_collapse_changes_the_layers(hand_in_folder):
    hand_in_collapse(collapse_into_second)
    fails(hand_in_folder, "test_collapse", "must not change the two layers")


def test_collapse_returns_a_sequential(hand_in_folder):
    hand_in_collapse(lambda first, second: nn.Sequential(first, second))
    fails(hand_in_folder, "test_collapse", "must return an nn.Linear", "Sequential")


def test_collapse_returns_a_layer_of_the_wrong_size(hand_in_folder):
    hand_in_collapse(lambda first, second: nn.Linear(first.in_features, first.out_features))
    fails(hand_in_folder, "test_collapse", "must be a Linear(784, 10), got a Linear(784, 100)")


def test_collapse_shares_a_weight(hand_in_folder):
    hand_in_collapse(collapse_right)
    cell = hand_in_folder / "cells" / "test_collapse"
    np.save(cell / "narrow-weight_ptr.npy", np.load(cell / "narrow-layer_ptrs.npy")[2])  # second.weight's memory
    fails(hand_in_folder, "test_collapse", "return a new layer")
