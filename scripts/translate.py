#!/usr/bin/env python3
"""Translate sentences with a trained translation model. Run with --help for every flag."""

import sys

from rnn_theano.cli import translate_main

if __name__ == "__main__":
    sys.exit(translate_main())
