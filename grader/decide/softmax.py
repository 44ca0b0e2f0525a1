"""01-softmax: each test cell decided from what it handed in (see grader/decide/__init__.py).

The inputs are built here again exactly as the hidden tests build them (same seeds, same data), and the
expected values come from PyTorch's own functions or from gradient descent written out.
"""

import string

import torch
import torch.nn.functional as F
from torch import nn

from grader.checks import letters, mnist
from grader.decide import require
from mnistlab import data

SOFTMAX_OPS = {"softmax", "_softmax", "log_softmax", "_log_softmax"}
WEIGHT_OPS = {"linear", "addmm", "mm", "matmul", "bmm", "conv2d", "convolution", "einsum"}  # ops that apply a weight


def epochs():
    """The notebook's EPOCHS: 10 on the offline stand-in, 3 on the full MNIST."""
    return 10 if mnist("train").standin else 3


def model(got):
    """test-ex1-model: softmax regression is one linear layer and nothing after it, for any size."""
    for name, outputs in (("digits", 10), ("letters", 26)):
        operations = got.operations(name)
        require(sum(op in WEIGHT_OPS for op in operations) == 1 and "linear" in operations,
                f"softmax_regression(784, {outputs}) must be exactly one nn.Linear layer; its graph calls {operations}")
        require(not SOFTMAX_OPS & set(operations), "no softmax layer in the model: the loss (nn.CrossEntropyLoss) applies it")
        n_params = sum(torch.Size(shape).numel() for shape in got.parameter_shapes(name))
        require(n_params == 784 * outputs + outputs, f"softmax regression with {outputs} outputs has 784 x {outputs} "
                                                     f"weights + {outputs} biases = {784 * outputs + outputs} parameters, got {n_params}")
        for batch in (5, 1):
            scores = got.model(name)(torch.rand(batch, 1, 28, 28))
            require(scores.shape == (batch, outputs), f"expected scores of shape [{batch}, {outputs}], got {list(scores.shape)}")
            require(torch.isfinite(scores).all(), "scores must be finite")


def linear(weight, bias):
    layer = nn.Linear(784, 10)
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)
    return nn.Sequential(nn.Flatten(), layer)


def loss_on(model, ds):
    x = ds.images.unsqueeze(1).float().div(255)
    with torch.no_grad():
        return F.cross_entropy(model(x), ds.labels).item()


def reference_gd(start, x, y, lr, steps):
    """Full-batch gradient descent written out, without an optimizer: the parameters and losses after `steps`."""
    weight, bias = (p.detach().clone().requires_grad_() for p in start)
    losses = []
    for _ in range(steps):
        loss = F.cross_entropy(x.flatten(1) @ weight.T + bias, y)
        losses.append(loss.item())
        grad_w, grad_b = torch.autograd.grad(loss, [weight, bias])
        with torch.no_grad():
            weight -= lr * grad_w
            bias -= lr * grad_b
    return weight.detach(), bias.detach(), losses


def loop(got):
    """test-ex2-loop: one epoch trains (visible), and train_epoch is gradient descent done right (hidden)."""
    small = data.subset(mnist("train"), per_class=10, seed=1)
    require(got["returned"] == "float", f"train_epoch must return the mean loss as a Python float, got {got['returned']}")
    before, after = (linear(got[f"{when}_weight"], got[f"{when}_bias"]) for when in ("before", "after"))
    require(not all(torch.equal(p, q) for p, q in zip(before.parameters(), after.parameters())),
            "the weights did not change: is optimizer.step() called?")
    loss_before, loss_after = loss_on(before, small), loss_on(after, small)
    require(loss_after < loss_before, f"one epoch should lower the loss on these images: {loss_before:.3f} -> {loss_after:.3f}")

    tiny = data.subset(mnist("train"), per_class=3, seed=2)
    x, y = tiny.images.unsqueeze(1).float().div(255), tiny.labels
    weight, bias, losses = reference_gd((got["start_weight"], got["start_bias"]), x, y, lr=0.5, steps=3)
    require(torch.allclose(got["gd_weight"], weight, atol=1e-5) and torch.allclose(got["gd_bias"], bias, atol=1e-5),
            "three epochs of one full batch do not match three gradient-descent steps: is zero_grad() called before backward()?")
    returned = got["gd_losses"]
    require(returned.shape == (3,) and torch.allclose(returned.double(), torch.tensor(losses, dtype=torch.float64), atol=1e-4),
            f"returned losses {returned.tolist()} != {[round(v, 4) for v in losses]}")

    fed = got["fed"]
    require(int(fed.sum()) == len(small), f"one epoch fed {int(fed.sum())} images to the model, the dataset has {len(small)}")
    frozen = linear(got["frozen_weight"], got["frozen_bias"])
    require(abs(got["frozen_loss"] - loss_on(frozen, small)) < 1e-4,
            "return the mean loss over the images (weight each batch by len(y))")


def mnist_accuracy(got):
    """test-mnist-accuracy (with the clean accuracy check): the model trained EPOCHS epochs, and is the one measured."""
    require(got["epochs"] == epochs(), f"the model must be trained for EPOCHS = {epochs()} epochs, its history has {got['epochs']}")
    require(abs(got["last_test_acc"] - got["accuracy"]) < 1e-9, "the model evaluated must be the one the history describes")


def cross_entropy_cases():
    """The logits and labels of the hidden test, built with the same seeds."""
    generator = torch.Generator().manual_seed(3)
    cases = [
        (torch.tensor([[1000.0, 0.0, -1000.0], [-1000.0, -1000.0, -999.0]]), torch.tensor([0, 2])),
        (torch.tensor([[1000.0, 0.0, -1000.0]]), torch.tensor([2])),
        (torch.tensor([[-1000.0, -1000.0, -1000.0, -1000.0]]), torch.tensor([3])),
        (torch.zeros(2, 10), torch.tensor([4, 9])),
        (torch.randn(5, 26, dtype=torch.float64, generator=generator) * 50, torch.randint(0, 26, (5,), generator=generator)),
    ]
    gradient_x = torch.randn(6, 10, generator=generator) * 20
    return cases, (gradient_x, torch.randint(0, 10, (6,), generator=generator))


def cross_entropy(got):
    """test-ex3-ce: log_softmax and cross_entropy equal PyTorch's, stay finite, keep their input, differentiate right."""
    torch.manual_seed(0)
    logits, labels = torch.randn(8, 10) * 3, torch.randint(0, 10, (8,))
    require(torch.allclose(got["visible_ls"], F.log_softmax(logits, dim=1), atol=1e-5), "log_softmax differs from F.log_softmax")
    require(torch.allclose(torch.as_tensor(got["visible_ce"]), F.cross_entropy(logits, labels), atol=1e-5),
            "cross_entropy differs from F.cross_entropy")
    require(torch.isfinite(torch.as_tensor(got["big"])).all(), "cross_entropy must stay finite for logits of ±1000")
    cases, (x, y) = cross_entropy_cases()
    for i, (logits, labels) in enumerate(cases):
        shown = logits.tolist() if logits.numel() <= 10 else f"a [{logits.shape[0]}, {logits.shape[1]}] batch of float64 logits"
        require(torch.equal(got[f"logits_after_{i}"], logits), "log_softmax must not change the logits in place")
        got_ls = got[f"ls_{i}"]
        require(got_ls.shape == logits.shape and torch.isfinite(got_ls).all(), f"log_softmax of {shown} is not finite")
        require(torch.allclose(got_ls.to(logits.dtype), F.log_softmax(logits, dim=1), atol=1e-4), f"log_softmax wrong for {shown}")
        require(got.shape(f"ce_{i}") == (), "cross_entropy returns one number (a 0-d tensor): the mean over the batch")
        want = F.cross_entropy(logits, labels).item()
        require(abs(got[f"ce_{i}"] - want) <= 1e-4 + 1e-5 * abs(want), f"cross_entropy wrong for {shown}: {got[f'ce_{i}']} != {want}")
    require(abs(got["uniform"] - torch.log(torch.tensor(10.0)).item()) < 1e-6, "equal logits over 10 classes must cost log(10)")
    require(abs(got["far"] - 2000.0) < 1e-2, "a true class 2000 below the best must cost 2000")
    reference = torch.autograd.grad(F.cross_entropy(x.requires_grad_(), y), x)[0]
    require(got.shape("gradient") == (6, 10) and torch.allclose(got["gradient"], reference, atol=1e-6),
            "gradient of cross_entropy differs from F.cross_entropy's")


def fix(got):
    """test-ex4-fix: fix_letters transposes every image, shifts the labels to 0..25, names them, and changes nothing given."""
    raw_train, raw_test = data.load("emnist-letters", "train"), data.load("emnist-letters", "test")
    require(got["kind"] == "Dataset", f"fix_letters must return a mnistlab data.Dataset, got a {got['kind']}")
    require(tuple(got["train_shape"].tolist()) == tuple(raw_train.images.shape), "the images keep their shape [N, 28, 28]")
    labels = got["train_labels"]
    require(labels.min() == 0 and labels.max() == 25, "labels must run 0..25")
    require(got["train_classes"] == list(string.ascii_lowercase), f"classes must be 'a'..'z', got {got['train_classes'][:3]}...")
    require(data.EMNIST_RAW not in got["train_source"], "the source must no longer say the data is raw")
    samples = [0, 1, 777, 5000, len(raw_train) - 1]
    for i, image in zip(samples, got["train_images"]):
        require(torch.equal(image, raw_train.images[i].T), f"image {i} is not upright (it must be the transposed raw image)")
    require(torch.equal(labels, raw_train.labels - 1), "labels must be the raw labels minus 1")
    require(torch.equal(got["test_images"], raw_test.images.transpose(1, 2)) and torch.equal(got["test_labels"], raw_test.labels - 1),
            "the test letters must be fixed the same way")
    require(data.EMNIST_FIXED in got["test_source"], f"the source must say the letters are fixed ({data.EMNIST_FIXED!r})")
    fixed = got["tiny_images"]
    require(fixed[0, 5, 2] == 200 and fixed[0].sum() == 200, "a pixel at (2, 5) must move to (5, 2)")
    require(fixed[1, 0, 27] == 17 and fixed[1].sum() == 17, "a pixel at (27, 0) must move to (0, 27)")
    require(got["tiny_labels"].tolist() == [0, 25] and got["tiny_classes"][0] == "a" and got["tiny_classes"][25] == "z",
            "label 1 ('a') must become 0 and 26 ('z') 25, with the classes named 'a'..'z'")
    given = torch.zeros(2, 28, 28, dtype=torch.uint8)
    given[0, 2, 5], given[1, 27, 0] = 200, 17
    require(torch.equal(got["given_images"], given) and got["given_labels"].tolist() == [1, 26]
            and got["given_classes"] == ["N/A"] + list(string.ascii_lowercase), "fix_letters must not change the dataset it is given")
    require(fixed.dtype == torch.uint8 and got["tiny_labels"].dtype == torch.int64, "keep the dtypes: uint8 images, int64 labels")


def letters_accuracy(got):
    """test-letters-accuracy (with the clean accuracy check, which also needs 26 outputs): measured on the fixed letters."""
    require(torch.equal(got["test_labels"], letters("test").labels), "evaluate on the fixed test letters")


def per_class(got):
    """test-ex5-per-class: accuracy per true class, NaN for a class without images, also for the letters model."""
    require(torch.allclose(got["visible"], torch.tensor([0.5, 2 / 3, 1.0])), f"expected [0.5, 0.667, 1.0], got {got['visible'].tolist()}")
    acc = got["empty"]
    require(acc.shape == (4,) and acc.dtype.is_floating_point, "one float per class, also for classes without images")
    require(acc[0] == 0.0 and acc[2] == 0.5 and torch.isnan(acc[1]) and torch.isnan(acc[3]),
            f"classes without images must be NaN: got {acc.tolist()} for labels [2, 2, 0], predictions [2, 0, 1]")
    one = got["one"]
    require(one.shape == (10,) and one[7] == 1.0 and torch.isnan(one[:7]).all(), "one image of class 7, predicted right: class 7 is 1.0, the others NaN")
    labels, predicted = got["letters_labels"], got["letters_predicted"]
    want = torch.tensor([(predicted[labels == k] == k).float().mean().item() for k in range(26)])
    require(torch.allclose(got["letters"].float(), want, equal_nan=True), "per-class accuracy of the letters model is wrong")


CELLS = {
    "test-ex1-model": model,
    "test-ex2-loop": loop,
    "test-mnist-accuracy": mnist_accuracy,
    "test-ex3-ce": cross_entropy,
    "test-ex4-fix": fix,
    "test-letters-accuracy": letters_accuracy,
    "test-ex5-per-class": per_class,
}
