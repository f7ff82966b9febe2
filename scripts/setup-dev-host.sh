#!/usr/bin/env bash
# Prepares this machine to run the sandbox and the test suite: Debian packages the simulated lab needs and a
# running Docker engine. Safe to re-run; it changes nothing when all is in place. Needs root (or sudo).
set -euo pipefail

readonly PACKAGES=(docker.io debootstrap python3-venv gnupg reprepro dpkg-dev docker-registry haproxy)

as_root() { if [[ ${EUID} -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "${package}" 2>/dev/null | grep -q 'install ok installed' || missing+=("${package}")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian's docker-registry and haproxy start services of their own; the lab runs its own copies in containers.
for service in docker-registry haproxy; do
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
