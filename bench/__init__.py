"""rnn-dropout-bench: the reference benchmark for dropout-style regularisation of RNNs."""
__version__ = "0.1.0"
