#!/usr/bin/env python3
"""Plot ||dL_t/ds_{t-k}|| against k (the vanishing gradient) for trained and untrained tanh,
ReLU (identity init), GRU and LSTM models. Run with --help for every flag.

    .venv/bin/python scripts/gradient_flow.py --out docs/gradient_flow.png
"""

import sys

from rnn_theano.cli import user_errors
from rnn_theano.gradient_flow import main

if __name__ == "__main__":
    sys.exit(user_errors(main)())
