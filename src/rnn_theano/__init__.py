"""rnn-theano: the WildML RNN tutorial on PyTensor, and a minibatched engine beyond it.

Importing the package changes nothing in the process: backend settings are applied by
``rnn_theano.backends.prepare`` where a model is built.
"""
