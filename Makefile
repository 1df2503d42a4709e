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

# Retrain the shipped packs from scratch: the exact commands recorded in weights/manifest.json
# (which also says where each ran: the pneumonia small-cnn and conv-ae on this 2-core CPU, the rest
# on a GPU; `--device auto`, the default, takes a GPU when there is one). The phantom classifier and
# autoencoder were trained on an H200 in session 12 (benchmarks/gpu_retrain.sh: the autoencoder is
# its detail_sigma 2 recipe, picked by benchmarks/select_weights.py); on this CPU the 5-epoch
# classifier alone would take about 45 min (docs/results/cpu-train-phantom-s12.md: 40-44 ms per phantom
# and epoch, measured on a shorter run).
# Reads ../shared/data/kermany-pneumonia-224 in place. The GPU session that trained the others and
# ran the GPU benchmarks is benchmarks/gpu_session.sh. The pneumonia pack's latent model is the
# conv-ae trained last (the segnet-ae before it is the latent of the `pneumonia-segnet` pack, a
# manifest entry pairing it with the same classifier and oracle, kept for the results measured with it).
PNEUMONIA ?= ../shared/data/kermany-pneumonia-224
NARROW := '{"widths": [16, 32, 64, 128, 128]}'
NARROW20 := '{"widths": [16, 32, 64, 128, 128], "detail_sigma": 2}'
DETAIL := '{"widths": [32, 64, 128], "latent_channels": 16, "detail_sigma": 2}'
weights: $(STAMP)
	$(VENV)/bin/xcf train classifier --data phantom:12000 --out weights --name phantom-small-cnn --epochs 5 --seed 0 --degrade 0.5 --pack phantom --role classifier
	$(VENV)/bin/xcf train autoencoder --arch segnet-ae --arch-args $(NARROW20) --data phantom:3000 --out weights --name phantom-segnet-ae --classifier phantom-small-cnn --epochs 5 --seed 0 --pack phantom --role latent
	$(VENV)/bin/xcf train classifier --arch mobilenet-v3-small --data phantom:3000:7 --out weights --name phantom-mobilenet-oracle --epochs 5 --seed 1 --pack phantom --role oracle
	$(VENV)/bin/xcf train classifier --data $(PNEUMONIA) --labels pneumonia --out weights --name pneumonia-small-cnn --epochs 5 --seed 0 --pack pneumonia --role classifier
	$(VENV)/bin/xcf train autoencoder --arch segnet-ae --arch-args $(NARROW) --data $(PNEUMONIA) --labels pneumonia --limit 1000 --out weights --name pneumonia-segnet-ae --classifier pneumonia-small-cnn --epochs 20 --seed 0 --pack pneumonia --role latent
	$(VENV)/bin/xcf train classifier --arch mobilenet-v3-small --data $(PNEUMONIA) --labels pneumonia --limit 1000 --out weights --name pneumonia-mobilenet-oracle --epochs 20 --seed 0 --pack pneumonia --role oracle
	$(VENV)/bin/xcf train autoencoder --arch conv-ae --arch-args $(DETAIL) --data $(PNEUMONIA) --labels pneumonia --limit 1000 --out weights --name pneumonia-conv-ae --classifier pneumonia-small-cnn --epochs 8 --seed 0 --pack pneumonia --role latent
