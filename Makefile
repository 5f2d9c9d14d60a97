# Every target that needs the virtual environment or the data builds them first, so any target
# works as the first command on a fresh machine.
PY := .venv/bin/python
STAMP := .venv/.installed
ARGS ?=

.PHONY: help setup data train test eval render predict export sweep lint bench results results-quick gpu-rows verify clean

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
	$(PY) -m pytest -q --durations=15

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

predict: $(STAMP)  ## classify image files: make predict CKPT=path/to.ckpt INPUTS=folder_or_files
	$(PY) -m ram_lightning predict ckpt_path=$(CKPT) inputs=$(INPUTS) $(ARGS)

export: $(STAMP)  ## TorchScript or ONNX: make export CKPT=path/to.ckpt ARGS=format=onnx
	$(PY) -m ram_lightning export ckpt_path=$(CKPT) $(ARGS)

bench: $(STAMP)  ## speed of the retina, the training step and canvas generation
	$(PY) -m ram_lightning bench $(ARGS)

# The results table: every row is a real run under outputs/results/, then docs/results.md is rewritten.
RESULTS := $(PY) -m ram_lightning train -m paths.log_dir=outputs/results

results: data  ## train every row of the paper's tables (days on a CPU; use trainer=gpu ARGS) and write docs/results.md
	$(RESULTS) experiment=mnist model.net.num_glimpses=2,3,4,5,6,7 $(ARGS)
	$(RESULTS) experiment=translated60,cluttered60,cluttered100 model.net.num_glimpses=4,6,8 model.net.first_location=uniform $(ARGS)
	$(RESULTS) experiment=translated60,cluttered60,cluttered100 model.net.num_glimpses=8 model.net.first_location=center $(ARGS)
	$(RESULTS) experiment=cluttered60_random,fc_mnist,conv_mnist,conv_translated60,fc_cluttered60,conv_cluttered60,conv_cluttered100 $(ARGS)
	$(PY) -m ram_lightning.results

# One headline row per data set at a short schedule. Each run takes one core, so two chains of two
# rows run side by side; the target fails if any run does. The 60x60 and 100x100 rows train with one
# copy per image at batch 128 here: their configs' 8 copies at batch 512 cost 8x the CPU time per epoch.
QUICK := $(RESULTS) 'tags=[quick]' threads=1 +trainer.enable_progress_bar=false
QUICK_CPU := model.mc_train=1 data.batch_size=128

results-quick: data  ## the four headline rows at a short schedule, docs/results_quick.md
	{ $(QUICK) experiment=mnist trainer.max_epochs=$(or $(QUICK_EPOCHS_MNIST),15) $(ARGS) && \
	  $(QUICK) experiment=translated60 model.net.num_glimpses=8 $(QUICK_CPU) trainer.max_epochs=$(or $(QUICK_EPOCHS_60),6) $(ARGS); } & a=$$!; \
	{ $(QUICK) experiment=cluttered60 $(QUICK_CPU) trainer.max_epochs=$(or $(QUICK_EPOCHS_60),6) $(ARGS) && \
	  $(QUICK) experiment=cluttered100 $(QUICK_CPU) trainer.max_epochs=$(or $(QUICK_EPOCHS_100),4) $(ARGS); } & b=$$!; \
	wait $$a; sa=$$?; wait $$b; sb=$$?; test $$sa -eq 0 && test $$sb -eq 0
	$(PY) -m ram_lightning.results --quick

# The four headline rows side by side on one GPU, each at its own config (the 60x60 rows took 3.3-7 min
# on an H200 shared by up to six runs), stopped after MAX_TIME at the latest; runs and table land in OUT.
OUT ?= outputs/gpu_rows
MAX_TIME ?= 00:00:30:00
TRAINER ?= gpu
ROWS ?= experiment=mnist "experiment=translated60 model.net.num_glimpses=8" experiment=cluttered60 experiment=cluttered100

gpu-rows: data  ## ROWS (default: the four headline rows) at once on one GPU for at most MAX_TIME (dd:hh:mm:ss); OUT holds runs and table
	mkdir -p $(OUT)
	for row in $(ROWS); do \
	  $(PY) -m ram_lightning train $$row trainer=$(TRAINER) trainer.devices=1 trainer.max_time=$(MAX_TIME) \
	    paths.log_dir=$(OUT) +trainer.enable_progress_bar=false $(ARGS) > "$(OUT)/$$(echo $$row | tr -c 'a-z0-9\n' _).log" 2>&1 & \
	done; wait
	$(PY) -m ram_lightning.results --runs $(OUT) --out $(OUT)/results.md

verify: data  ## re-evaluate every shipped checkpoint and compare with its checkpoints/<name>.metrics.json
	$(PY) -m ram_lightning.results --verify

clean:  ## remove caches and build files (never outputs/, data/ or checkpoints/)
	rm -rf build dist .pytest_cache .ruff_cache src/*.egg-info
	find . -name __pycache__ -type d -prune -not -path './.venv/*' -exec rm -rf {} +
