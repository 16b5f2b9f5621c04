#!/usr/bin/env python3
"""Score a trained model on any text: perplexity. Run with --help for every flag."""

import sys

from rnn_theano.cli import evaluate_main

if __name__ == "__main__":
    sys.exit(evaluate_main())
