"""mnistlab: the helper package of the course "from softmax to pitfalls on MNIST".

    data   - datasets as in-memory tensors (MNIST, EMNIST letters, Fashion-MNIST) and transforms
    train  - batches, fit, evaluate, predict, seed_everything: a fast, readable training loop
    plots  - learning curves, image grids, confusion matrices, weight templates
"""
