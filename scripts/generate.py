#!/usr/bin/env python3
"""Sample sentences from a model trained by train_lm.py. Run with --help for every flag."""

import sys

from rnn_theano.cli import generate_main

if __name__ == "__main__":
    sys.exit(generate_main())
