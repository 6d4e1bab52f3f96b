# Entry points; each sets up what it needs on a fresh Debian 12 machine.
.PHONY: check test demo deb rpm bench mutate image

check test:
	bash dev/test

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
