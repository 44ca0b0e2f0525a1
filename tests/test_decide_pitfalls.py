"""grader/decide/pitfalls.py: 05-pitfalls' test cells decided from handed-in values, without a notebook.

Each test hands values in as the master's hidden tests do (mnistlab.course.hand_in, hand_in_model), from
a correct implementation and from the mistakes the tests are written for, and checks the decision and its words.
"""

import functools

import pytest
import torch
from torch import nn

from grader import decide
from grader.checks import colored, negative, pitfalls_mnist
from grader.decide import pitfalls
from mnistlab import course, train


def verdict(hand_in_folder, cell):
    result = decide.decide(hand_in_folder, cell, pitfalls.CELLS[cell])
    return result["passed"], result["reason"] or ""


def test_nothing_handed_in_fails_every_cell(hand_in_folder):
    assert set(pitfalls.CELLS) == {"test-ex1-dead", "test-ex2-structure", "test-ex2-accuracy",
                                   "test-ex3-structure", "test-ex3-accuracy"}
    for cell in pitfalls.CELLS:
        passed, reason = verdict(hand_in_folder, cell)
        assert not passed and "nothing was handed in" in reason


# ---------------------------------------------------------------- test-ex1-dead

def dead_units(model, ds, n=1000, mistake=None):
    """The exercise's solution, and the mistakes the test is written for."""
    x, _ = next(train.batches(ds, n, device="cpu"))
    fractions = []
    with torch.no_grad():
        for layer in model:
            x = layer(x)
            if isinstance(layer, nn.ReLU):
                if mistake == "first image only":
                    never_on = ~(x[:1] > 0).any(dim=0)
                elif mistake == "first channel only" and x.dim() == 4:
                    never_on = ~(x[:, :1] > 0).any(dim=0)
                else:
                    never_on = ~(x > 0).any(dim=0)
                fraction = never_on.float().mean()
                fractions.append(fraction if mistake == "tensors" else fraction.item())
    return tuple(fractions) if mistake == "tuple" else fractions


def hand_in_dead(mistake=None):
    """What the hidden part of test-ex1-dead hands in, for dead_units with `mistake`."""
    mnist_test = pitfalls_mnist("test")
    fractions = dead_units(pitfalls.toy_network(), mnist_test, n=50, mistake=mistake)
    picky_all = dead_units(pitfalls.picky_network(), mnist_test, n=200, mistake=mistake)
    picky_one = dead_units(pitfalls.picky_network(), mnist_test, n=1, mistake=mistake)
    conv_all = dead_units(pitfalls.conv_network(), mnist_test, n=10, mistake=mistake)
    course.hand_in("test-ex1-dead", toy=fractions, toy_item_types=[type(f).__name__ for f in fractions],
                   picky=picky_all, picky_one_image=picky_one, conv=conv_all,
                   returned=[type(v).__name__ for v in (fractions, picky_all, picky_one, conv_all)])


@pytest.mark.parametrize("mistake, words", [(None, None), ("tuple", "return a list"),
                                            ("tensors", "Python float"),
                                            ("first image only", "a unit that fires for some images is alive"),
                                            ("first channel only", "channels x positions")])
def test_dead(hand_in_folder, mistake, words):
    hand_in_dead(mistake)
    passed, reason = verdict(hand_in_folder, "test-ex1-dead")
    assert passed if words is None else (not passed and words in reason), reason


def test_dead_looks_at_the_first_n_images(hand_in_folder):
    """A function that always looks at every image (ignores n) is caught by n=1."""
    hand_in_dead()
    mnist_test = pitfalls_mnist("test")
    course.hand_in("test-ex1-dead", picky_one_image=dead_units(pitfalls.picky_network(), mnist_test, n=200))
    passed, reason = verdict(hand_in_folder, "test-ex1-dead")
    assert not passed and "first n images" in reason, reason


def test_dead_reference_counts_what_the_notebook_expects():
    mnist_test = pitfalls_mnist("test")
    assert pitfalls.dead_fractions(pitfalls.toy_network(), mnist_test, n=50) == [0.5, 0.5]
    assert pitfalls.dead_fractions(pitfalls.picky_network(), mnist_test, n=200) == [0.5]
    assert pitfalls.dead_fractions(pitfalls.conv_network(), mnist_test, n=10) == [0.5]


# ---------------------------------------------------------------- test-ex2-structure

class Standardize(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, x):
        return (x - self.mean) / self.std


def inverted_stats():
    x = negative("train").images.float().div(255)
    return x.mean().item(), x.std().item()


def mlp(standardize=True, output_relu=False, sizes=(784, 200, 100, 10), hidden_relus=2):
    layers = [Standardize(*inverted_stats())] if standardize else []
    layers += [nn.Flatten(), nn.Linear(sizes[0], sizes[1]), nn.ReLU(), nn.Linear(sizes[1], sizes[2])]
    layers += [nn.ReLU()] * (hidden_relus - 1) + [nn.Linear(sizes[2], sizes[3])]
    return nn.Sequential(*layers, *([nn.ReLU()] if output_relu else []))


def hand_in_mlp_structure(model):
    """What the hidden part of test-ex2-structure hands in."""
    course.hand_in_model("test-ex2-structure", "model", model, torch.rand(8, 1, 28, 28))
    first_linear = [m for m in model.modules() if isinstance(m, nn.Linear)][0]

    def first_linear_input(x):
        seen = {}
        hook = first_linear.register_forward_pre_hook(lambda module, inputs: seen.setdefault("x", inputs[0]))
        try:
            model(x)
        finally:
            hook.remove()
        return seen["x"]

    course.hand_in_model("test-ex2-structure", "first_linear_input", first_linear_input, torch.rand(8, 1, 28, 28))


@pytest.mark.parametrize("settings, words", [({}, None),
                                             ({"output_relu": True}, "must end with the nn.Linear"),
                                             ({"standardize": False}, "standardise them"),
                                             ({"hidden_relus": 1}, "exactly the 2 hidden ReLUs"),
                                             ({"sizes": (784, 256, 128, 10)}, "published sizes")])
def test_mlp_structure(hand_in_folder, settings, words):
    hand_in_mlp_structure(mlp(**settings))
    passed, reason = verdict(hand_in_folder, "test-ex2-structure")
    assert passed if words is None else (not passed and words in reason), reason


def test_mlp_scores_must_go_negative(hand_in_folder):
    """Scores that are never negative fail even when the model ends with its nn.Linear."""
    model = mlp()
    with torch.no_grad():
        model[-1].weight.zero_()
        model[-1].bias.fill_(1.0)
    hand_in_mlp_structure(model)
    passed, reason = verdict(hand_in_folder, "test-ex2-structure")
    assert not passed and "never negative" in reason, reason


# ---------------------------------------------------------------- test-ex3-structure

def cnn(conv_relu=True, score_relu=False, padding=1, filters=64):
    def block(c_in, c_out):
        return [nn.Conv2d(c_in, c_out, 3, padding=padding)] + ([nn.ReLU()] if conv_relu else []) + [nn.MaxPool2d(2)]
    size = 7 if padding == 1 else 5
    layers = block(3, filters) + block(filters, 64) + [nn.Flatten(), nn.Linear(64 * size * size, 10)]
    return nn.Sequential(*layers, *([nn.ReLU()] if score_relu else []))


@pytest.mark.parametrize("model, words", [
    (cnn(), None),
    (nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
                   nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
                   nn.Flatten(), nn.Linear(64 * 7 * 7, 10)), None),
    (cnn(conv_relu=False), "no ReLU between the two convolutions"),
    (cnn(conv_relu=False, score_relu=True), "must end with the nn.Linear"),
    (cnn(padding=0), "padding=1"),
    (cnn(filters=32), "64-filter"),
    (nn.Sequential(cnn(), nn.Softmax(dim=1)), "must end with the nn.Linear"),
    (nn.Sequential(*cnn()[:4], nn.MaxPool2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(64 * 7 * 7, 10)), None),
])
def test_cnn_structure(hand_in_folder, model, words):
    course.hand_in_model("test-ex3-structure", "model", model, torch.rand(4, 3, 28, 28))
    passed, reason = verdict(hand_in_folder, "test-ex3-structure")
    assert passed if words is None else (not passed and words in reason), reason


def test_cnn_reading_the_graph(hand_in_folder):
    course.hand_in_model("test-ex3-structure", "model", cnn(padding=0), torch.rand(4, 3, 28, 28))
    got = decide.Handed(hand_in_folder, "test-ex3-structure")
    convs = got.calls("model", "conv2d")
    assert [c["weight"] for c in convs] == [[64, 3, 3, 3], [64, 64, 3, 3]]
    assert "padding" not in convs[0]  # left at its default, 0
    assert got.linear_layers("model") == [(64 * 5 * 5, 10)]


# ---------------------------------------------------------------- the fresh-seed retrains

@functools.lru_cache(maxsize=None)  # a cache, not a module fixture: the data must load inside a test (offline)
def negative_mlp():
    """fixed_mlp trained as the notebook's run() does (SGD lr 0.1, 5 epochs, seed 2024) on the inverted digits."""
    train.seed_everything(2024)
    model = mlp()
    train.fit(model, negative("train"), optimizer=torch.optim.SGD(model.parameters(), lr=0.1), epochs=5,
              device="cpu", quiet=True)
    return model.eval()


@functools.lru_cache(maxsize=None)
def colored_classifier():
    """A quickly trained linear classifier of the colored digits (the decision measures any model)."""
    train.seed_everything(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 28 * 28, 10))
    train.fit(model, colored("train"), optimizer=torch.optim.Adam(model.parameters(), lr=1e-3), epochs=3,
              device="cpu", quiet=True)
    return model.eval()


def test_mlp_fresh_seed(hand_in_folder):
    example = next(train.batches(negative("test"), 8, device="cpu"))[0]
    course.hand_in_model("test-ex2-accuracy", "seed2024", negative_mlp(), example)
    passed, reason = verdict(hand_in_folder, "test-ex2-accuracy")
    assert passed, reason


def test_mlp_fresh_seed_below_threshold(hand_in_folder):
    """The published network (ReLU on the scores, raw inverted inputs): untrained here, far below the bar."""
    train.seed_everything(2024)
    example = next(train.batches(negative("test"), 8, device="cpu"))[0]
    course.hand_in_model("test-ex2-accuracy", "seed2024", mlp(standardize=False, output_relu=True), example)
    passed, reason = verdict(hand_in_folder, "test-ex2-accuracy")
    assert not passed and "on seed 2024 the fixed network reached only" in reason, reason


def test_cnn_fresh_seed(hand_in_folder):
    example = next(train.batches(colored("test"), 8, device="cpu"))[0]
    course.hand_in_model("test-ex3-accuracy", "seed2024", colored_classifier(), example)
    passed, reason = verdict(hand_in_folder, "test-ex3-accuracy")
    assert passed, reason


def test_cnn_fresh_seed_must_predict_every_class(hand_in_folder):
    classifier, never_nine = colored_classifier(), torch.zeros(10)
    never_nine[9] = -1e4

    def model(x):
        return classifier(x) + never_nine

    example = next(train.batches(colored("test"), 8, device="cpu"))[0]
    course.hand_in_model("test-ex3-accuracy", "seed2024", model, example)
    passed, reason = verdict(hand_in_folder, "test-ex3-accuracy")
    assert not passed and "should predict every class" in reason and "[9]" in reason, reason


def test_cnn_fresh_seed_below_threshold(hand_in_folder):
    train.seed_everything(2024)
    example = next(train.batches(colored("test"), 8, device="cpu"))[0]
    course.hand_in_model("test-ex3-accuracy", "seed2024", cnn(conv_relu=False, score_relu=True), example)
    passed, reason = verdict(hand_in_folder, "test-ex3-accuracy")
    assert not passed and "on seed 2024 the fixed CNN reached only" in reason, reason
