#!/usr/bin/env python3
"""Train a sentence classifier (the many-to-one RNN). Run with --help for every flag."""

import sys

from rnn_theano.cli import train_classifier_main

if __name__ == "__main__":
    sys.exit(train_classifier_main())
