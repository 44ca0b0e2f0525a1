"""Detectors of the training history: stuck at chance, divergence, overfitting.

stuck_at_chance: taught in 02 (an optimizer that belongs to another model: the loss stays at ln(C)).
overfitting: seen in 03 (150 training images) and 05. divergence: no notebook shows it (01 shows how
softmax of large scores becomes nan). Each takes the Probe and returns a list of Findings (empty:
nothing wrong), or raises Skip; stuck_at_chance and divergence also rank the likely causes, each
scored 0..1 by its evidence.
"""

import math

import torch

from mnistlab.diagnose.findings import Finding, Skip, _num
from mnistlab.diagnose.settings import (CONSTANT_OUTPUTS, EXPLODING, FELL_BACK, FLAT_LOSS, HIGH_LR, OVERFIT_INFO,
                                        OVERFIT_WARNING, RAW_SCALE_RMS, SMALL_LR, SMALL_TRAIN, STRONG_DECAY,
                                        STUCK_EPOCHS, STUCK_FRACTION, VERY_HIGH_LR)


def _chance_loss(p, C):
    if p.loss_name == "nn.MultiMarginLoss":
        return (C - 1) / C  # every score equal: each wrong class violates the margin of 1 by 1
    if p.loss_name in ("nn.CrossEntropyLoss", "nn.NLLLoss"):
        return math.log(C)  # uniform guess: -ln(1/C)
    return None


def _history(p):
    if not p.history:
        raise Skip("needs history (the list train.fit returns)")
    if not isinstance(p.history, list) or not all(isinstance(row, dict) for row in p.history):
        raise Skip("history must be the list of dicts train.fit returns")
    return p.history


def stuck_at_chance(p):
    """Training stuck at chance: the loss stays at the loss of a uniform guess, ln(C), epoch after epoch.

    A loss of ln(C) is what a model scores when it gives every class the same probability: it has
    learned nothing about the images. The usual causes are ranked by the evidence: a softmax or ReLU
    on the output, weights decayed to almost 0 (weight decay too strong), weights that hardly moved
    (learning rate too small), or outputs identical for every image (a dead layer).
    """
    history = _history(p)
    C = p.num_classes
    if not C or C < 2:
        raise Skip("the number of classes is unknown: pass data")
    chance = _chance_loss(p, C)
    if chance is None:
        raise Skip(f"chance level of the loss {p.loss_name} unknown")
    losses = [row.get("train_loss", float("nan")) for row in history]
    last = history[-min(STUCK_EPOCHS, len(history)) :]
    if len(history) < 2 or not all(math.isfinite(l) for l in losses):
        return []
    if not all(row["train_loss"] >= STUCK_FRACTION * chance for row in last):
        return []
    at_chance = sum(1 for l in losses if l >= STUCK_FRACTION * chance)
    evidence = {"train_loss": _num(losses[-1]), "chance_loss": _num(chance),
                "train_acc": _num(history[-1].get("train_acc", float("nan"))), "chance_acc": _num(1 / C),
                "epochs": len(history), "epochs_at_chance": at_chance, "loss_drop": _num(losses[0] - losses[-1])}

    # ---- the usual causes, each scored 0..1 by its own evidence
    ratio = p.weight_norm_ratio()
    ratio = ratio if ratio is not None and math.isfinite(ratio) and ratio > 0 else None
    lr, decay = _optimizer_settings(p.optimizer)
    evidence["weight_norm_ratio"] = _num(ratio) if ratio is not None else float("nan")
    if lr is not None:
        evidence.update(lr=_num(lr), weight_decay=_num(decay))
    scores = {}
    # an activation on the output (softmax, ReLU) before a loss that wants raw scores starves the gradient
    squashed = []
    if p.calls is not None and p.loss_kind == "raw":
        squashed = [n for n in p.output_activations() if n != "LogSoftmax"]
    scores["activation on the output"] = 0.95 if squashed else 0.0
    # weights far below their initial size: something pulled them to 0
    s = max(0.0, min(1.0, (0.5 - ratio) / 0.4)) if ratio is not None else 0.0
    if decay is not None:
        s = 0.0 if decay == 0 else max(s, 0.9 if lr * decay >= STRONG_DECAY else s)
    scores["weight decay too strong"] = s
    # weights still at their initial size and the loss flat: the steps are too small to move them
    s = 0.0
    if ratio is not None:
        s = max(0.0, 1 - abs(math.log(ratio)) / 0.1) * (1.0 if losses[0] - losses[-1] < FLAT_LOSS * chance else 0.5)
    if lr is not None:
        s = max(s, 0.9) if lr < SMALL_LR else s * 0.3
    scores["learning rate too small"] = s
    # outputs identical for every image: nothing of the image gets through (dead layer, zero weights)
    s = 0.0
    if p.outputs is not None and p.outputs_finite() and len(p.outputs) > 1:
        spread = p.outputs.std(0).max().item()
        evidence["output_std"] = _num(spread)
        s = 1.0 if spread <= CONSTANT_OUTPUTS * (1 + p.outputs.abs().max().item()) else 0.0
    scores["outputs constant for every image"] = s
    causes = [{"cause": c, "score": round(v, 2)} for c, v in sorted(scores.items(), key=lambda kv: -kv[1]) if v > 0]
    fixes = {
        "activation on the output": f"remove the {' and '.join(squashed)} at the end of the model "
                                    "(see output_activation, double_softmax)",
        "weight decay too strong": "lower weight_decay (e.g. 10x-1000x; lr x weight_decay should be far below 1)",
        "learning rate too small": "raise the learning rate (10x at a time; SGD on MNIST likes ~0.1)",
        "outputs constant for every image": "find the dead layer (see dead_relu, output_activation) and remove "
                                            "the ReLU on the output",
    }
    train_acc = history[-1].get("train_acc")
    why = (f"The training loss is still {losses[-1]:.3f} after {len(history)} epochs, {losses[-1] / chance:.0%} of "
           f"the chance level {chance:.3f} (= the loss of giving all {C} classes the same score): by its loss, the "
           "model is barely better than a uniform guess"
           + (f" (train accuracy {train_acc:.1%}, chance {1 / C:.1%})." if isinstance(train_acc, (int, float))
              and math.isfinite(train_acc) else "."))
    if causes:
        fix = "Most likely first: " + "; ".join(f"{i}. {fixes[c['cause']]}" for i, c in enumerate(causes, 1)) + "."
    else:
        fix = ("None of the usual causes shows clearly: check that the labels match the images, that the loss gets "
               "raw scores, and try a 10x larger learning rate.")
    return [Finding("stuck_at_chance", "error", evidence, why, fix, causes)]



def _optimizer_settings(optimizer):
    """(lr, weight_decay) of an optimizer (largest over its parameter groups), or (None, None)."""
    if optimizer is None:
        return None, None
    groups = getattr(optimizer, "param_groups", None)
    if not groups:
        return None, None
    lr = max(float(g.get("lr", 0.0)) for g in groups)
    decay = max(float(g.get("weight_decay", 0.0)) for g in groups)
    return lr, decay


def divergence(p):
    """Divergence: NaN or infinite numbers, or a loss that explodes.

    When a step is too large the loss overshoots, the next gradient is larger still, and within a few
    steps the numbers overflow to inf and NaN. After that the weights are NaN and the model is lost:
    train again, from scratch, with smaller steps or better scaled inputs.
    """
    rows = p.history if isinstance(p.history, list) else []
    losses = [row.get("train_loss") for row in rows if isinstance(row, dict) and row.get("train_loss") is not None]
    bad_params = sum(int((~torch.isfinite(t.detach())).sum()) for t in p.model.parameters() if t.is_floating_point())
    bad_outputs = int((~torch.isfinite(p.outputs)).sum()) if p.outputs is not None else 0
    bad_losses = sum(1 for l in losses if not math.isfinite(l))
    C = p.num_classes
    chance = _chance_loss(p, C) if C and C > 1 else None
    exploding = chance is not None and bad_losses == 0 and losses and max(losses) > EXPLODING * chance
    if not (bad_params or bad_outputs or bad_losses or exploding):
        return []
    evidence = {"non_finite_parameters": bad_params, "non_finite_outputs": bad_outputs, "non_finite_losses": bad_losses}
    if losses:
        evidence.update(first_train_loss=_num(losses[0]), max_train_loss=_num(max(losses)),
                        last_train_loss=_num(losses[-1]))
    if chance is not None:
        evidence["chance_loss"] = _num(chance)
    lr, _ = _optimizer_settings(p.optimizer)
    if lr is not None:
        evidence["lr"] = _num(lr)
    rms = None
    if p.calls is not None and p.weight_calls() and p.weight_calls()[0].in_stats is not None:
        rms = p.weight_calls()[0].in_stats["rms"]
        evidence["input_rms"] = _num(rms)
    too_high = 0.5 if lr is None else (0.9 if lr >= VERY_HIGH_LR else 0.6 if lr >= HIGH_LR else 0.2)
    scores = {"learning rate too high": too_high}
    if rms is not None:
        scores["inputs not normalised"] = 0.9 if rms > RAW_SCALE_RMS else 0.1
    causes = [{"cause": c, "score": v} for c, v in sorted(scores.items(), key=lambda kv: -kv[1])]
    what = []
    if bad_params:
        what.append(f"{bad_params} model parameters are NaN/inf")
    if bad_outputs:
        what.append(f"{bad_outputs} outputs are NaN/inf")
    if bad_losses:
        what.append(f"{bad_losses} epochs have a NaN/inf loss")
    if exploding:
        fell_back = losses[-1] < max(losses) / FELL_BACK
        what.append(f"the training loss reached {max(losses):.3g}, over {EXPLODING}x the chance level {chance:.3g}"
                    + (" (it fell back later: not a recovery if units died on the way, see dead_relu)"
                       if fell_back else ""))
    why = ("Training diverged: " + "; ".join(what) + ". The usual mechanism: a step too large overshoots, the next "
           "gradients are larger still, and the numbers grow until they overflow.")
    fix = ("Rebuild the model (NaN weights cannot recover) and train" if bad_params else "Train again") + (
        " with a 10x smaller learning rate; make sure inputs are scaled to [0, 1] or standardised.")
    return [Finding("divergence", "error", evidence, why, fix, causes)]



def overfitting(p):
    """Overfitting: training accuracy far above test accuracy.

    A model that scores much better on the images it trained on than on new ones has fit its training
    set more closely than what carries over to new images. With a small training set (150 images)
    some gap is expected, so it is only information there; more data, augmentation, weight decay or a
    smaller model usually narrow the gap. The epoch to stop at is chosen on a validation split, not
    on the test set.
    """
    history = _history(p)
    last = history[-1]
    if "test_acc" not in last or "train_acc" not in last:
        raise Skip("needs test accuracy in the history: train.fit(model, train, test)")
    gap = last["train_acc"] - last["test_acc"]
    if not gap >= OVERFIT_INFO:
        return []
    best = max((row for row in history if "test_acc" in row), key=lambda row: row["test_acc"])
    evidence = {"train_acc": _num(last["train_acc"]), "test_acc": _num(last["test_acc"]), "gap": _num(gap),
                "best_test_acc": _num(best["test_acc"]), "best_epoch": best.get("epoch", history.index(best) + 1)}
    size = ""
    if p.train_size is not None:
        evidence["train_size"] = p.train_size
        size = f" with {p.train_size} training images{' (' + p.train_size_from + ')' if p.train_size_from else ''}"
        if p.train_size < SMALL_TRAIN:
            size += ", a small training set where some gap is expected"
    # With a small training set a large gap is expected (information); with plenty of data it is a problem.
    small = p.train_size is not None and p.train_size < SMALL_TRAIN
    severity = "warning" if gap >= OVERFIT_WARNING and not small else "info"
    why = (f"Train accuracy {last['train_acc']:.1%} vs test {last['test_acc']:.1%} (a gap of {gap:.1%}){size}: "
           "the model does much better on the images it trained on than on new ones.")
    fix = ("More training data, data augmentation, weight decay, or a smaller model. To stop early, choose the epoch "
           "on a validation split carved from the training data (mnistlab.data.split_validation), not on the test "
           f"set: the best test accuracy here (epoch {evidence['best_epoch']}) was picked on the test set, so it "
           "overstates what the model would score on new images.")
    return [Finding("overfitting", severity, evidence, why, fix)]

