"""rnn-dropout-bench: the reference benchmark for dropout-style regularisation of RNNs.

Importing `bench` sets the CPU runtime before torch loads (see bench/numerics.py): OpenMP threads
that sleep instead of spinning (runs share cores with campaigns and tests), and by default portable
numerics, so a CPU row replays bit for bit on the same CPU model and closely on any x86-64 host.
"""
from bench import numerics as _numerics

_numerics.configure()
__version__ = "0.1.0"
