# zoo: `make demo` and `make test` work on a fresh machine (they run `make setup` first).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
LOCK   := requirements/constraints.txt
# The setup stamp is keyed on the lock file (and the package metadata): a second
# `make setup` with nothing changed does nothing.
HASH   := $(shell cat $(LOCK) pyproject.toml setup.py 2>/dev/null | sha256sum | cut -c1-16)
STAMP  := $(VENV)/.zoo-setup-$(HASH)
PYTEST_ARGS ?=

.PHONY: setup demo test ctest asan bench docs clean

# The extension zoo/_C.so is rebuilt (incrementally, by ninja) when a csrc/ file,
# setup.py or the build mode (ZOO_FORCE_CUDA) changes.
CSRC     := $(wildcard csrc/*.cpp csrc/*.h csrc/cpu/*.cpp csrc/cpu/*.h csrc/cuda/*.cu csrc/cuda/*.cuh csrc/cuda/*.h)
EXT_MODE := $(VENV)/.zoo-ext-cuda$(ZOO_FORCE_CUDA)

setup: $(STAMP) zoo/_C.so

$(STAMP):
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c $(LOCK) torch torchvision setuptools
	$(PIP) install -q -c $(LOCK) --no-build-isolation -e '.[dev,stego,video,export]'
	@rm -f $(VENV)/.zoo-setup-*
	@touch $@
	@echo "zoo: environment ready in $(VENV)"

$(EXT_MODE): | $(STAMP)
	@rm -f $(VENV)/.zoo-ext-*
	@touch $@

zoo/_C.so: $(CSRC) setup.py $(EXT_MODE) | $(STAMP)
	$(PY) setup.py -q build_ext --inplace
	@touch $@

# The demo: YOLOv3-SE fitted on the embedded synthetic insects in about 5 minutes on 2 cores
# (configs/demo/insects_5min.yaml), one line per epoch, then predictions on the val images
# (PNGs with boxes + detections.json) in runs/demo/predict and the training curves in curves.png.
DEMO_CONFIG ?= --config configs/data/insects.yaml --config configs/detection/yolov3_se.yaml \
               --config configs/demo/insects_5min.yaml
demo: setup
	@rm -rf runs/demo
	$(PY) -m zoo fit $(DEMO_CONFIG)
	$(PY) -m zoo predict $(DEMO_CONFIG) --ckpt_path=runs/demo/lightning_logs/version_0/checkpoints/best.ckpt
	@echo "zoo demo: val mAP@0.5 is the 'zoo fit: best val/mAP50=' line above;" \
	  "pictures with boxes: runs/demo/predict/*.png (detections.json beside them);" \
	  "training curves: runs/demo/lightning_logs/version_0/curves.png (or: tensorboard --logdir runs/demo)"

# pytest exits 5 when it collects nothing: that must fail, never pass silently.
# The C++ smoke test (`make ctest`) runs after pytest; both must pass.
test: setup
	@$(PY) -m pytest -q $(PYTEST_ARGS) tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; rc=1; fi; \
	$(MAKE) --no-print-directory ctest; crc=$$?; \
	if [ $$rc -ne 0 ]; then exit $$rc; fi; exit $$crc

# libzoo_ops + its C++ smoke test with CMake (docs/BUILD.md); extra cmake flags in CMAKE_ARGS,
# e.g. `make ctest CMAKE_ARGS=-DZOO_WITH_CUDA=ON`.
CMAKE_ARGS ?=
ctest: setup
	cmake -S . -B build/cmake -DCMAKE_PREFIX_PATH=$$($(PY) -c 'import torch;print(torch.utils.cmake_prefix_path)') -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS)
	cmake --build build/cmake -j2
	ctest --test-dir build/cmake --output-on-failure --no-tests=error

# The op tests under AddressSanitizer + UndefinedBehaviorSanitizer (docs/BUILD.md, "Fuzzing and
# sanitizers"). A CPU-only debug build of the kernels (ZOO_SANITIZE=1: -fsanitize=address,undefined
# -O1 -g) goes to build/asan, away from zoo/_C.so and its objects, and ZOO_EXT_PATH makes zoo.ops
# load it. Python is not instrumented, so the sanitizer runtimes are preloaded. Leak detection is
# off (the interpreter keeps allocations to the end by design). A report goes to stderr and stops
# the process that hit it (ASan aborts; UBSan exits non-zero, the build has -fno-sanitize-recover),
# so pytest, or the test that started that process, fails. pytest captures sys.stdout/stderr only
# (--capture=sys): a report written to file descriptor 2 by a dying process reaches the log.
ASAN_DIR   := build/asan
ASAN_SO    := $(ASAN_DIR)/lib/zoo/_C.so
ASAN_CC    ?= gcc
ASAN_TESTS ?= $(filter-out %_cuda.py,$(wildcard tests/ops/test_*.py))

$(ASAN_SO): $(CSRC) setup.py | $(STAMP)
	ZOO_SANITIZE=1 $(PY) setup.py -q build_ext --build-lib $(ASAN_DIR)/lib --build-temp $(ASAN_DIR)/temp
	@touch $@

asan: $(ASAN_SO)
	@env -u ZOO_OPS ZOO_EXT_PATH=$(CURDIR)/$(ASAN_SO) \
	  LD_PRELOAD="$$($(ASAN_CC) -print-file-name=libasan.so):$$($(ASAN_CC) -print-file-name=libubsan.so)" \
	  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:halt_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  $(PY) -m pytest -q --capture=sys $(PYTEST_ARGS) $(ASAN_TESTS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make asan: pytest collected no tests" >&2; rc=1; fi; \
	if [ $$rc -ne 0 ]; then echo "make asan: failed (a sanitizer report or a failing test above)" >&2; fi; \
	exit $$rc

bench: setup
	@found=0; for f in benchmarks/bench_*.py; do \
	  [ -e "$$f" ] || continue; found=1; echo "== $$f"; $(PY) "$$f" || exit 1; done; \
	if [ $$found -eq 0 ]; then echo "make bench: no benchmarks/bench_*.py yet"; fi

docs: setup
	$(PY) -c "from zoo import registry; registry.write_model_index()"
	@{ echo "# Models"; echo; \
	  echo "Every registered model: its task, parameter count at the default config, multiply-accumulates"; \
	  echo "(GMACs, conv and linear layers, batch 1) at the default input (CxHxW), the outside reference its"; \
	  echo "architecture is tested against and how. *Weight identity*: the reference built with random"; \
	  echo "weights and randomised BatchNorm statistics, saved as a state dict, loads with"; \
	  echo "\`zoo.load(name, weights=file)\` and gives the same logits within 1e-5 (fp32, eval), with the"; \
	  echo "same parameter count. The zoo's custom ops are counted too: the fused SE op's two FCs, and each"; \
	  echo "adder layer as the MACs of the convolution it replaces (one subtract-accumulate per weight and"; \
	  echo "output; see docs/OPS.md). \`python -m zoo flow NAME\` shows where they go, layer by layer."; \
	  echo "googlenet's count includes its two auxiliary heads (used in training only; 6,624,904 parameters"; \
	  echo "without them)."; \
	  echo "Generated by \`make docs\` (\`python -m zoo list --markdown\`); a test fails when it is stale."; echo; \
	  $(PY) -m zoo list --markdown; } > docs/MODELS.md

clean:
	rm -rf $(VENV) build *.egg-info runs lightning_logs
