#!/usr/bin/env python3
"""Plot per-epoch perplexity from the JSON logs of ``train_lm.py --log-json``.

    .venv/bin/python scripts/plot_curves.py docs/ptb/rnn.json docs/ptb/lstm.json --out curves.png
"""

import sys

from rnn_theano.cli import user_errors
from rnn_theano.curves import main

if __name__ == "__main__":
    sys.exit(user_errors(main)())
