"""Every threshold and knob of mnistlab.diagnose, in one place: change a number here, and only here.

Read this file first: each detector's decision (is this a finding? how bad?) is one of these numbers
compared with a measurement. Every other file of mnistlab/diagnose/ imports its numbers from here.
(They live in this small module, not in __init__.py, so that the detector files can import them
without importing the package that imports them: no circular import, and nothing half-defined.)
"""

# ---- the forward pass (probe.py): how much of the data diagnose looks at
SAMPLE = 512  # images in the forward pass, evenly spaced over the data: every class shows, it stays fast
CHUNK = 128  # images per forward call: small enough that a big CNN's activations fit in memory
TIME_BUDGET = 0.3  # seconds after which no further chunk starts: diagnose stays interactive on a slow CPU
FINGERPRINT_ROWS = 16  # rows of a layer's input/output kept to tell whether two layers are directly connected

# ---- recognising the output's last activation from its numbers (Probe.output_signature, probe.py)
SUMS_TO_ONE = 1e-3  # rows of softmax probabilities sum to 1 (log-softmax: exp sums to 1) up to float32 rounding
LOG_PROBS_MAX = 1e-6  # log-probabilities are <= 0; this much above 0 is still rounding
RELU_ZEROS = 0.01  # outputs all >= 0 with at least 1% exact zeros: a ReLU clipped them (1% is not chance)

# ---- linear_stack (detectors_layers.py): did a layer receive exactly what the one before it produced?
CONNECTED_RTOL, CONNECTED_ATOL = 1e-5, 1e-6  # float32 rounding of a reshape or an eval-mode batch norm

# ---- labels_vs_outputs (detectors_outputs.py)
LABELS_PER_OUTPUT = 20  # report a class that never occurs only with 20+ labels per output: not bad luck

# ---- input_scale (detectors_layers.py)
RAW_SCALE_RMS, RAW_SCALE_MAX = 5.0, 20.0  # standardised inputs have rms ~1 and rarely exceed |x| = 10
RAW_PIXELS = 100  # an input max above 100 can only be raw 0..255 pixels: the finding says so
OFF_CENTRE_MEAN, OFF_CENTRE_RATIO = 0.5, 1.5  # MNIST in [0, 1]: mean 0.13, std 0.31; inverted: 0.87, 0.31

# ---- dead_relu (detectors_layers.py)
DEAD_WARNING = 0.5  # a fresh or healthy MNIST network has a few % dead units; half dead is a problem

# ---- stuck_at_chance (detectors_training.py); the causes' scores (0..1) are weights of evidence, kept
# next to each cause there: the thresholds below decide which evidence counts.
STUCK_EPOCHS, STUCK_FRACTION = 3, 0.9  # the last 3 epochs all at 90% of the chance loss or more
SMALL_LR = 1e-3  # SGD on MNIST likes ~0.1: below 1e-3 the steps are too small to leave chance in a few epochs
STRONG_DECAY = 0.1  # lr x weight_decay: the fraction of each weight decay removes per step; 0.1 wipes them out
FLAT_LOSS = 0.02  # a loss that dropped less than 2% of the chance loss over the whole run has not moved
CONSTANT_OUTPUTS = 1e-6  # outputs whose spread over the images is below 1e-6 (relative) are the same for all

# ---- divergence (detectors_training.py)
EXPLODING = 3  # an epoch's mean training loss above 3x the chance loss: no healthy run gets there
HIGH_LR, VERY_HIGH_LR = 0.3, 1  # learning rates that make "learning rate too high" a likely cause (SGD on MNIST)
FELL_BACK = 10  # a loss back below a tenth of its peak "fell back later": the finding says it is not a recovery

# ---- overfitting (detectors_training.py)
OVERFIT_INFO = 0.15  # train accuracy 15 points above test: worth knowing
OVERFIT_WARNING = 0.25  # 25 points above test, with enough data: a problem
SMALL_TRAIN = 1000  # fewer training images than this (03 trains on 150): a large gap is expected, info only
