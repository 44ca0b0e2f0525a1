"""Notebook 05 (pitfalls): the decisions of its test cells, from what they handed in (see grader/decide).

test-ex1-dead       dead_units' fractions on three networks with fixed weights, against the fractions this
                    module counts itself on its own copy of the notebook's MNIST test images
test-ex2-structure  fixed_mlp, read from its exported graph: sizes, raw scores out, two ReLUs, and the
                    input its first linear layer sees for the grader's inverted images (standardised)
test-ex2-accuracy   fixed_mlp trained again on seed 2024: its accuracy on the grader's inverted test images
test-ex3-structure  fixed_cnn, read from its exported graph: the two convolutions, ReLUs, raw scores out
test-ex3-accuracy   fixed_cnn trained again on seed 2024: its accuracy on the grader's colored test images,
                    and it predicts every class
"""

import torch
from torch import nn

from grader.decide import require

ASSIGNMENT = "05-pitfalls"
RELU = ("relu", "relu_")  # nn.ReLU() and nn.ReLU(inplace=True)


# ---------------------------------------------------------------- test-ex1-dead

def dead_fractions(model, ds, n):
    """The reference dead_units: per nn.ReLU of the nn.Sequential `model`, the fraction of its units that
    are 0 for every one of the first `n` images of `ds`."""
    from mnistlab import train

    x, _ = next(train.batches(ds, n, device="cpu"))
    fractions = []
    with torch.no_grad():
        for layer in model:
            x = layer(x)
            if isinstance(layer, nn.ReLU):
                fractions.append((x > 0).any(dim=0).logical_not().float().mean().item())
    return fractions


def toy_network():
    """The visible test's network: first-layer units 1 and 3 dead, 0 and 2 alive; second-layer unit 1 dead."""
    toy = nn.Sequential(nn.Flatten(), nn.Linear(784, 4), nn.ReLU(), nn.Linear(4, 2), nn.ReLU())
    with torch.no_grad():
        toy[1].weight.zero_()
        toy[1].bias.copy_(torch.tensor([1.0, -1.0, 2.0, -3.0]))
        toy[3].weight.fill_(1.0)
        toy[3].bias.copy_(torch.tensor([0.0, -100.0]))
    return toy


def picky_network():
    """Unit 0 looks at the centre pixel (on for some digits only: alive), unit 1 is never on (dead)."""
    picky = nn.Sequential(nn.Flatten(), nn.Linear(784, 2), nn.ReLU())
    with torch.no_grad():
        picky[1].weight.zero_()
        picky[1].weight[0, 14 * 28 + 14] = 1.0
        picky[1].bias.copy_(torch.tensor([-0.5, -0.5]))
    return picky


def conv_network():
    """A conv layer: channel 0 on everywhere, channel 1 never on (half of its channels x positions dead)."""
    conv = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
    with torch.no_grad():
        conv[0].weight.zero_()
        conv[0].bias.copy_(torch.tensor([1.0, -1.0]))
    return conv


def dead(got):
    from grader.checks import pitfalls_mnist

    mnist_test = pitfalls_mnist("test")  # the notebook's mnist_test
    returned = got["returned"]  # the type of each value dead_units returned: toy, picky (n=200, n=1), conv
    require(returned[0] == "list", f"return a list (one fraction per ReLU), got {returned[0]}")
    toy = got["toy"].tolist()
    require(len(toy) == 2, f"the toy network has 2 ReLUs, so 2 fractions; got {len(toy)}")
    require(got["toy_item_types"] == ["float", "float"], "each fraction must be a Python float (use .item())")
    expected = dead_fractions(toy_network(), mnist_test, n=50)  # [0.5, 0.5]
    require(all(abs(f - e) < 1e-6 for f, e in zip(toy, expected)), f"expected {expected}, got {toy}")
    require(returned == ["list"] * 4, f"dead_units must return a list every time; it returned {returned}")

    centre = mnist_test.images[:200, 14, 14].float() / 255
    require(0 < (centre > 0.5).sum() < 200, "test setup: the centre pixel must be bright in some images only")
    picky, expected = got["picky"].tolist(), dead_fractions(picky_network(), mnist_test, n=200)  # [0.5]
    require(len(picky) == 1 and abs(picky[0] - expected[0]) < 1e-6,
            f"a unit that fires for some images is alive: expected {expected}, got {picky}")
    # It must look at n images, not just the first one (nor always all of them).
    one, expected = got["picky_one_image"].tolist(), dead_fractions(picky_network(), mnist_test, n=1)
    require(one == expected, f"with n=1 (the first image only) expected {expected}, got {one}: look at the first n images")
    # A conv layer's units (channels x positions) count too.
    conv, expected = got["conv"].tolist(), dead_fractions(conv_network(), mnist_test, n=10)  # [0.5]
    require(conv == expected, f"a conv layer's units are its channels x positions: expected {expected}, got {conv}")


# ---------------------------------------------------------------- test-ex2: fixed_mlp

def mlp_structure(got):
    from grader.checks import negative
    from mnistlab import train

    scores = got.model("model")(torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(0)))
    require(scores.shape == (8, 10), f"expected scores of shape [8, 10], got {list(scores.shape)}")
    sizes = got.linear_layers("model")
    require(sizes == [(784, 200), (200, 100), (100, 10)],
            f"keep the published sizes 784-200-100-10; got linear layers {sizes}")
    operations = got.operations("model")
    require(operations[-1] == "linear", f"the model must end with the nn.Linear, not {operations[-1]} "
                                        f"(its operations: {operations})")
    require((scores < 0).any(), "the scores are never negative: is there still a ReLU (or softmax) on the output?")
    require(sum(op in RELU for op in operations) == 2, f"keep exactly the 2 hidden ReLUs (operations: {operations})")
    # The first linear layer sees standardised inputs: inverted images reach it centred near 0, not at 0.87.
    images = next(train.batches(negative("train"), 500, device="cpu"))[0]
    mean = got.model("first_linear_input")(images).mean().item()
    require(abs(mean) < 0.5, f"inverted inputs reach the first layer with mean {mean:.2f}: standardise them")


def mlp_fresh_seed(got):
    from grader.checks import negative
    from grader.clean import accuracy
    from mnistlab import thresholds

    test = negative("test")
    reached, minimum = accuracy(got.model("seed2024"), test), thresholds.threshold(ASSIGNMENT, "negative-mlp", test)
    require(reached >= minimum, f"on seed 2024 the fixed network reached only {reached:.1%} (threshold {minimum:.1%})")


# ---------------------------------------------------------------- test-ex3: fixed_cnn

def cnn_structure(got):
    scores = got.model("model")(torch.rand(4, 3, 28, 28, generator=torch.Generator().manual_seed(0)))
    require(scores.shape == (4, 10), f"expected scores of shape [4, 10] for colored images, got {list(scores.shape)}")
    convs = []  # (in_channels, out_channels, kernel_size, padding) of each convolution
    for call in got.calls("model", "conv2d"):
        weight, padding = call["weight"], call.get("padding", [0, 0])  # weight: [out, in, height, width]
        convs.append((weight[1], weight[0], tuple(weight[2:]), tuple(padding) if isinstance(padding, list) else padding))
    require(convs == [(3, 64, (3, 3), (1, 1)), (64, 64, (3, 3), (1, 1))],
            f"keep the two 64-filter 3x3 convolutions with padding=1 (Keras' padding='same'); got {convs}")
    operations = got.operations("model")
    require(operations[-1] == "linear", f"the model must end with the nn.Linear (raw scores), not {operations[-1]}")
    last_in = got.linear_layers("model")[-1][0]
    require(last_in == 64 * 7 * 7, f"the last layer takes 64 x 7 x 7 features, got {last_in}")
    require((scores < 0).any() and not torch.allclose(scores.sum(1), torch.ones(4)),
            "the scores look like ReLU or softmax outputs")
    first, second = [i for i, op in enumerate(operations) if op == "conv2d"]
    require(any(op in RELU for op in operations[first:second]), f"no ReLU between the two convolutions: {operations}")
    require(any(op in RELU for op in operations[second:]), f"no ReLU after the second convolution: {operations}")


def cnn_fresh_seed(got):
    from grader.checks import colored
    from mnistlab import thresholds, train

    test, run = colored("test"), got.model("seed2024")
    with torch.no_grad():
        scores = torch.cat([run(x) for x, _ in train.batches(test, 500, device="cpu")])
    require(scores.shape == (len(test), 10), f"the model gives scores of shape {list(scores.shape)} for "
                                             f"{len(test)} images; expected [{len(test)}, 10]")
    predictions = scores.argmax(1)
    reached = (predictions == test.labels).float().mean().item()
    minimum = thresholds.threshold(ASSIGNMENT, "colored-cnn", test)
    require(reached >= minimum, f"on seed 2024 the fixed CNN reached only {reached:.1%} (threshold {minimum:.1%})")
    never = sorted(set(range(10)) - set(predictions.tolist()))
    require(not never, f"the fixed CNN should predict every class; on seed 2024 it never predicts {never}")


CELLS = {
    "test-ex1-dead": dead,
    "test-ex2-structure": mlp_structure,
    "test-ex2-accuracy": mlp_fresh_seed,
    "test-ex3-structure": cnn_structure,
    "test-ex3-accuracy": cnn_fresh_seed,
}
