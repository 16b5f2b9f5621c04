"""rnn-theano: the WildML RNN tutorial on PyTensor, and a minibatched engine beyond it."""

from . import numba_backend

numba_backend.configure()  # before anything compiles: see numba_backend's docstring
