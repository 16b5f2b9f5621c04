# rnn-theano: every command a user needs. Each target creates the virtual environment on first use.
#
#   make train                      train the tutorial RNN on the built-in corpus (Python's own docs)
#   make train DATA=comments.csv    ... on any file or directory of text
#   make generate                   sample sentences from the trained model
#   make test                       run the test suite
#   make bench                      training speed side by side with PyTorch (QUICK=1: a short run)
#   make ptb-rnn / ptb-lstm / ptb-gru   the Penn Treebank recipes of configs/ (35 to 55 minutes each on 2 cores)
#   make ptb-lstm-vd / ptb-gru-vd   LSTM / GRU regularised (variational dropout, tying; about an hour each)
#   make ptb-plots                  their training curves as PNG (needs the [plot] extra)
#   make gradient-flow              the vanishing-gradient study (docs/gradient-flow.md)
#   make classify-sst2 / classify-sst5 / classify-trec / classify-mr   sentence classifiers (configs/)
#   make classify-sst5-phrases      SST-5 trained on the treebank's labelled phrases, as Kim (2014)
#   make classify-results    every classifier recipe over 3 seeds: docs/classification/
#   make mt-de-en / mt-en-de        translation recipes on Multi30k (configs/; docs/translation.md)
#   make asr-digits                 speech recognition of spoken digit strings (FSDD; docs/speech.md)
#   make asr-speakers               ... trained on five speakers, tested on the sixth, for each
#
# Settings below are defaults; override any of them on the command line (make train EPOCHS=2).

SHELL   := /bin/bash
.SHELLFLAGS := -o pipefail -c

VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-stamp

# A Python >= 3.12 (PyTensor 3.3 needs it). pyenv users get one through .python-version.
PYTHON ?= $(shell for p in python3.12 python3.13 python3.14 python3 python; do \
	  $$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1 && { echo $$p; break; }; done)

MODEL        ?= checkpoints/rnn.npz
DATA         ?=
CORPUS       ?=
VOCAB        ?= 8000
HIDDEN       ?= 100
EPOCHS       ?= 4
MAX_SENTENCES ?= 0
TRAIN_FLAGS  ?=
NUM          ?= 10
TEMPERATURE  ?= 1.0
GEN_FLAGS    ?=
QUICK        ?=
BENCH_OUT    ?= checkpoints/bench.json
BENCH_FLAGS  ?=

# Penn Treebank recipes live in configs/; the corpus is read from $RNN_THEANO_DATA when set,
# else from data/, where it is downloaded on first use.
PTB_OUT      ?= docs/ptb
PTB_TEST     ?= $${RNN_THEANO_DATA:-data}/ptb/ptb.test.txt

SOURCE_FLAGS := $(if $(DATA),--data $(DATA)) $(if $(CORPUS),--corpus $(CORPUS))

.PHONY: install train generate test bench clean ptb-rnn ptb-lstm ptb-gru ptb-lstm-vd ptb-gru-vd ptb-plots \
        gradient-flow classify-sst2 classify-sst5 classify-sst5-phrases classify-trec classify-mr \
        classify-results \
        mt-de-en mt-en-de asr-digits asr-speakers

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	@if [ -z "$(PYTHON)" ]; then \
	  echo "error: no Python >= 3.12 found (PyTensor 3.3 needs it); install one, or run: make PYTHON=/path/to/python3.12 ..." >&2; exit 2; fi
	@echo "Creating $(VENV) with $(PYTHON) ($$($(PYTHON) --version))"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

train: $(STAMP)
	$(PY) scripts/train_lm.py $(SOURCE_FLAGS) --vocab-size $(VOCAB) --hidden-dim $(HIDDEN) \
	  --epochs $(EPOCHS) --max-sentences $(MAX_SENTENCES) --model-out $(MODEL) $(TRAIN_FLAGS)

generate: $(STAMP)
	$(PY) scripts/generate.py --model $(MODEL) --num-sentences $(NUM) --temperature $(TEMPERATURE) $(GEN_FLAGS)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_FLAGS)

# The PyTorch peer runs in .venv-torch (Python 3.11, torch 2.13.0 CPU) when .venv has no torch;
# the bench creates it on first use.
bench: $(STAMP)
	$(PY) experiments/bench.py --make-torch-venv --out $(BENCH_OUT) $(if $(QUICK),--quick) $(BENCH_FLAGS)

# Train a recipe, log every epoch to $(PTB_OUT)/NAME.json, then score the test set again at
# batch 1 (the state carried through the whole test stream) to show batching does not change it.
ptb-rnn ptb-lstm ptb-gru ptb-lstm-vd ptb-gru-vd: ptb-%: $(STAMP)
	@mkdir -p $(PTB_OUT)
	PYTHONUNBUFFERED=1 $(VENV)/bin/rnn-theano train --config configs/ptb-$*.toml \
	  --log-json $(PTB_OUT)/$*.json $(TRAIN_FLAGS) | tee $(PTB_OUT)/$*.log
	$(VENV)/bin/rnn-theano evaluate --model checkpoints/ptb-$*.npz --data $(PTB_TEST) \
	  --batch-size 1 | tee -a $(PTB_OUT)/$*.log

ptb-plots: $(STAMP)
	$(PY) -m pip install --quiet -e '.[plot]'
	$(PY) experiments/plot_curves.py $(wildcard $(foreach n,rnn lstm gru lstm-vd gru-vd,$(PTB_OUT)/$(n).json)) \
	  --reference rnn=124.7 --reference lstm=114.5 \
	  --reference lstm-vd=114.5 --out $(PTB_OUT)/curves.png

# Train a sentence classifier recipe and log every epoch to docs/classification/NAME.json.
classify-sst2 classify-sst5 classify-sst5-phrases classify-trec classify-mr: classify-%: $(STAMP)
	@mkdir -p docs/classification
	PYTHONUNBUFFERED=1 $(VENV)/bin/rnn-theano train-classifier --config configs/classify-$*.toml \
	  --log-json docs/classification/$*.json $(TRAIN_FLAGS) | tee docs/classification/$*.log

# Every recipe with seeds 0, 1, 2 (MR: all 10 folds each), the table and TREC's confusion matrix.
classify-results: $(STAMP)
	$(PY) -m pip install --quiet -e '.[plot]'
	PYTHONUNBUFFERED=1 $(PY) experiments/classify_results.py --out docs/classification $(TRAIN_FLAGS)

# Train a translation recipe, log every epoch to docs/translation/NAME.json, then show a few
# test translations with the attention of the first one.
MT_OUT ?= docs/translation
mt-de-en mt-en-de: mt-%: $(STAMP)
	$(PY) -m pip install --quiet -e '.[plot]'
	@mkdir -p $(MT_OUT)
	PYTHONUNBUFFERED=1 $(VENV)/bin/rnn-theano train-mt --config configs/mt-$*.toml \
	  --log-json $(MT_OUT)/$*.json $(TRAIN_FLAGS) | tee $(MT_OUT)/$*.log
	gzip -dc $${RNN_THEANO_DATA:-data}/multi30k/test_2016_flickr.$(firstword $(subst -, ,$*)).gz \
	  | sed -n 1,5p | $(VENV)/bin/rnn-theano translate --model checkpoints/mt-$*.npz \
	  --show-attention $(MT_OUT)/$*-attention.png | tee $(MT_OUT)/$*-samples.txt

# Train the speech recipe, log every epoch to docs/speech/asr-digits.json, transcribe a few
# test recordings and draw a test string's CTC posteriors.
SPEECH_OUT ?= docs/speech
asr-digits: $(STAMP)
	$(PY) -m pip install --quiet -e '.[plot]'
	@mkdir -p $(SPEECH_OUT)
	PYTHONUNBUFFERED=1 $(VENV)/bin/rnn-theano train-asr --config configs/asr-digits.toml \
	  --log-json $(SPEECH_OUT)/asr-digits.json $(TRAIN_FLAGS) | tee $(SPEECH_OUT)/asr-digits.log
	cd $${RNN_THEANO_DATA:-data}/fsdd/recordings && $(CURDIR)/$(VENV)/bin/rnn-theano transcribe \
	  --model $(CURDIR)/checkpoints/asr-digits.npz $$(ls *_{theo,lucas}_0.wav | head -6) \
	  | tee $(CURDIR)/$(SPEECH_OUT)/asr-digits-samples.txt
	$(PY) experiments/speech_results.py figure --model checkpoints/asr-digits.npz \
	  --out $(SPEECH_OUT)/posteriors.png

# The speaker-independent sweep: six runs of configs/asr-speakers.toml, one per held-out
# speaker (resumable), then the tables of docs/speech.md.
asr-speakers: $(STAMP)
	@mkdir -p $(SPEECH_OUT)
	PYTHONUNBUFFERED=1 $(PY) experiments/speech_results.py speakers --out $(SPEECH_OUT) \
	  $(TRAIN_FLAGS) | tee -a $(SPEECH_OUT)/asr-speakers.log
	$(PY) experiments/speech_results.py tables $(SPEECH_OUT)/*.json

gradient-flow: $(STAMP)
	$(PY) -m pip install --quiet -e '.[plot]'
	$(PY) experiments/gradient_flow.py --out docs/gradient_flow.png

clean:
	rm -rf $(VENV) .venv-torch .pytest_cache build src/*.egg-info
