#!/usr/bin/env python3
"""Classify sentences, one per line, with a trained classifier. Run with --help for every flag."""

import sys

from rnn_theano.cli import classify_main

if __name__ == "__main__":
    sys.exit(classify_main())
