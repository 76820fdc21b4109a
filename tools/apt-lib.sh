# Sourced by tools/all-in-one.sh and tools/run-tests.sh: Debian packages as
# root or through sudo, waiting for another apt instead of failing on its lock.
#   GC_PROG=tools/x.sh; . tools/apt-lib.sh; gc_apt_install pkg...

# Run a command as root: directly when we are root, else through sudo.
gc_as_root() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
    else
        sudo "$@"
    fi
}

# Fail with one clear line, before anything else runs, when root is needed
# and cannot be had.
gc_require_root() {
    if [ "$(id -u)" != 0 ] && ! command -v sudo >/dev/null 2>&1; then
        echo "$GC_PROG: $1 needs root: run it as root, or install sudo and run it as a user allowed to use it" >&2
        exit 1
    fi
}

# apt-get with a wait for the dpkg lock (install) and, since apt-get update
# ignores DPkg::Lock::Timeout for its lists lock, a retry loop for that one.
gc_apt_get() {
    local out deadline=$((SECONDS + 600))
    out=$(mktemp)
    while :; do
        if gc_as_root env DEBIAN_FRONTEND=noninteractive apt-get -q \
                -o DPkg::Lock::Timeout=600 "$@" 2>"$out"; then
            cat "$out" >&2; rm -f "$out"; return 0
        fi
        if grep -q 'Could not get lock\|Unable to lock\|Unable to acquire' "$out" \
                && [ $SECONDS -lt $deadline ]; then
            echo "$GC_PROG: another apt-get is running; waiting for it to finish" >&2
            sleep 5
            continue
        fi
        cat "$out" >&2; rm -f "$out"; return 1
    done
}

# Install what is missing of the given packages: nothing to do (and no root
# needed) when all are installed; else one update, then one install.
gc_apt_install() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$pkg")
    done
    [ ${#missing[@]} = 0 ] && return 0
    gc_require_root "installing ${missing[*]}"
    echo "$GC_PROG: installing ${missing[*]}" >&2
    gc_apt_get update
    gc_apt_get install -y --no-install-recommends "${missing[@]}"
}
