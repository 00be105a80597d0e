# Two commands do everything on a fresh machine; each creates the virtual environment on first use.
#   make demo   train the CNN on the MNIST digits that ship with the package
#   make test   run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: demo test schema clean fuzz

$(BIN)/specbuild: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[test,export,tune,tensorboard]'
	touch $@

demo: $(BIN)/specbuild
	rm -rf runs/demo   # each demo is a new run; train refuses to overwrite an old one
	$(BIN)/specbuild train specs/cnn.yaml --data mnist-sample --epochs 3 --out runs/demo

test: $(BIN)/specbuild
	$(BIN)/python -m pytest

# The property test's generator on 20,000 random and mutated specs (make fuzz CASES=50000 SEED=9).
fuzz: $(BIN)/specbuild
	$(BIN)/python benchmarks/fuzz.py --cases $(or $(CASES),20000) --seed $(or $(SEED),8)

# After upgrading torch or registering built-in types: regenerate the catalog and the schema.
schema: $(BIN)/specbuild
	$(BIN)/python -m specbuild.catalog_gen
	$(BIN)/python -m specbuild.spec.schema

clean:
	rm -rf $(VENV) runs build *.egg-info
