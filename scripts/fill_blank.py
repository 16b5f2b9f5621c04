#!/usr/bin/env python3
"""Predict a missing word: fill_blank.py --model M "the cat sat on the ___ ." Run with --help for every flag."""

import sys

from rnn_theano.cli import fill_blank_main

if __name__ == "__main__":
    sys.exit(fill_blank_main())
