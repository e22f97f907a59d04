#!/usr/bin/env bash
# Install Autobahn|Testsuite (wstest) into a private prefix inside the repo.
#
#   autobahn/.py27/   Python 2.7 runtime unpacked from Debian bullseye .debs
#                     (plus apt state / downloaded .debs / wheels under .py27/cache/)
#   autobahn/.venv/   virtualenv with autobahntestsuite and its pinned deps
#
# Both directories are git-ignored. Idempotent: if autobahn/wstest already
# works, this exits at once. Needs root (apt-get) only when host packages
# are missing.
#
# Environment overrides:
#   PY27_DEB_VERSION        Debian version of the python2.7 packages (default 2.7.18-8+deb11u1)
#   AUTOBAHNTESTSUITE_VERSION  (default 25.10.1)
#   DEBIAN_MIRROR           archive URI for the bullseye .debs (default: the URI
#                           this machine's apt sources use for its own release)
#   WSTEST_FORCE_REINSTALL=1  wipe .py27/ and .venv/ first
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PY27="$HERE/.py27"
VENV="$HERE/.venv"
CACHE="$PY27/cache"
LIBDIR="$PY27/usr/lib/x86_64-linux-gnu"
PYBIN="$PY27/usr/bin/python2.7"

PY27_DEB_VERSION="${PY27_DEB_VERSION:-2.7.18-8+deb11u1}"
AUTOBAHNTESTSUITE_VERSION="${AUTOBAHNTESTSUITE_VERSION:-25.10.1}"
PIP_VERSION=20.3.4
VIRTUALENV_VERSION=16.7.12
STAMP="$PY27/.installed-$PY27_DEB_VERSION"

log() { printf '[install-wstest] %s\n' "$*" >&2; }
die() { printf '[install-wstest] ERROR: %s\n' "$*" >&2; exit 1; }

wstest_works() {
    [ -x "$VENV/bin/python" ] && [ -f "$VENV/bin/wstest" ] &&
        "$HERE/wstest" --help >/dev/null 2>&1
}

if [ "${WSTEST_FORCE_REINSTALL:-0}" = 1 ]; then
    log "WSTEST_FORCE_REINSTALL=1: removing $PY27 and $VENV"
    rm -rf "$PY27" "$VENV"
fi

if wstest_works; then
    log "wstest already installed ($VENV)"
    exit 0
fi

START=$(date +%s)
mkdir -p "$PY27"
# Serialize concurrent installs.
exec 9>"$PY27/.install.lock"
flock 9
if wstest_works; then
    log "wstest installed by a concurrent run"
    exit 0
fi

[ "$(uname -m)" = x86_64 ] || die "only x86_64 is supported (got $(uname -m))"

# ---------------------------------------------------------------------------
# 1. Host packages (compiler for wsaccel, runtime libs python2.7 links against)
# ---------------------------------------------------------------------------
HOST_PKGS=(gcc libc6-dev ca-certificates debian-archive-keyring
    libexpat1 libsqlite3-0 libreadline8 libdb5.3 libncursesw6 libnsl2
    libtirpc3 libbz2-1.0 zlib1g libcrypt1)
missing=()
for p in "${HOST_PKGS[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing host packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# ---------------------------------------------------------------------------
# 2. Python 2.7 runtime from Debian bullseye, unpacked into .py27/
# ---------------------------------------------------------------------------
# The archive URI is taken from this machine's own apt configuration (the
# source that serves the host's release), unless DEBIAN_MIRROR is set.
detect_mirror() {
    local codename
    # shellcheck disable=SC1091
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    [ -n "$codename" ] || return 1
    {
        # deb822 *.sources files: paragraphs with URIs:/Suites:
        for f in /etc/apt/sources.list.d/*.sources; do
            [ -f "$f" ] || continue
            awk -v cn="$codename" '
                function flush() {
                    if (uris != "" && (" " suites " ") ~ (" " cn " ")) {
                        split(uris, u, " "); print u[1]
                    }
                    uris = ""; suites = ""
                }
                /^[ \t]*$/ { flush(); next }
                /^[Uu][Rr][Ii][Ss]:/ { sub(/^[^:]*:[ \t]*/, ""); uris = $0 }
                /^[Ss]uites:/ { sub(/^[^:]*:[ \t]*/, ""); suites = $0 }
                END { flush() }' "$f"
        done
        # one-line format
        for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
            [ -f "$f" ] || continue
            sed -e 's/\[[^]]*\]//' "$f" |
                awk -v cn="$codename" '$1 == "deb" && $3 == cn { print $2 }'
        done
    } | grep -E '^https?://' | head -n1
}

if [ ! -f "$STAMP" ] || [ ! -x "$PYBIN" ]; then
    mirror="${DEBIAN_MIRROR:-$(detect_mirror || true)}"
    [ -n "$mirror" ] || die "could not find the Debian archive URI in /etc/apt; set DEBIAN_MIRROR"
    keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    [ -f "$keyring" ] || die "$keyring missing (package debian-archive-keyring)"
    log "downloading python2.7 $PY27_DEB_VERSION .debs (bullseye, $mirror)"

    rm -rf "${PY27:?}/usr" "${PY27:?}/etc" "${PY27:?}"/.installed-* "${CACHE:?}/debs"
    mkdir -p "$CACHE/apt/lists/partial" "$CACHE/apt/cache/archives/partial" "$CACHE/debs"
    echo "deb [signed-by=$keyring] $mirror bullseye main" >"$CACHE/apt/sources.list"
    APT_OPTS=(
        -o "Dir::Etc::SourceList=$CACHE/apt/sources.list"
        -o "Dir::Etc::SourceParts=/dev/null"
        -o "Dir::State::Lists=$CACHE/apt/lists"
        -o "Dir::Cache=$CACHE/apt/cache"
        -o "APT::Sandbox::User=root"
        -o "Acquire::Languages=none"
        -q
    )
    apt-get "${APT_OPTS[@]}" update >/dev/null
    V="$PY27_DEB_VERSION"
    (cd "$CACHE/debs" && apt-get "${APT_OPTS[@]}" download \
        "python2.7=$V" "python2.7-minimal=$V" "libpython2.7-minimal=$V" \
        "libpython2.7-stdlib=$V" "libpython2.7-dev=$V" libssl1.1 libffi7 >/dev/null)
    for deb in "$CACHE"/debs/*.deb; do
        dpkg-deb -x "$deb" "$PY27"
    done
    # Drop the apt lists (tens of MB); the .debs stay for reference.
    rm -rf "$CACHE/apt/lists" "$CACHE/apt/cache"

    [ -x "$PYBIN" ] || die "python2.7 binary not found after unpacking"
    LD_LIBRARY_PATH="$LIBDIR" PYTHONNOUSERSITE=1 "$PYBIN" -c \
        'import ssl, ctypes, zlib, bz2, hashlib, sqlite3, pyexpat, distutils.sysconfig' ||
        die "unpacked python2.7 does not work"
    touch "$STAMP"
fi

# ---------------------------------------------------------------------------
# 3. virtualenv + autobahntestsuite
# ---------------------------------------------------------------------------
export LD_LIBRARY_PATH="$LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PYTHONNOUSERSITE=1
unset PYTHONHOME PYTHONPATH
export PIP_CERT="${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_PYTHON_VERSION_WARNING=1

WHEELS="$CACHE/wheels"
mkdir -p "$WHEELS"
if ! ls "$WHEELS"/virtualenv-"$VIRTUALENV_VERSION"-*.whl >/dev/null 2>&1 ||
    ! ls "$WHEELS"/pip-"$PIP_VERSION"-*.whl >/dev/null 2>&1; then
    log "fetching pip $PIP_VERSION and virtualenv $VIRTUALENV_VERSION wheels"
    command -v python3 >/dev/null || die "python3 (with pip) is needed to fetch the bootstrap wheels"
    python3 -m pip download -q --no-deps --python-version 27 --only-binary=:all: \
        -d "$WHEELS" "pip==$PIP_VERSION" "virtualenv==$VIRTUALENV_VERSION"
fi
rm -rf "$CACHE/virtualenv"
"$PYBIN" -m zipfile -e "$WHEELS"/virtualenv-"$VIRTUALENV_VERSION"-*.whl "$CACHE/virtualenv"

log "creating virtualenv $VENV"
rm -rf "$VENV"
PYTHONPATH="$CACHE/virtualenv" "$PYBIN" -m virtualenv --no-download -p "$PYBIN" "$VENV" >/dev/null
VPY="$VENV/bin/python"
"$VPY" -m pip install -q "$WHEELS"/pip-"$PIP_VERSION"-*.whl

log "installing autobahntestsuite==$AUTOBAHNTESTSUITE_VERSION"
# Debian's pyconfig.h includes <x86_64-linux-gnu/python2.7/pyconfig.h>, so the
# prefix's include root must be on the path for wsaccel (the one C build).
CC=gcc LDSHARED="gcc -pthread -shared" CFLAGS="-I$PY27/usr/include" \
    "$VPY" -m pip install -q --prefer-binary \
    "autobahntestsuite==$AUTOBAHNTESTSUITE_VERSION" "Automat==20.2.0"

wstest_works || die "wstest installed but does not run; try: $HERE/wstest --help"
log "done in $(($(date +%s) - START)) s"
