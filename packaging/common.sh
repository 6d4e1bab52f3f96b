# Shared by packaging/build-deb and packaging/build-rpm (sourced, not run).
# Sets ROOT and VERSION; checks that every place naming the version agrees.

# Distribution tools only: a pyenv or venv python found first on PATH would
# build against the wrong interpreter and libraries.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

die() {
  echo "${0##*/}: $*" >&2
  exit 1
}

# The version as pyproject.toml, debian/changelog and the RPM spec state it.
pyproject_version() { sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/pyproject.toml" | head -n 1; }
changelog_version() { sed -n '1s/^lhsweep (\([^)]*\)).*/\1/p' "$ROOT/debian/changelog"; }
spec_version() { sed -n 's/^Version:[[:space:]]*//p' "$ROOT/packaging/lhsweep.spec" | head -n 1; }

VERSION=$(pyproject_version)
[ -n "$VERSION" ] || die "pyproject.toml: no version"
[ "$(changelog_version)" = "$VERSION" ] ||
  die "debian/changelog: version $(changelog_version) is not pyproject.toml's $VERSION"
[ "$(spec_version)" = "$VERSION" ] ||
  die "packaging/lhsweep.spec: Version $(spec_version) is not pyproject.toml's $VERSION"

# Files of the tree that both packages ship besides the Python package.
for f in README.md etc/lhsweep.toml man/lhsweep.8 man/lhsweep.toml.5 \
  monitoring/lhsweep.rules.yml systemd/lhsweep.catalog systemd/lhsweep.service; do
  [ -f "$ROOT/$f" ] || die "$f is missing: the packages ship it"
done

# The output directory (created), absolute.
outdir() {
  local dir=${1:-$ROOT/dist}
  mkdir -p "$dir"
  (cd "$dir" && pwd)
}

# Copy the files git knows (tracked, or new and not ignored) to DEST: no build
# leftovers, virtualenvs or caches reach a package.
copy_tree() {
  local dest=$1
  mkdir -p "$dest"
  git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1 ||
    die "$ROOT is not a git work tree"
  (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
    tar --null -T - -cf - | tar -xf - -C "$dest")
}
