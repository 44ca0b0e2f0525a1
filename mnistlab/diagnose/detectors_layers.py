"""Detectors of the model's layers and what reaches them: linear stacks, input scale, dead ReLUs, raw EMNIST.

linear_stack: taught in 03 (two Linear layers with no ReLU between them) and met again in 05 (the
colored-MNIST CNN). input_scale and dead_relu: taught in 05 (inverted images are off-centre, and
units that never turn on); raw 0..255 pixels, input_scale's other half, are in no notebook.
raw_emnist: seen in 01 (EMNIST letters as they ship: transposed, labels 1..26).
Each takes the Probe and returns a list of Findings (empty: nothing wrong), or raises Skip.
"""

import torch

from mnistlab.diagnose.findings import Finding, Skip, _num
from mnistlab.diagnose.probe import CHAINABLE, _need_forward
from mnistlab.diagnose.settings import (CONNECTED_ATOL, CONNECTED_RTOL, DEAD_WARNING, OFF_CENTRE_MEAN,
                                        OFF_CENTRE_RATIO, RAW_PIXELS, RAW_SCALE_MAX, RAW_SCALE_RMS)


def linear_stack(p):
    """Weight layers (Linear, Conv) stacked with no activation between them.

    Two linear maps in a row are one linear map: Linear(784, 200) then Linear(200, 10) computes
    exactly what a single Linear(784, 10) can, so the extra layer adds parameters but no power.
    Max-pooling in between changes that: the largest of a few neighbours is a (piecewise-linear)
    nonlinearity, so conv -> max-pool -> conv is not one linear map. Such stacks are reported too,
    as information, with what is true of them: each weight layer is linear, and choosing which
    neighbour wins is the only nonlinearity. Whether an activation after each layer helps is then
    a measurement (train both), not a rule.
    Measured, not guessed: in the forward pass each layer received exactly what the one before it
    produced (only reshaping, dropout, batch norm or max-pooling in between).
    """
    if p.calls is None:
        raise Skip("needs data (a Dataset or (x, y)) for one forward pass, unless the model is an nn.Sequential")
    chains, chain = [], []

    def connected(a, b):
        if p.static_order:
            return True
        if a.first_out is None or b.first_in is None or a.first_out.shape != b.first_in.shape:
            return False
        return torch.allclose(a.first_out, b.first_in, rtol=CONNECTED_RTOL, atol=CONNECTED_ATOL)

    for call in p.calls:
        if call.kind in CHAINABLE and chain and connected(chain[-1], call):
            chain.append(call)
            continue
        if sum(c.kind == "weight" for c in chain) >= 2:
            chains.append(chain)
        chain = [call] if call.kind in CHAINABLE else []
    if sum(c.kind == "weight" for c in chain) >= 2:
        chains.append(chain)
    if not chains:
        return []
    described, pooled, linear_pairs, pooled_pairs = [], 0, [], []
    for chain in chains:
        weights = [i for i, c in enumerate(chain) if c.kind == "weight"]
        chain = chain[weights[0] : weights[-1] + 1]  # dropout/flatten at either end are not part of the story
        pooled += any(c.kind == "max_pool" for c in chain)
        described.append(" -> ".join(c.name for c in chain))
        weights = [i for i, c in enumerate(chain) if c.kind == "weight"]
        for a, b in zip(weights, weights[1:]):  # each pair of successive weight layers: what lies between them
            pair = f"{chain[a].name} and {chain[b].name}"
            (pooled_pairs if any(c.kind == "max_pool" for c in chain[a + 1 : b]) else linear_pairs).append(pair)
    weights_in_chains = [sum(c.kind == "weight" for c in chain) for chain in chains]
    evidence = {"linear_stacks": len(chains), "stacks_with_only_max_pooling": pooled,
                "weight_layers_in_stacks": sum(weights_in_chains),
                "weight_layers": sum(c.kind == "weight" for c in p.calls),
                "pairs_composing_one_linear_map": len(linear_pairs), "pairs_with_only_max_pooling": len(pooled_pairs)}
    why = (f"{len(chains)} stack{'s' * (len(chains) > 1)} of weight layers with no activation between them: "
           f"{'; '.join(described)}.")
    if linear_pairs:
        why += (f" {'; '.join(linear_pairs)}: only linear steps between them, so each such pair computes one linear "
                "map, which a single layer could compute: the extra layer adds parameters but no power.")
    if pooled_pairs:
        why += (f" {'; '.join(pooled_pairs)}: only max-pooling between them. Max-pooling keeps the largest of a few "
                "neighbours, a piecewise-linear nonlinearity, so these layers do not collapse into one linear map; "
                "but each weight layer is linear, and which neighbour wins is the only nonlinearity. An activation "
                "after each layer is the usual design: whether it helps this model is a measurement (train both).")
    fix = "Put an activation (nn.ReLU()) after every Linear/Conv layer except the last one."
    if not linear_pairs:
        fix += " Compare the two models' accuracy before concluding that the activations matter here."
    return [Finding("linear_stack", "warning" if linear_pairs else "info", evidence, why, fix)]



def input_scale(p):
    """What reaches the first layer: its scale (raw 0..255 pixels?) and its centre (inverted images?).

    PyTorch initialises a layer for inputs of roughly unit size. Pixels 0..255 make the first layer's
    outputs ~255x as large as with pixels in [0, 1] (huge steps, divergence). Inputs far off-centre
    compared with their spread (inverted MNIST: background 1, mean 0.87) give every unit a large
    offset shared by all images: the finding counts the first layer's units that are > 0 for every
    image or <= 0 for every image (behind a ReLU: linear, or dead).
    """
    _need_forward(p)
    weights = p.weight_calls()
    if not weights or weights[0].in_stats is None:
        raise Skip("no Linear/Conv layer ran")
    s = weights[0].in_stats
    evidence = {"input_mean": _num(s["mean"]), "input_std": _num(s["std"]), "input_min": _num(s["min"]),
                "input_max": _num(s["max"]), "input_rms": _num(s["rms"])}
    findings = []
    if s["rms"] > RAW_SCALE_RMS or max(abs(s["min"]), abs(s["max"])) > RAW_SCALE_MAX:
        raw = s["max"] > RAW_PIXELS
        why = (f"The first weight layer, {weights[0].name}, receives values from {s['min']:.3g} to {s['max']:.3g} "
               f"(rms {s['rms']:.3g}){' - raw 0..255 pixels' if raw else ''}, but PyTorch initialises it for inputs "
               f"of size about 1: its outputs start about {s['rms']:.0f}x as large as for inputs of rms 1, and the "
               "gradients of its weights grow with the inputs too, so a learning rate suited to [0, 1] inputs takes "
               "steps that are far too large: training tends to diverge, or to stall once units die.")
        fix = ("Scale the pixels to [0, 1] (x / 255, as mnistlab.train.batches does) and, better, standardise "
               "(x - mean) / std.")
        findings.append(Finding("input_scale", "error", evidence, why, fix))
    elif abs(s["mean"]) > OFF_CENTRE_MEAN and abs(s["mean"]) > OFF_CENTRE_RATIO * s["std"]:
        why = (f"The first weight layer, {weights[0].name}, receives inputs with mean {s['mean']:.2f} but spread "
               f"(std) only {s['std']:.2f}: most inputs sit near the same value (e.g. inverted images, background 1). "
               "Every unit's w.x + b then carries a large offset shared by all images, next to which the part that "
               "differs from image to image is small.")
        first = weights[0]
        if first.out_ever_positive is not None and first.out_ever_non_positive is not None:
            on = (~first.out_ever_non_positive).float().mean().item()
            off = (~first.out_ever_positive).float().mean().item()
            evidence.update(first_layer_units_positive_for_every_image=_num(on),
                            first_layer_units_non_positive_for_every_image=_num(off))
            why += (f" On these {len(p.outputs)} images {on:.0%} of its units are > 0 for every image (behind a "
                    f"ReLU: a linear unit) and {off:.0%} are <= 0 for every image (behind a ReLU: a dead unit).")
        fix = ("Standardise the input: x = (x - mean) / std with the training set's mean and std "
               f"(here about ({s['mean']:.2f}, {s['std']:.2f})), e.g. as the first step of forward(); or invert "
               "the images back.")
        findings.append(Finding("input_off_centre", "warning", evidence, why, fix))
    return findings



def dead_relu(p):
    """ReLU units that are never active on the sample: dead units.

    A ReLU unit whose input is negative for every image outputs 0 and passes back zero gradient, so
    its weights stop learning: only changes in the layers before it can turn it back on (in the first
    layer, nothing can). A few are normal; most of a layer dead means the model is far smaller than
    it looks (usual causes: a learning rate too high, badly scaled or off-centre inputs).
    """
    _need_forward(p)
    if not p.outputs_finite():
        raise Skip("the outputs are NaN or infinite (see divergence)")
    layers = [(c.name, c.ever_active) for c in p.calls if c.ever_active is not None]
    if not layers:  # ReLU written as F.relu: look at what enters each weight layer but the first
        later = [c for c in p.weight_calls()[1:] if c.in_ever_active is not None]
        layers = [(f"input of {c.name}", c.in_ever_active) for c in later]
    if not layers:
        return []  # no ReLU units in this model
    fractions = {name: 1 - active.float().mean().item() for name, active in layers if len(active) > 1}
    if not fractions:
        return []
    worst = max(fractions, key=fractions.get)
    if fractions[worst] < DEAD_WARNING:
        return []
    severity = "error" if fractions[worst] >= 1.0 else "warning"
    evidence = {"images": len(p.outputs), "worst_dead_fraction": _num(fractions[worst])}
    evidence.update({f"dead_fraction[{name}]": _num(f) for name, f in fractions.items()})
    dead = {name: f for name, f in fractions.items() if f >= DEAD_WARNING}
    why = (f"{', '.join(f'{f:.0%} of {name}' for name, f in dead.items())} never turn on for any of these "
           f"{len(p.outputs)} images. A ReLU unit that is off for every training image gets zero gradient into its "
           "weights and bias, so training cannot turn it back on (only changes in the layers before it can; in the "
           "first layer nothing can): "
           + ("a layer with every unit off passes nothing on, so the model's output is the same for every one of "
              "these images (unless something bypasses that layer)."
              if severity == "error" else "the layer works as if it had that many fewer units."))
    fix = ("Standardise the inputs (mean 0, std 1), lower the learning rate, and do not put a ReLU on the output; "
           "nn.LeakyReLU cannot die if the problem persists.")
    return [Finding("dead_relu", severity, evidence, why, fix)]



def raw_emnist(p):
    """EMNIST letters used raw: images stored transposed and labels 1..26, as the dataset ships them.

    Raw EMNIST letters read sideways and are labelled 1..26 with an unused class 0 "N/A". A fully
    connected model trained from scratch learns the transposed images just as well (a fixed shuffle
    of pixels), but plots read sideways, flips and rotations in augmentation mean something else,
    and label k is the (k-1)-th letter, an off-by-one waiting to happen.
    """
    if p.dataset is None:
        raise Skip("needs a mnistlab Dataset (its .raw_emnist says if it is raw EMNIST)")
    if not p.dataset.raw_emnist:
        return []
    labels = p.dataset.labels
    evidence = {"label_min": int(labels.min()), "label_max": int(labels.max()), "num_classes": len(p.dataset.classes)}
    if p.num_outputs is not None:
        evidence["num_outputs"] = p.num_outputs
    why = (f"This is raw EMNIST letters ({p.dataset.source!r}): images transposed (they read sideways) and labels "
           f"{evidence['label_min']}..{evidence['label_max']} with class 0 'N/A' unused.")
    fix = "ds = mnistlab.data.fix_emnist(ds): upright images, labels 0..25; then give the model 26 outputs."
    return [Finding("raw_emnist", "warning", evidence, why, fix)]
