"""mnistlab.train: batches, fit, evaluate, predict, seeding, devices, progress bars, teaching errors."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mnistlab import data, train


def linear(inputs=784, outputs=10):
    return nn.Sequential(nn.Flatten(), nn.Linear(inputs, outputs))


def toy(n=10, classes=10, seed=0, channels=None):
    generator = torch.Generator().manual_seed(seed)
    shape = (n, 28, 28) if channels is None else (n, channels, 28, 28)
    images = torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, classes, (n,), generator=generator)
    return data.Dataset(images, labels, [str(k) for k in range(classes)], "toy")


@pytest.fixture(scope="module")
def digits(offline):
    """A small real training set (50 per class) and the stand-in test set."""
    return data.subset(offline("mnist", "train"), per_class=50), offline("mnist", "test")


# ------------------------------------------------------------------ batches


def test_batches_gives_float_images_with_a_channel_in_order():
    ds = toy(n=10)
    got = list(train.batches(ds, batch_size=4, device="cpu"))
    assert [len(y) for _, y in got] == [4, 4, 2]  # the last batch holds the rest
    x, y = got[0]
    assert x.shape == (4, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.equal(torch.cat([x for x, _ in got])[:, 0], ds.images.float() / 255)
    assert torch.equal(torch.cat([y for _, y in got]), ds.labels)
    assert 0 <= x.min() and x.max() <= 1


def test_batches_of_color_images_have_three_channels():
    x, _ = next(train.batches(toy(n=5, channels=3), batch_size=8, device="cpu"))
    assert x.shape == (5, 3, 28, 28)


def test_shuffled_batches_visit_every_image_once_in_a_seeded_order():
    ds = toy(n=50)
    ds.images[:, 0, 0] = torch.arange(50, dtype=torch.uint8)  # pixel (0, 0) names the image

    def order(seed):
        torch.manual_seed(seed)
        got = list(train.batches(ds, batch_size=8, shuffle=True, device="cpu"))
        index = torch.cat([(x[:, 0, 0, 0] * 255).round().long() for x, _ in got])
        assert torch.equal(torch.cat([y for _, y in got]), ds.labels[index])  # labels follow their images
        return index

    first = order(0)
    assert sorted(first.tolist()) == list(range(50))
    assert first.tolist() != list(range(50))
    assert torch.equal(order(0), first) and not torch.equal(order(1), first)


def test_batches_do_not_change_the_dataset():
    ds = toy(n=6)
    before = ds.images.clone()
    for x, _ in train.batches(ds, batch_size=4, device="cpu"):
        x.mul_(0)
    assert torch.equal(ds.images, before)


# ------------------------------------------------------------------ fit


def test_fit_learns_digits_and_reports_every_epoch(digits):
    small, test = digits
    train.seed_everything(0)
    model = linear()
    history = train.fit(model, small, test, epochs=3, quiet=True)
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert all(set(row) == {"epoch", "train_loss", "train_acc", "test_loss", "test_acc", "seconds"} for row in history)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["test_acc"] > 0.75  # a linear softmax on 500 real digits
    assert all(row["seconds"] > 0 for row in history)
    assert (history[-1]["test_loss"], history[-1]["test_acc"]) == train.evaluate(model, test)


def test_fit_without_a_test_set_reports_train_only(digits):
    history = train.fit(linear(), digits[0], epochs=1, quiet=True)
    assert set(history[0]) == {"epoch", "train_loss", "train_acc", "seconds"}


def test_fit_train_loss_and_accuracy_are_averages_over_the_epoch():
    # With a learning rate of 0 the model never changes, so the epoch's running averages must
    # equal one evaluation of the whole set (every image counted once, whatever its batch).
    ds = toy(n=70)
    model = linear()
    row = train.fit(model, ds, optimizer=torch.optim.SGD(model.parameters(), lr=0.0), epochs=1,
                    batch_size=32, quiet=True)[0]
    loss, acc = train.evaluate(model, ds)
    assert row["train_loss"] == pytest.approx(loss, rel=1e-5)
    assert row["train_acc"] == acc


def test_fit_uses_the_given_loss_optimizer_and_augment():
    ds = toy(n=20)
    model = linear()
    calls = {"loss": 0, "augment": []}

    def loss(scores, y):
        calls["loss"] += 1
        return F.cross_entropy(scores, y)

    def augment(x):
        calls["augment"].append((x.shape, x.min().item(), x.max().item()))
        return torch.zeros_like(x)  # black images: only the bias can learn

    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    before = model[1].weight.detach().clone()
    train.fit(model, ds, loss_fn=loss, optimizer=optimizer, epochs=2, batch_size=8, augment=augment, quiet=True)
    assert calls["loss"] == 6  # 3 batches x 2 epochs
    assert [shape for shape, _, _ in calls["augment"]] == [(8, 1, 28, 28), (8, 1, 28, 28), (4, 1, 28, 28)] * 2
    assert all(0 <= low and high <= 1 for _, low, high in calls["augment"])
    assert torch.equal(model[1].weight, before)  # zero inputs give the weights no gradient
    assert optimizer.state_dict()["param_groups"][0]["lr"] == 0.5


def test_fit_trains_in_train_mode_and_tests_in_eval_mode():
    modes = []

    class Recorder(nn.Module):
        def forward(self, x):
            modes.append(self.training)
            return x

    model = nn.Sequential(Recorder(), nn.Flatten(), nn.Linear(784, 10))
    model.eval()  # as a student might leave it after looking at predictions
    train.fit(model, toy(n=20), toy(n=5, seed=1), epochs=2, batch_size=10, quiet=True)
    assert modes == [True, True, False] * 2  # 2 training batches, then 1 test batch, per epoch
    assert model.training


def test_seed_everything_makes_fit_repeat_exactly():
    ds = toy(n=40)

    def run(seed):
        train.seed_everything(seed)
        model = linear()
        history = train.fit(model, ds, ds, epochs=2, batch_size=16, quiet=True)
        return [{k: v for k, v in row.items() if k != "seconds"} for row in history], model[1].weight.detach()

    first, weights = run(3)
    second, weights_again = run(3)
    assert first == second and torch.equal(weights, weights_again)
    assert not torch.equal(run(4)[1], weights)


def test_seed_everything_seeds_python_numpy_and_torch():
    import random

    import numpy as np

    train.seed_everything(7)
    draws = random.random(), np.random.rand(), torch.rand(1).item()
    train.seed_everything(7)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == draws


def test_fit_trains_colorized_images_with_a_matching_model():
    ds = data.colorize(toy(n=16))
    history = train.fit(linear(3 * 784), ds, epochs=1, batch_size=8, quiet=True)
    assert len(history) == 1


# ------------------------------------------------------------------ errors that teach


def raw_letters(n=52):
    """A tiny dataset labelled like raw EMNIST letters (1..26, class 0 "N/A" unused)."""
    labels = torch.arange(1, 27).repeat(n // 26)
    images = torch.randint(0, 256, (len(labels), 28, 28), dtype=torch.uint8)
    return data.Dataset(images, labels, ["N/A"] + [chr(97 + k) for k in range(26)], f"toy ({data.EMNIST_RAW})")


def test_labels_outside_the_outputs_say_which_labels_and_which_size():
    model = linear(784, 26)
    for run in (lambda: train.fit(model, raw_letters(), epochs=1, quiet=True),
                lambda: train.evaluate(model, raw_letters())):
        with pytest.raises(ValueError) as error:
            run()
        message = str(error.value)
        assert "labels run from 1 to 26" in message and "the model has 26 outputs" in message
        assert "Give the model 27 outputs" in message and "fix_emnist" in message


def test_negative_labels_are_caught_too():
    ds = toy(n=8)
    ds.labels = ds.labels - 1  # a Dataset refuses negative labels when made; this sneaks them in after
    with pytest.raises(ValueError, match="labels run from -1"):
        train.fit(linear(), ds, epochs=1, quiet=True)


def test_a_model_without_flatten_gets_told_to_flatten():
    with pytest.raises(ValueError) as error:
        train.fit(nn.Linear(784, 10), toy(), epochs=1, quiet=True)
    message = str(error.value)
    assert "could not take a batch of shape [10, 1, 28, 28]" in message
    assert "nn.Flatten()" in message and "in_features must be 784" in message


def test_wrong_in_features_says_the_right_number():
    with pytest.raises(ValueError, match=r"in_features must be 2352 \(= 3 x 28 x 28\)"):
        train.fit(linear(784), data.colorize(toy()), epochs=1, quiet=True)


def test_a_model_returning_the_wrong_shape_is_explained():
    with pytest.raises(ValueError, match=r"one row of class scores per image.*returned shape \[10, 1, 10\]"):
        train.fit(nn.Sequential(nn.Flatten(), nn.Linear(784, 10), nn.Unflatten(1, (1, 10))), toy(), epochs=1,
                  quiet=True)


def test_other_model_errors_pass_through_unchanged():
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(784, 10)

        def forward(self, x):
            raise RuntimeError("my own bug")

    with pytest.raises(RuntimeError, match="^my own bug$"):
        train.fit(Broken(), toy(), epochs=1, quiet=True, device="cpu")


def test_nan_loss_stops_training_and_says_so():
    ds = toy(n=6400)  # 100 batches of 64
    calls = []

    def loss(scores, y):  # fine for one epoch, NaN from the second on
        calls.append(1)
        value = F.cross_entropy(scores, y)
        return value * math.nan if len(calls) > 100 else value

    with pytest.raises(train.TrainingDiverged) as error:
        train.fit(linear(), ds, loss_fn=loss, epochs=5, quiet=True)
    assert "became nan in epoch 2" in str(error.value) and "learning rate" in str(error.value)
    assert [row["epoch"] for row in error.value.history] == [1]  # the good epoch is kept
    assert len(calls) < 200  # stopped early in epoch 2, not at its end
    assert isinstance(error.value, FloatingPointError)


def test_a_huge_learning_rate_on_raw_pixels_diverges():
    ds = toy(n=256)
    model = linear()
    with pytest.raises(train.TrainingDiverged, match="diverged"):
        train.fit(model, ds, optimizer=torch.optim.SGD(model.parameters(), lr=1e38), augment=lambda x: x * 255,
                  epochs=3, quiet=True)


# ------------------------------------------------------------------ evaluate and predict


def test_evaluate_returns_mean_loss_and_accuracy():
    ds = toy(n=30, classes=3)
    model = linear(784, 3)
    x = ds.images.float().div(255).unsqueeze(1)
    with torch.no_grad():
        scores = model(x)
    loss, acc = train.evaluate(model, ds, batch_size=7)
    assert loss == pytest.approx(F.cross_entropy(scores, ds.labels).item(), rel=1e-5)
    assert acc == (scores.argmax(1) == ds.labels).sum().item() / len(ds)
    assert train.evaluate(model, ds, loss_fn=nn.MultiMarginLoss())[0] == pytest.approx(
        F.multi_margin_loss(scores, ds.labels).item(), rel=1e-5)


def test_evaluate_and_predict_use_eval_mode_and_restore_the_mode():
    ds = toy(n=20)
    model = nn.Sequential(nn.Flatten(), nn.Dropout(0.9), nn.Linear(784, 10))
    expected = model[2](ds.images.float().div(255).flatten(1)).argmax(1)  # no dropout
    for mode in (True, False):
        model.train(mode)
        assert torch.equal(train.predict(model, ds), expected)
        assert train.evaluate(model, ds)[1] == (expected == ds.labels).sum().item() / len(ds)
        assert model.training == mode


def test_predict_gives_one_cpu_label_per_image():
    ds = toy(n=2500)
    model = linear()
    predictions = train.predict(model, ds)
    assert predictions.dtype == torch.int64 and predictions.device.type == "cpu" and predictions.shape == (2500,)
    with torch.no_grad():
        assert torch.equal(predictions, model(ds.images.float().div(255).unsqueeze(1)).argmax(1))


# ------------------------------------------------------------------ devices and progress bars


def test_default_device_prefers_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert train.default_device() == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert train.default_device() == torch.device("cpu")


def test_fit_moves_the_model_to_the_chosen_device(monkeypatch):
    model = linear()
    moved = []
    monkeypatch.setattr(train, "default_device", lambda: moved.append(1) or torch.device("cpu"))
    train.fit(model, toy(), epochs=1, quiet=True)
    assert moved and next(model.parameters()).device.type == "cpu"


def test_fit_shows_a_progress_bar_unless_quiet(monkeypatch, capsys):
    monkeypatch.delenv("MNISTLAB_QUIET", raising=False)
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    train.fit(linear(), toy(), epochs=2, quiet=False)
    assert "epochs" in capsys.readouterr().err
    train.fit(linear(), toy(), epochs=2)  # quiet=None: a bar, as nothing asks for quiet
    assert "epochs" in capsys.readouterr().err
    train.fit(linear(), toy(), epochs=2, quiet=True)
    assert capsys.readouterr() == ("", "")


def test_the_progress_bar_label_names_the_model(monkeypatch, capsys):
    monkeypatch.delenv("MNISTLAB_QUIET", raising=False)
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    train.fit(linear(), toy(), epochs=2, quiet=False, desc="colored CNN, epochs")
    assert "colored CNN, epochs:" in capsys.readouterr().err
    train.fit(linear(), toy(), epochs=2, quiet=False)  # the default label
    assert "epochs:" in capsys.readouterr().err
    train.fit(linear(), toy(), epochs=2, quiet=True, desc="colored CNN, epochs")  # quiet: no bar, no label
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("variable", ["MNISTLAB_QUIET", "NBGRADER_EXECUTION"])
def test_fit_is_quiet_under_nbgrader_or_when_asked(monkeypatch, capsys, variable):
    monkeypatch.delenv("MNISTLAB_QUIET", raising=False)
    monkeypatch.setenv(variable, "1")
    train.fit(linear(), toy(), epochs=2)
    assert capsys.readouterr() == ("", "")


def test_the_progress_bar_is_notebook_aware(monkeypatch):
    import tqdm.auto

    made = []

    class Recorder(list):
        def __init__(self, iterable, desc):
            super().__init__(iterable)
            made.append(desc)

        def set_postfix(self, values):
            made.append(values)

    monkeypatch.setattr(tqdm.auto, "tqdm", Recorder)  # tqdm.auto picks the Jupyter widget in a notebook
    train.fit(linear(), toy(), toy(seed=1), epochs=1, quiet=False)
    assert made[0] == "epochs" and set(made[1]) == {"train_loss", "train_acc", "test_loss", "test_acc"}
