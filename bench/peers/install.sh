#!/usr/bin/env bash
# Install the peers that bench/bench_peers.py measures Strata against, from Debian's packages:
# Prometheus (bookworm: 2.42) and InfluxDB 1.x (bookworm: 1.6.7). Needs root (apt-get).
#
# Only the binaries are used: the bench starts `prometheus` and `influxd` itself, on free
# loopback ports with data directories under a temporary directory, and stops them when it
# ends. The packages' own services are not started (there is no systemd here; where there is
# one, policy-rc.d below keeps the postinst scripts from starting them). The tests never need
# any of this.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "run as root (apt-get install)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# Refuse service starts during the install (invoke-rc.d exit 101 = action forbidden).
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    made_policy=1
fi
trap '[ "$made_policy" = 1 ] && rm -f "$policy"' EXIT

apt-get update
apt-get install -y --no-install-recommends prometheus influxdb

echo "installed:"
prometheus --version 2>&1 | head -n 1
influxd version 2>&1 | head -n 1
