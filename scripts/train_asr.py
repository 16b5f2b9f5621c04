#!/usr/bin/env python3
"""Train a speech recogniser (deep bidirectional RNN, CTC) on spoken digits. Run with --help for every flag."""

import sys

from rnn_theano.cli import train_asr_main

if __name__ == "__main__":
    sys.exit(train_asr_main())
