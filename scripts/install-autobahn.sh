#!/usr/bin/env bash
# Install Autobahn|Testsuite (wstest) into the project-local folder .autobahn/.
#
# The suite (PyPI: autobahntestsuite 25.10.1) still runs only on Python 2.7.
# This script finds a Python 2.7 (pyenv's, or any on the PATH), or else
# installs Debian 11's python2.7 through an extra, low-priority apt source,
# then pip-installs the suite with the pins in scripts/autobahn/constraints-py27.txt
# into .autobahn/py27 and writes the wrapper .autobahn/wstest.
#
# Safe to run twice: when .autobahn/wstest already runs and reports the wanted
# version, it exits at once.
#
# Environment:
#   AUTOBAHN_DIR      install folder (default: <repo>/.autobahn)
#   AUTOBAHN_PYTHON2  a python2.7 to use instead of searching for one
#   AUTOBAHN_USE_APT  set to 1 to skip the search and take Debian 11's python2.7
set -euo pipefail

SUITE_VERSION=25.10.1
PIP_BOOTSTRAP_VERSION=20.3.4
# The last setuptools and wheel releases for Python 2; setuptools matches the
# pin in constraints-py27.txt.
SETUPTOOLS_VERSION=44.0.0
WHEEL_VERSION=0.37.1

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
AB_DIR="${AUTOBAHN_DIR:-$ROOT/.autobahn}"
USERBASE="$AB_DIR/py27"
WRAPPER="$AB_DIR/wstest"
CONSTRAINTS="$ROOT/scripts/autobahn/constraints-py27.txt"

say() { echo "install-autobahn: $*"; }
die() {
    echo "install-autobahn: error: $*" >&2
    exit 1
}

# True when the wrapper exists and reports the wanted suite version.
wstest_works() {
    [[ -x "$WRAPPER" ]] || return 1
    "$WRAPPER" -a 2>/dev/null | grep -qx "AutobahnTestSuite $SUITE_VERSION"
}

# True when $1 is a working Python 2.7 interpreter.
is_python27() {
    [[ -n "$1" && -x "$1" ]] || return 1
    "$1" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (2, 7) else 1)' 2>/dev/null
}

# Print the first Python 2.7 found: pyenv's versions, then the usual paths.
# pyenv shims are skipped: they run whatever version pyenv selects.
find_python27() {
    local pyenv_root="${PYENV_ROOT:-$HOME/.pyenv}"
    local candidate
    for candidate in \
        "$pyenv_root"/versions/2.7*/bin/python2.7 \
        /usr/bin/python2.7 \
        /usr/local/bin/python2.7; do
        if is_python27 "$candidate"; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

# The Debian mirror this machine is configured with, read from apt's sources
# (deb822 .sources files first, then one-line sources.list entries).
debian_mirror() {
    local files=() f
    for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f "$f" ]] && files+=("$f")
    done
    [[ ${#files[@]} -gt 0 ]] || return 1
    {
        grep -h '^URIs:' "${files[@]}" 2>/dev/null | tr -s ' ' '\n' | grep -v '^URIs:' || true
        grep -h '^deb ' "${files[@]}" 2>/dev/null | awk '{ for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; break } }' || true
    } | grep -E '^https?://[^ ]+/debian/?$' | head -n 1 | sed 's:/*$::'
}

# Install Debian 11 (bullseye)'s python2.7 with pip bootstrapped into the user
# base. Bullseye is added with pin priority 100, so apt takes from it only
# packages that the machine's own suites do not have.
install_python27_from_bullseye() {
    [[ "$(id -u)" -eq 0 ]] || die "no Python 2.7 found, and installing one from Debian 11 needs root"
    command -v apt-get >/dev/null || die "no Python 2.7 found, and apt-get is missing"

    local mirror
    mirror="$(debian_mirror)" || true
    [[ -n "$mirror" ]] || die "no Debian mirror found in /etc/apt/sources.list*"

    local keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    [[ -f "$keyring" ]] || die "missing $keyring (package debian-archive-keyring)"

    say "no Python 2.7 found: adding Debian 11 (bullseye) from $mirror with pin priority 100"
    cat >/etc/apt/sources.list.d/tern-bullseye.sources <<EOF
# Added by tern's scripts/install-autobahn.sh: Python 2.7 for Autobahn|Testsuite.
Types: deb
URIs: $mirror
Suites: bullseye
Components: main
Signed-By: $keyring
EOF
    cat >/etc/apt/preferences.d/tern-bullseye <<'EOF'
# Added by tern's scripts/install-autobahn.sh: take nothing from bullseye that
# the machine's own suites provide.
Package: *
Pin: release n=bullseye
Pin-Priority: 100
EOF

    say "apt-get update"
    apt-get -o DPkg::Lock::Timeout=300 update -q
    say "apt-get install python2.7 libpython2.7-dev (headers for wsaccel's C build)"
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -q \
        --no-install-recommends python2.7 libpython2.7-dev
    is_python27 /usr/bin/python2.7 || die "python2.7 from bullseye does not run"
}

# Give $1 (a Python 2.7) pip, setuptools and wheel in the user base when it
# has no pip of its own (Debian's python2.7 comes without). The wheels are
# fetched by python3's pip, which can fetch for another Python version.
ensure_pip() {
    local py="$1"
    if PYTHONUSERBASE="$USERBASE" "$py" -m pip --version >/dev/null 2>&1; then
        return 0
    fi

    local wheels="$AB_DIR/wheels"
    mkdir -p "$wheels"
    say "bootstrapping pip $PIP_BOOTSTRAP_VERSION, setuptools $SETUPTOOLS_VERSION, wheel $WHEEL_VERSION for Python 2.7"
    python3 -m pip --version >/dev/null 2>&1 || die "python3 -m pip is needed to fetch the pip wheel"
    python3 -m pip download -q --no-deps --python-version 2.7 --only-binary=:all: -d "$wheels" \
        "pip==$PIP_BOOTSTRAP_VERSION" "setuptools==$SETUPTOOLS_VERSION" "wheel==$WHEEL_VERSION"

    local pip_wheel="$wheels/pip-$PIP_BOOTSTRAP_VERSION-py2.py3-none-any.whl"
    [[ -f "$pip_wheel" ]] || die "pip download did not produce $pip_wheel"
    # A pip wheel can run itself: python pip.whl/pip installs wheels.
    PYTHONUSERBASE="$USERBASE" "$py" "$pip_wheel/pip" install -q --user --no-index \
        --no-warn-script-location --find-links "$wheels" \
        "pip==$PIP_BOOTSTRAP_VERSION" "setuptools==$SETUPTOOLS_VERSION" "wheel==$WHEEL_VERSION" \
        2> >(grep -v -e '^DEPRECATION' >&2)
    PYTHONUSERBASE="$USERBASE" "$py" -m pip --version >/dev/null 2>&1 || die "pip bootstrap failed"
}

write_wrapper() {
    local py="$1"
    cat >"$WRAPPER" <<EOF
#!/usr/bin/env bash
# Written by scripts/install-autobahn.sh: runs wstest from its user base.
unset PYTHONPATH PYTHONHOME PYTHONNOUSERSITE
export PYTHONUSERBASE="$USERBASE"
exec "$py" "$USERBASE/bin/wstest" "\$@"
EOF
    chmod +x "$WRAPPER"
}

main() {
    if wstest_works; then
        say "AutobahnTestSuite $SUITE_VERSION already installed: $WRAPPER"
        exit 0
    fi

    local py=""
    if [[ -n "${AUTOBAHN_PYTHON2:-}" ]]; then
        is_python27 "$AUTOBAHN_PYTHON2" || die "AUTOBAHN_PYTHON2=$AUTOBAHN_PYTHON2 is not a working Python 2.7"
        py="$AUTOBAHN_PYTHON2"
    elif [[ "${AUTOBAHN_USE_APT:-0}" != 1 ]]; then
        py="$(find_python27)" || py=""
    fi
    if [[ -z "$py" ]]; then
        install_python27_from_bullseye
        py=/usr/bin/python2.7
    fi
    say "using Python 2.7 at $py"

    mkdir -p "$AB_DIR"
    ensure_pip "$py"

    say "pip install autobahntestsuite==$SUITE_VERSION into $USERBASE (pins: ${CONSTRAINTS#"$ROOT"/})"
    PYTHONUSERBASE="$USERBASE" "$py" -m pip install -q --user --disable-pip-version-check \
        --no-warn-script-location -c "$CONSTRAINTS" "autobahntestsuite==$SUITE_VERSION" \
        2> >(grep -v -e '^DEPRECATION' >&2)
    [[ -f "$USERBASE/bin/wstest" ]] || die "pip finished but $USERBASE/bin/wstest is missing"

    write_wrapper "$py"
    wstest_works || die "$WRAPPER was installed but does not run"
    say "installed: $("$WRAPPER" -a 2>/dev/null | tr '\n' ' ')-> $WRAPPER"
}

main "$@"
