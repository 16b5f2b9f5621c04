#!/usr/bin/env python3
"""Train the tutorial's RNN language model. Run with --help for every flag."""

import sys

from rnn_theano.cli import train_main

if __name__ == "__main__":
    sys.exit(train_main())
