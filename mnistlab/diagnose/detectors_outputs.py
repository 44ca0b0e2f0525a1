"""Detectors of what the model outputs and what it is scored against: the last layer, the loss, the labels.

output_activation: taught in 05 (a ReLU on the output of the negative-MNIST MLP and of the
colored-MNIST CNN). double_softmax (a softmax before nn.CrossEntropyLoss) and nll_without_log_softmax:
no notebook shows them; 01 writes softmax, log-softmax and the NLL loss by hand, which is what they
check. labels_vs_outputs: seen in 01, where raw EMNIST letters (labels 1..26) meet a model with 27
outputs.
Each takes the Probe and returns a list of Findings (empty: nothing wrong), or raises Skip.
"""

import math

import torch

from mnistlab.diagnose.findings import Finding, Skip, _num
from mnistlab.diagnose.probe import BOUNDED, PROBABILITIES, _need_forward
from mnistlab.diagnose.settings import LABELS_PER_OUTPUT


def output_activation(p):
    """An activation (ReLU, sigmoid, softmax...) on the output, before a loss that wants raw scores.

    nn.CrossEntropyLoss and nn.MultiMarginLoss expect raw scores that can be any real number. A ReLU
    on the output clips every negative score to 0 with zero gradient, so a class whose score is
    negative for every image gets no gradient into its own weights: the loss cannot raise it again
    (only changes in the layers below can). Sigmoid and tanh keep the scores in a narrow range, so
    even a perfect answer keeps a loss above 0. (Softmax before CrossEntropyLoss is the detector
    double_softmax; log-softmax before MultiMarginLoss changes no margin, so it is not reported.)
    """
    if p.loss_kind is None:
        raise Skip(f"unknown loss {p.loss_name}: this checks nn.CrossEntropyLoss and nn.MultiMarginLoss")
    if p.loss_kind != "raw":
        return []  # not this detector's loss
    if p.calls is None:
        raise Skip("needs data (a Dataset or (x, y)) for one forward pass, unless the model is an nn.Sequential")
    names = p.output_activations()
    if p.loss_name == "nn.CrossEntropyLoss":
        names = [n for n in names if n not in PROBABILITIES + ("LogSoftmax",)]
    else:  # log_softmax(s) = s - logsumexp(s): every difference of two scores, so every margin, is unchanged
        names = [n for n in names if n != "LogSoftmax"]
    if not names:
        return []
    evidence = {"num_outputs": p.num_outputs}
    if p.outputs is not None and p.outputs_finite():
        out = p.outputs
        evidence.update(outputs_min=_num(out.min()), outputs_max=_num(out.max()),
                        fraction_outputs_zero=_num((out == 0).float().mean()),
                        outputs_zero_for_every_image=int((out == 0).all(0).sum()))
    chain = " then ".join(names)
    why = (
        f"The model's output passes through {chain} before {p.loss_name}{p.assumption}, which expects raw "
        "scores (any real number, negative included). "
    )
    severity, last = "error", names[-1]
    if any(n in ("ReLU", "ReLU6") for n in names):
        why += ("ReLU turns every negative score into 0, with zero gradient: a class whose score is negative for "
                "every image gets no gradient into its own weights, so the loss cannot raise it again (only changes "
                "in the layers below can), and meanwhile it loses every image to any class with a positive score. "
                "No score can go below 0 either: a class can be made unlikely only by raising the others.")
        if evidence.get("outputs_zero_for_every_image"):
            why += (f" Here {evidence['outputs_zero_for_every_image']} of the {p.num_outputs} outputs are 0 for every "
                    f"one of the {len(p.outputs)} images.")
    elif last in PROBABILITIES:
        why += ("Softmax squashes the scores into [0, 1], so the margin of 1 MultiMarginLoss asks for is reached "
                "only in the limit (probability exactly 1 on the right class, 0 on all others): the loss never "
                "settles at 0 and keeps pushing the probabilities to the extremes.")
    elif last in BOUNDED:
        low, high = BOUNDED[last]
        C = p.num_outputs or 2
        floor = math.log(1 + (C - 1) * math.exp(-(high - low)))
        why += (f"{last} keeps every score between {low:g} and {high:g}, so the scores of two classes can differ "
                f"by at most {high - low:g}: even a perfect answer keeps a loss above 0"
                + (f" (with {C} classes and nn.CrossEntropyLoss at least ln(1 + {C - 1}e^-{high - low:g}) = "
                   f"{floor:.2f})" if p.loss_name == "nn.CrossEntropyLoss" else "")
                + ", so training keeps pushing the scores against the bounds, where the gradient fades.")
    else:
        severity = "warning"
        why += (f"{chain} is not needed there: {p.loss_name} works on the raw scores of a linear layer, and "
                f"{last} restricts or bends them on the way.")
    fix = (
        f"Remove the final {chain}: the last layer should be a plain nn.Linear, whose raw scores go straight into "
        f"{p.loss_name}. Apply torch.softmax(model(x), dim=1) yourself when you want probabilities to show."
    )
    return [Finding("output_activation", severity, evidence, why, fix)]


def double_softmax(p):
    """Softmax (or log-softmax) on the output before nn.CrossEntropyLoss, which applies log-softmax itself.

    CrossEntropyLoss computes log_softmax(scores), so a softmax in the model makes it a softmax of
    probabilities: every input lies in [0, 1], so even a perfect answer keeps a large loss, and the
    gradient reaching the model passes through the first softmax's derivative, which vanishes when
    the model is confident (right or wrong). Log-softmax before it does no harm (log-softmax of
    log-probabilities changes nothing) but is redundant.
    """
    if p.loss_name != "nn.CrossEntropyLoss":
        return []  # not this detector's loss
    if p.calls is None:
        raise Skip("needs data (a Dataset or (x, y)) for one forward pass, unless the model is an nn.Sequential")
    names = p.output_activations()
    probs = [n for n in names if n in PROBABILITIES]
    evidence = {}
    if p.outputs is not None and p.outputs_finite():
        evidence["max_row_sum_minus_1"] = _num((p.outputs.sum(1) - 1).abs().max())
    C = p.num_outputs
    if probs:
        floor = math.log(1 + (C - 1) / math.e) if C else float("nan")
        evidence.update(num_outputs=C, lowest_possible_loss=_num(floor))
        why = (
            f"The model ends with {probs[-1]}, and {p.loss_name}{p.assumption} applies log-softmax again: "
            "the loss sees probabilities in [0, 1] as scores. Even a perfect answer (probability 1 on the right "
            f"class) then has a loss of ln(1 + {C - 1}/e) = {floor:.2f}. The gradient reaching the model passes "
            "through the derivative of its softmax, which vanishes when the model is confident: a confidently wrong "
            "answer is hardly corrected."
        )
        fix = (
            f"Remove the final {probs[-1]} from the model: {p.loss_name} wants raw scores. Use "
            "torch.softmax(model(x), dim=1) only when you need probabilities to show."
        )
        return [Finding("double_softmax", "error", evidence, why, fix)]
    if "LogSoftmax" in names:
        why = (
            f"The model ends with LogSoftmax, and {p.loss_name}{p.assumption} applies log-softmax again. "
            "This is harmless (log-softmax of log-probabilities returns them unchanged) but redundant."
        )
        fix = "Either remove the LogSoftmax, or keep it and use nn.NLLLoss, the loss made for log-probabilities."
        return [Finding("double_softmax", "info", evidence, why, fix)]
    return []


def nll_without_log_softmax(p):
    """nn.NLLLoss on outputs that are not log-probabilities.

    NLLLoss only picks -output[label]: it expects log-probabilities (a LogSoftmax at the end). On raw
    scores it has no lower bound, the model just makes the right score huge and the loss runs to minus
    infinity; on softmax probabilities it minimises -p instead of -log p, which learns slowly.
    """
    if p.loss_kind != "log_probs":
        return []  # not this detector's loss
    _need_forward(p)
    names = p.output_activations()
    if names and names[-1] == "LogSoftmax":
        return []
    out = p.outputs
    evidence = {"outputs_max": _num(out.max()), "max_abs_logsumexp": _num(out.logsumexp(1).abs().max())}
    if names and names[-1] in PROBABILITIES:
        why = "The model ends with Softmax but nn.NLLLoss expects log-probabilities: it minimises -p, not -log p."
    else:
        why = ("nn.NLLLoss expects log-probabilities (rows whose exp sums to 1), but these outputs are raw scores: "
               "the loss has no lower bound and can run off to minus infinity.")
    fix = "End the model with nn.LogSoftmax(dim=1), or drop any softmax and use nn.CrossEntropyLoss on raw scores."
    return [Finding("nll_without_log_softmax", "error", evidence, why, fix)]



def labels_vs_outputs(p):
    """Labels that do not fit the model's outputs: out of range, a class never used, or a count mismatch.

    Output k scores class k, so labels must run from 0 to (number of outputs - 1). A label outside
    that range crashes the loss (or is silently wrong elsewhere); an output whose class never occurs
    (raw EMNIST letters use 1..26, so output 0 is never right) is wasted and hints at shifted labels.
    """
    if p.labels is None or not len(p.labels):
        raise Skip("needs labels: pass a Dataset or (x, y)")
    C = p.num_outputs
    if C is None:
        raise Skip("the number of outputs is unknown (the forward pass failed)")
    labels = p.labels
    low, high = int(labels.min()), int(labels.max())
    findings = []
    if low < 0 or high >= C:
        evidence = {"label_min": low, "label_max": high, "num_outputs": C}
        why = (f"Labels run from {low} to {high} but the model has {C} outputs, which can only score labels "
               f"0..{C - 1}: nn.CrossEntropyLoss fails (on a GPU with a cryptic 'device-side assert').")
        fix = (f"Give the last layer {high + 1} outputs, or shift the labels to start at 0 (raw EMNIST letters are "
               "1..26: use mnistlab.data.fix_emnist).")
        findings.append(Finding("labels_out_of_range", "error", evidence, why, fix))
    if p.dataset is not None and C != len(p.dataset.classes):
        n = len(p.dataset.classes)
        evidence = {"num_outputs": C, "num_classes": n}
        why = (f"The model has {C} outputs but the dataset has {n} classes ({', '.join(p.dataset.classes[:3])}, ...): "
               "one output per class is the rule.")
        fix = f"Make the last layer nn.Linear(..., {n})."
        findings.append(Finding("outputs_vs_classes", "warning", evidence, why, fix))
    # Classes that have an output but never occur. Only with enough labels that it is not bad luck.
    scored = min(C, len(p.dataset.classes)) if p.dataset is not None else C
    if len(labels) >= LABELS_PER_OUTPUT * scored and low >= 0:
        counts = torch.bincount(labels, minlength=scored)[:scored]
        missing = (counts == 0).nonzero().squeeze(1).tolist()
        if missing:
            evidence = {"outputs_never_correct": len(missing), "first_unused_label": missing[0], "num_outputs": C,
                        "labels_seen": len(labels)}
            listed = ", ".join(map(str, missing[:5])) + (", ..." if len(missing) > 5 else "")
            why = (f"Label{'s' * (len(missing) > 1)} {listed} never occur{'s' * (len(missing) == 1)} in {len(labels)} "
                   f"labels, so output{'s' * (len(missing) > 1)} {listed} can never be right: wasted, and a sign that "
                   "the labels are shifted (raw EMNIST letters are 1..26, with no 0).")
            fix = ("Make labels run 0..C-1 with C outputs: for EMNIST letters use mnistlab.data.fix_emnist and "
                   "26 outputs.")
            findings.append(Finding("class_never_occurs", "warning", evidence, why, fix))
    return findings
