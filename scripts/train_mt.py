#!/usr/bin/env python3
"""Train a translation model (attention encoder-decoder). Run with --help for every flag."""

import sys

from rnn_theano.cli import train_mt_main

if __name__ == "__main__":
    sys.exit(train_mt_main())
