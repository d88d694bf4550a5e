"""dlc — describe a network and its training once, train it on Keras or PyTorch with matching results."""

__version__ = "0.1.0"
