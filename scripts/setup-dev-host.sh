#!/usr/bin/env bash
# Prepares this machine to run the sandbox and the test suite: Debian packages the simulated lab needs and a
# running Docker engine. Safe to re-run; it changes nothing when all is in place. Needs root (or sudo).
set -euo pipefail

# haproxy, socat, keepalived, prometheus (promtool), prometheus-alertmanager (amtool) and
# prometheus-blackbox-exporter validate and exercise the loadbalancer, loadbalancer_vip, prometheus, alertmanager
# and blackbox_exporter roles' configs; nginx is the model_weights role's fan-out peer server (its tests and
# benchmarks/weights_fanout.py run it).
readonly PACKAGES=(docker.io debootstrap python3-venv gnupg reprepro dpkg-dev docker-registry haproxy socat keepalived
  prometheus prometheus-alertmanager prometheus-blackbox-exporter nginx)

as_root() { if [[ ${EUID} -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "${package}" 2>/dev/null | grep -q 'install ok installed' || missing+=("${package}")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  as_root apt-get update -qq
  # Without systemd, keep the packages' init scripts from starting their daemons (policy-rc.d says no).
  if [[ ! -d /run/systemd/system && ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
    as_root chmod 0755 /usr/sbin/policy-rc.d
    trap 'as_root rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian's docker-registry, haproxy, keepalived, prometheus and nginx packages start services of their own; the lab
# runs its own copies in containers, and the tests run these binaries directly.
for service in docker-registry haproxy keepalived prometheus prometheus-alertmanager prometheus-blackbox-exporter \
  nginx; do
  if [[ -d /run/systemd/system ]]; then as_root systemctl disable --now "${service}" >/dev/null 2>&1 || true; fi
done

if ! docker info >/dev/null 2>&1; then
  if [[ -d /run/systemd/system ]]; then
    as_root systemctl start docker
  else
    # No systemd (a build container, CI): run the daemon in the background.
    as_root sh -c 'nohup dockerd >/var/log/dockerd.log 2>&1 &'
  fi
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { echo "the Docker engine did not start: see /var/log/dockerd.log" >&2; exit 1; }
fi
echo "host ready: $(docker version --format 'Docker engine {{.Server.Version}}')"
