# Every target that needs the virtual environment or the data builds them first, so any target
# works as the first command on a fresh machine.
PY := .venv/bin/python
STAMP := .venv/.installed
ARGS ?=

.PHONY: help setup data train test eval render sweep lint bench results results-quick clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	python3 -m venv .venv
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

setup: $(STAMP)  ## virtual environment .venv with the package and the test tools

data: $(STAMP)  ## fetch and verify MNIST into ./data
	$(PY) -m ram_lightning data

train: data  ## train the default experiment (28x28 MNIST, 6 glimpses); extra overrides in ARGS="..."
	$(PY) -m ram_lightning train $(ARGS)

test: $(STAMP)  ## the test suite (CPU, no network, tiny data made by the tests)
	$(PY) -m pytest -q

eval: $(STAMP)  ## evaluate a checkpoint: make eval CKPT=path/to.ckpt
	$(PY) -m ram_lightning eval ckpt_path=$(CKPT) $(ARGS)

sweep: data  ## Optuna search over lr, std, reinforce weight and mc_train
	$(PY) -m pip install -q -e ".[sweep]"
	$(PY) -m ram_lightning train -m hparams_search=optuna $(ARGS)

lint: $(STAMP)  ## ruff
	$(PY) -m ruff check src tests
	$(PY) -m ruff format --check src tests

render: $(STAMP)  ## draw a checkpoint's glimpses as GIFs: make render CKPT=path/to.ckpt
	$(PY) -m ram_lightning render ckpt_path=$(CKPT) $(ARGS)

bench: $(STAMP)  ## speed of the retina, the training step and canvas generation
	$(PY) -m ram_lightning bench $(ARGS)

clean:  ## remove caches and build files (never outputs/, data/ or checkpoints/)
	rm -rf build dist .pytest_cache .ruff_cache src/*.egg-info
	find . -name __pycache__ -type d -prune -not -path './.venv/*' -exec rm -rf {} +
