"""mnistlab: the helper package of the course "from softmax to pitfalls on MNIST".

    data        - datasets as in-memory tensors (MNIST, EMNIST letters, Fashion-MNIST) and transforms
    standins    - the offline stand-ins data.load uses when nothing can be downloaded
    train       - batches, fit, evaluate, predict, seed_everything: a fast, readable training loop
    plots       - learning curves, image grids, confusion matrices, weight templates
    diagnose    - find the pitfall behind a bad model: findings with evidence and a fix (a subpackage:
                  its thresholds in diagnose/settings.py, its checks in diagnose/detectors_*.py)
    stats       - is a difference between two models real? McNemar's test, paired bootstrap over test images
    thresholds  - the one table of accuracy thresholds the notebooks' graded checks use
    course      - small helpers the notebooks share (key_result, grading)
"""
