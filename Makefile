# Two entry points (see README): `make demo` runs the main job, `make test` runs the tests.
# Both create .venv and install the pinned requirements first. On a machine with a system
# rclpy (a sourced ROS 2 install) the venv sees system packages and the ROS wheels are skipped.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST
export RMW_IMPLEMENTATION ?= rmw_fastrtps_cpp
export PYTHONUNBUFFERED = 1

.PHONY: setup demo test fuzz bench readme-tables clean
setup: $(STAMP)

# uv prints what it resolved and installed (no -q on the big step): the first set-up fetches
# torch, its CUDA libraries, ONNX Runtime, OpenCV and the ROS wheels (about 6 GB in .venv).
$(STAMP): requirements.txt requirements-ros.txt requirements-torch.txt requirements-dev.txt setup.py
	@echo "== setting up $(VENV) (first time: downloads about 6 GB of wheels; see README, Install and build)"
	$(PYTHON) -m pip install -q uv 2>/dev/null || $(PYTHON) -m pip install -q --user uv
	@if $(PYTHON) -c "import rclpy" 2>/dev/null; then \
	  echo "system rclpy found: venv uses system site-packages, ROS wheels skipped"; \
	  $(PYTHON) -m uv venv -q --allow-existing --system-site-packages --python $(PYTHON) $(VENV); \
	  $(PYTHON) -m uv pip install -p $(PY) -r requirements.txt -r requirements-torch.txt -r requirements-dev.txt; \
	else \
	  $(PYTHON) -m uv venv -q --allow-existing --python $(PYTHON) $(VENV); \
	  $(PYTHON) -m uv pip install -p $(PY) -r requirements.txt -r requirements-ros.txt -r requirements-torch.txt -r requirements-dev.txt; \
	fi
	$(PYTHON) -m uv pip install -q -p $(PY) --no-deps -e .
	touch $(STAMP)
	@echo "== $(VENV) ready"

demo: setup
	$(PY) -m depth_diffusion_ros.cli demo --output out/demo

test: setup
	$(PY) -m pytest -q test

# the fuzz tests with many more (fresh random) examples, and the slow node-process variant
fuzz: setup
	DDR_FUZZ=long $(PY) -m pytest -q test/test_fuzz_conversions.py test/test_fuzz_node.py

bench: setup
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# the README's measured tables, regenerated from the scripts that measure them (slow: runs the
# benchmarks, the demo and the test suite); ONLY=name,name for some of them, --list shows them
readme-tables: setup
	$(PY) docs/gen_readme_tables.py $(if $(ONLY),--only $(ONLY))

clean:
	rm -rf $(VENV) out build install log *.egg-info
