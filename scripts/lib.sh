# Shared shell helpers for the project's scripts (sourced, not run).

log() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# Installs the named packages from the system's packages; the package lists are fetched once
# per script run, not once per package group.
APT_UPDATED=
apt_install() {
    if [ -z "$APT_UPDATED" ]; then
        as_root apt-get update -qq >&2
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "$@" >&2
}

# Installs mosquitto and its clients from the system's packages when missing.
ensure_mosquitto() {
    if command -v mosquitto >/dev/null 2>&1 && command -v mosquitto_pub >/dev/null 2>&1; then
        return
    fi
    log "installing mosquitto from the system's packages"
    apt_install mosquitto mosquitto-clients
    # The package may start a system-wide broker on 1883; ours run on free ports.
    if command -v systemctl >/dev/null 2>&1; then
        as_root systemctl disable --now mosquitto >/dev/null 2>&1 || true
    fi
}

# Prints a free TCP port on the loopback interface.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits up to $2 seconds for 127.0.0.1:$1 to accept connections.
wait_port() {
    local port=$1 limit=${2:-10} i
    for ((i = 0; i < limit * 10; i++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}

# Installs what building librdkafka (through rdkafka-sys) needs: a C toolchain, pkg-config and
# OpenSSL's headers, from the system's packages when missing.
ensure_build_deps() {
    if command -v cc >/dev/null 2>&1 && command -v make >/dev/null 2>&1 \
        && command -v pkg-config >/dev/null 2>&1 && pkg-config --exists openssl 2>/dev/null \
        && command -v openssl >/dev/null 2>&1; then
        return
    fi
    log "installing build dependencies (gcc, make, pkg-config, libssl-dev, openssl)"
    apt_install build-essential pkg-config libssl-dev openssl
}

# Installs the commands the tests call, from the system's packages when missing: curl (the admin
# API as operators call it), systemd-analyze (the unit file's check) and stunnel (TLS in front
# of the test's Kafka broker).
ensure_test_tools() {
    if command -v curl >/dev/null 2>&1 && command -v systemd-analyze >/dev/null 2>&1 \
        && command -v stunnel >/dev/null 2>&1; then
        return
    fi
    log "installing curl, systemd (systemd-analyze) and stunnel4 for the tests"
    apt_install curl systemd stunnel4
}

# Installs Debian's chromium (headless, for the status page's test) when missing; returns
# non-zero when it cannot be installed (the test then says it was skipped).
ensure_chromium() {
    if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
        return
    fi
    log "installing chromium from the system's packages (for the status page's test)"
    apt_install chromium
}
