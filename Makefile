# xcf: `make demo` runs the main job on the shipped default pack, `make test` runs the tests.
# Both create .venv (if missing) and install the repo into it from its own files.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.xcf-installed

.PHONY: demo test lint venv clean weights

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/xcf demo --out demo-out

test: $(STAMP)
	$(PY) -m pytest -q
	$(VENV)/bin/ruff check xcf plugins tests benchmarks

lint: $(STAMP)
	$(VENV)/bin/ruff check xcf plugins tests benchmarks

clean:
	rm -rf $(VENV) demo-out build *.egg-info

# Retrain the shipped packs from scratch (the exact commands recorded in weights/manifest.json).
# About 1.5 h on a 2-core CPU; reads ../shared/data/kermany-pneumonia-224 in place.
PNEUMONIA ?= ../shared/data/kermany-pneumonia-224
NARROW := '{"widths": [16, 32, 64, 128, 128]}'
weights: $(STAMP)
	$(VENV)/bin/xcf train classifier --data phantom:2500 --out weights --name phantom-small-cnn --epochs 3 --seed 0 --pack phantom --role classifier
	$(VENV)/bin/xcf train autoencoder --arch segnet-ae --arch-args $(NARROW) --data phantom:1500 --out weights --name phantom-segnet-ae --classifier phantom-small-cnn --epochs 2 --seed 0 --pack phantom --role latent
	$(VENV)/bin/xcf train classifier --data $(PNEUMONIA) --labels pneumonia --out weights --name pneumonia-small-cnn --epochs 2 --schedule-epochs 5 --seed 0 --pack pneumonia --role classifier
	$(VENV)/bin/xcf train autoencoder --arch segnet-ae --arch-args $(NARROW) --data $(PNEUMONIA) --labels pneumonia --limit 1500 --out weights --name pneumonia-segnet-ae --classifier pneumonia-small-cnn --epochs 1 --seed 0 --pack pneumonia --role latent
