# xcf: `make demo` explains generated phantom films with the shipped phantom pack, `make test` runs
# the tests and ruff, `make docs` builds the documentation site into site/. Each creates .venv (if
# missing) and installs the repository into it from its own files.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.xcf-installed

.PHONY: demo test lint docs venv clean weights weights-phantom weights-pneumonia

# the repository root (where this Makefile is), so that `make -f PATH/Makefile` works from another
# folder (benchmarks/train_pack_cpu.sh trains into a scratch folder that way)
ROOT := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))

$(STAMP): $(ROOT)/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e "$(ROOT)[test]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/xcf demo --out demo-out

test: $(STAMP)
	$(PY) -m pytest -q
	$(VENV)/bin/ruff check xcf plugins tests benchmarks

lint: $(STAMP)
	$(VENV)/bin/ruff check xcf plugins tests benchmarks

# The site (mkdocs.yml, pages in docs/); --strict turns every warning (a broken link, a missing
# page, an API name that does not resolve) into a failure.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) demo-out site build *.egg-info

# Retrain the shipped packs from scratch: the exact commands recorded in weights/manifest.json
# (which also says where each ran; `--device auto`, the default, takes a GPU when there is one).
# `make weights-phantom` trains the phantom pack's classifier, latent models, oracle and inpainter
# on a CPU.
# `make weights-pneumonia PNEUMONIA=DIR` trains the pneumonia pack from DIR, the Kermany pediatric
# pneumonia films at 224 px with their labels.csv (path, split, patient_id, 0/1 label columns), read
# in place. `benchmarks/train_pack_cpu.sh` runs either in a scratch folder and times each command.
PNEUMONIA ?=
XCF ?= $(VENV)/bin/xcf
NARROW := '{"widths": [16, 32, 64, 128, 128]}'
NARROW20 := '{"widths": [16, 32, 64, 128, 128], "detail_sigma": 2}'
VAE20 := '{"widths": [16, 32, 64, 128], "detail_sigma": 2}'
STEM2 := '{"stem_stride": 2}'
DETAIL := '{"widths": [32, 64, 128], "latent_channels": 16, "detail_sigma": 2}'
PNEUMONIA_DESCRIPTION := "Pediatric pneumonia (Kermany et al. 2018, CC BY 4.0), trained on a 2-core CPU: small-cnn classifier (stem_stride 2), conv-ae latent model with the input's detail passed around z (detail_sigma 2), mobilenet-v3-small oracle; inpaint-unet inpainter trained on the films without pneumonia"
PHANTOM_DESCRIPTION := "Synthetic phantom films (xcf.data.phantoms), trained on a 2-core CPU: small-cnn classifier (stem_stride 2, --degrade 0.5) over 5 findings; VAE latent model with the input's detail passed around z (detail_sigma 2), the narrow segnet-ae as the alternative; mobilenet-v3-small oracle; inpaint-unet inpainter trained on phantoms without findings"
weights: weights-phantom weights-pneumonia

weights-phantom: $(STAMP)
	$(XCF) train classifier --arch-args $(STEM2) --data phantom:20000 --out weights --name phantom-small-cnn --epochs 5 --seed 0 --degrade 0.5 --device cpu --pack phantom --role classifier
	$(XCF) train autoencoder --arch segnet-ae --arch-args $(NARROW20) --data phantom:3000 --out weights --name phantom-segnet-ae --classifier phantom-small-cnn --epochs 5 --seed 0 --device cpu --channels-last --pack phantom --role latent
	$(XCF) train vae --arch-args $(VAE20) --data phantom:3000 --out weights --name phantom-vae --classifier phantom-small-cnn --epochs 3 --seed 0 --device cpu --channels-last --pack phantom --role alt-latent
	$(XCF) train classifier --arch mobilenet-v3-small --data phantom:3000:7 --out weights --name phantom-mobilenet-oracle --epochs 5 --seed 1 --pack phantom --role oracle
	$(XCF) train inpainter --data phantom:2000 --out weights --name phantom-inpainter --epochs 10 --seed 0 --device cpu --pack phantom --role inpainter
	$(PY) -m xcf.train set-default-latent weights phantom phantom-vae $(PHANTOM_DESCRIPTION)

weights-pneumonia: $(STAMP)
	@test -n "$(PNEUMONIA)" || { echo "make weights-pneumonia: give the data folder: make weights-pneumonia PNEUMONIA=DIR (DIR holds labels.csv)" >&2; exit 2; }
	$(XCF) train classifier --arch-args $(STEM2) --data $(PNEUMONIA) --labels pneumonia --out weights --name pneumonia-small-cnn --epochs 5 --seed 0 --device cpu --channels-last --pack pneumonia --role classifier
	$(XCF) train autoencoder --arch conv-ae --arch-args $(DETAIL) --data $(PNEUMONIA) --labels pneumonia --limit 1000 --out weights --name pneumonia-conv-ae --classifier pneumonia-small-cnn --epochs 8 --seed 0 --device cpu --channels-last --pack pneumonia --role latent
	$(XCF) train classifier --arch mobilenet-v3-small --data $(PNEUMONIA) --labels pneumonia --limit 1000 --out weights --name pneumonia-mobilenet-oracle --epochs 20 --seed 0 --device cpu --pack pneumonia --role oracle
	$(XCF) train inpainter --data $(PNEUMONIA) --labels pneumonia --out weights --name pneumonia-inpainter --epochs 12 --seed 0 --device cpu --pack pneumonia --role inpainter
	$(PY) -m xcf.train set-default-latent weights pneumonia pneumonia-conv-ae $(PNEUMONIA_DESCRIPTION)
