# Entry points; each sets up what it needs on a fresh Debian 12 machine.
.PHONY: check test demo deb rpm bench image

check test:
	bash dev/test

demo:
	bash dev/demo

deb:
	bash packaging/build-deb

rpm:
	bash packaging/build-rpm

bench:
	bash dev/setup && .venv-debian/bin/python -m bench

image:
	bash packaging/build-image
