#!/usr/bin/env python3
"""Transcribe WAV files with a trained speech recogniser. Run with --help for every flag."""

import sys

from rnn_theano.cli import transcribe_main

if __name__ == "__main__":
    sys.exit(transcribe_main())
