"""mnistlab.plots: every function returns a Figure (shown once in Jupyter) with the right content."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from mnistlab import data, plots


def history(epochs=3, test=True):
    rows = []
    for epoch in range(1, epochs + 1):
        row = {"epoch": epoch, "train_loss": 1 / epoch, "train_acc": 1 - 0.5 / epoch, "seconds": 0.1}
        if test:
            row.update(test_loss=1.2 / epoch, test_acc=1 - 0.6 / epoch)
        rows.append(row)
    return rows


def toy(n=12, channels=None):
    generator = torch.Generator().manual_seed(0)
    shape = (n, 28, 28) if channels is None else (n, channels, 28, 28)
    images = torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)
    return data.Dataset(images, torch.arange(n) % 3, ["cat", "dog", "cow"], "toy")


def shown(fig):
    """The axes that show something (image grids switch off the empty cells' axes)."""
    return [ax for ax in fig.axes if ax.images or ax.lines]


@pytest.fixture(autouse=True)
def no_open_figures():
    plt.close("all")
    yield
    assert plt.get_fignums() == [], "a figure stayed open in pyplot: Jupyter would show it twice"


def test_learning_curves_of_one_run():
    fig = plots.learning_curves(history(), title="one run")
    assert isinstance(fig, Figure)
    ax_loss, ax_acc = fig.axes
    assert [line.get_label() for line in ax_loss.lines] == ["train", "test"]
    assert list(ax_loss.lines[0].get_xdata()) == [1, 2, 3]
    assert list(ax_loss.lines[1].get_ydata()) == pytest.approx([1.2, 0.6, 0.4])
    assert list(ax_acc.lines[0].get_ydata()) == pytest.approx([0.5, 0.75, 1 - 0.5 / 3])
    assert ax_loss.lines[1].get_linestyle() == "--"
    assert fig._suptitle.get_text() == "one run"


def test_learning_curves_compare_runs_and_skip_a_missing_test_set():
    fig = plots.learning_curves({"wd 0": history(), "wd 0.1": history(test=False)})
    labels = [line.get_label() for line in fig.axes[0].lines]
    assert labels == ["wd 0: train", "wd 0: test", "wd 0.1: train"]
    colors = [line.get_color() for line in fig.axes[0].lines]
    assert colors[0] == colors[1] != colors[2]  # one color per run


def test_learning_curves_of_an_empty_history_say_to_train():
    with pytest.raises(ValueError, match="the history is empty: train for at least one epoch"):
        plots.learning_curves([])
    with pytest.raises(ValueError, match="history 'wd 0.1' is empty"):
        plots.learning_curves({"wd 0": history(), "wd 0.1": []})


def accuracy_history(train_acc, test_acc):
    return [{"epoch": e, "train_loss": 1.0, "train_acc": a, "test_loss": 1.0, "test_acc": b}
            for e, (a, b) in enumerate(zip(train_acc, test_acc), start=1)]


def test_learning_curves_zoom_the_accuracy_axis_to_the_data():
    # 85-92%: on a 0-100% axis the two curves and their gap would be squashed into the top.
    rows = accuracy_history([0.855, 0.875, 0.89, 0.91, 0.92], [0.845, 0.86, 0.88, 0.89, 0.905])
    ax_acc = plots.learning_curves(rows).axes[1]
    low, high = ax_acc.get_ylim()
    assert 0.80 <= low < 0.845 and 0.92 < high <= 0.96  # every point inside, the axis about 10 points tall
    assert ax_acc.get_title() == f"accuracy (axis zoomed to the data: from {low:.0%})"  # says it does not start at 0
    ax_acc.figure.canvas.draw()
    assert all(t.get_text().endswith("%") for t in ax_acc.get_yticklabels() if t.get_text())


def test_learning_curves_show_the_whole_scale_when_a_run_collapses():
    # One run near chance, one near 98% (as 05's normal vs inverted digits): the axis starts at 0.
    fig = plots.learning_curves({"normal": accuracy_history([0.9, 0.98], [0.9, 0.97]),
                                 "inverted": accuracy_history([0.11, 0.1], [0.1, 0.1])})
    low, high = fig.axes[1].get_ylim()
    assert low == 0 and 0.98 < high <= 1.01
    assert fig.axes[1].get_title() == "accuracy"


@pytest.mark.parametrize("accuracies", [[0.9], [1.0, 1.0], [0.5, 0.52], [0.0, 0.05], [0.63, 0.66, 0.9], [0.2, 1.0]])
def test_accuracy_limits_hold_the_data_and_stay_readable(accuracies):
    low, high = plots.accuracy_limits(accuracies)
    assert (low == 0 or low <= min(accuracies) - 0.004) and max(accuracies) + 0.004 <= high  # no point on the frame
    assert high - low >= 0.1 - 1e-9 and 0 <= low and high <= 1.01
    assert low == 0 or low >= 0.1  # near 0 the whole scale shows
    assert round(low * 100, 6) == int(round(low * 100)) and round(high * 100, 6) == int(round(high * 100))  # whole percents


def test_image_grid_of_a_dataset_titles_the_labels():
    ds = toy(n=12)
    fig = plots.image_grid(ds, n=8, ncols=4)
    assert isinstance(fig, Figure)
    axes = shown(fig)
    assert len(axes) == 8
    assert [ax.get_title() for ax in axes] == ["cat", "dog", "cow", "cat", "dog", "cow", "cat", "dog"]
    assert np.allclose(axes[3].images[0].get_array(), ds.images[3].numpy() / 255)


def test_image_grid_of_color_images_shows_color():
    ds = data.colorize(toy(n=6))
    axes = shown(plots.image_grid(ds))
    assert len(axes) == 6
    picture = np.asarray(axes[2].images[0].get_array())
    assert picture.shape == (28, 28, 3)
    assert np.allclose(picture, ds.images[2].permute(1, 2, 0).numpy() / 255)


@pytest.mark.parametrize("shape", [(5, 28, 28), (5, 1, 28, 28), (5, 3, 28, 28)])
def test_image_grid_of_float_tensors(shape):
    images = torch.rand(shape)
    axes = shown(plots.image_grid(images, labels=[0, 1, 2, 3, 4]))
    assert [ax.get_title() for ax in axes] == ["0", "1", "2", "3", "4"]
    expected = images[0, 0] if len(shape) == 4 and shape[1] == 1 else images[0]
    if expected.dim() == 3:
        expected = expected.permute(1, 2, 0)
    assert np.allclose(axes[0].images[0].get_array(), expected.numpy())


def test_image_grid_marks_wrong_predictions_in_red():
    ds = toy(n=3)
    axes = shown(plots.image_grid(ds, predictions=torch.tensor([0, 2, 2])))
    assert [ax.get_title() for ax in axes] == ["cat", "cow (dog)", "cow"]
    assert [ax.title.get_color() for ax in axes] == ["black", "red", "black"]


def test_image_grid_rejects_other_shapes():
    with pytest.raises(ValueError, match=r"must be \[N, 28, 28\], \[N, 1, 28, 28\] or \[N, 3, 28, 28\], got \[4, 2, 28, 28\]"):
        plots.image_grid(torch.rand(4, 2, 28, 28))


def test_confusion_matrix_counts_truth_by_prediction():
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 2])
    predictions = torch.tensor([0, 1, 1, 1, 2, 0, 2])
    fig = plots.confusion_matrix(labels, predictions, ["a", "b", "c"])
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert np.array_equal(ax.images[0].get_array(), [[1, 1, 0], [0, 2, 0], [1, 0, 2]])  # row = truth
    assert ax.get_title() == "accuracy 71.4%"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    assert sorted(t.get_text() for t in ax.texts) == ["1", "1", "1", "2", "2"]  # the non-zero counts


def test_confusion_matrix_without_class_names_and_with_many_classes():
    labels = torch.arange(26)
    fig = plots.confusion_matrix(labels, labels.roll(1))
    ax = fig.axes[0]
    assert ax.images[0].get_array().shape == (26, 26) and ax.get_title() == "accuracy 0.0%"
    assert len(ax.texts) == 0  # too many cells to write the counts in


def test_confusion_matrix_needs_one_prediction_per_label():
    with pytest.raises(ValueError, match="3 labels but 2 predictions"):
        plots.confusion_matrix([0, 1, 2], [0, 1])


def test_weight_templates_show_each_class_row():
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10), nn.ReLU(), nn.Linear(10, 3))
    for source in (model, model[1], model[1].weight):
        fig = plots.weight_templates(source, classes=[f"class {k}" for k in range(10)])
        assert isinstance(fig, Figure)
        axes = shown(fig)
        assert [ax.get_title() for ax in axes] == [f"class {k}" for k in range(10)]
        assert np.allclose(axes[4].images[0].get_array(), model[1].weight[4].detach().reshape(28, 28).numpy())
        low, high = axes[4].images[0].get_clim()
        assert low == -high  # white means zero weight


def test_weight_templates_reject_what_is_not_a_784_input_layer():
    with pytest.raises(ValueError, match="has no nn.Linear layer"):
        plots.weight_templates(nn.Sequential(nn.Flatten(), nn.ReLU()))
    with pytest.raises(ValueError, match=r"need a \[classes, 784\] weight matrix, got \[10, 100\]"):
        plots.weight_templates(nn.Linear(100, 10))
