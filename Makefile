# Entry points; each sets up what it needs on a fresh Debian 12 machine.
.PHONY: check test test-unit demo deb rpm bench mutate image

check test:
	bash dev/test

# The unit tier (docs/testing.md): no subprocess, socket timeout, package or VM; Hypothesis capped.
test-unit:
	.venv-debian/bin/python -m pytest -q -m 'not (process or packaging or vm or image)' \
	  --hypothesis-profile=quick

demo:
	bash dev/demo

mutate:
	bash dev/setup && .venv-debian/bin/python -m tests.mutants

deb:
	bash packaging/build-deb

rpm:
	bash packaging/build-rpm

bench:
	bash dev/setup && .venv-debian/bin/python -m bench

image:
	bash packaging/build-image
