#!/usr/bin/env bash
# Builds the Debian 12 base image of the simulated lab from Debian's packages with debootstrap (no container
# registry is reachable here). The image is tagged with a hash of this script, so it is built once per machine
# and rebuilt only when the package list changes. Prints the image name.
set -euo pipefail

readonly SUITE=bookworm
# What a freshly installed minimal server has (python3-apt too: Ubuntu Server and a standard Debian install ship
# it, and Ansible's apt module needs it in check mode), plus python3 for Ansible.
readonly PACKAGES=systemd,systemd-sysv,dbus,python3,python3-apt,sudo,ca-certificates,iproute2,udev,kmod,procps,curl,gnupg,less
readonly REPO=gpu-sim/debian12-base

tag=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-12)
image="${REPO}:${tag}"

if ! docker image inspect "${image}" >/dev/null 2>&1; then
  rootfs=$(mktemp -d /var/tmp/gpu-sim-rootfs.XXXXXX)
  trap 'rm -rf "${rootfs}"' EXIT
  echo "building ${image} with debootstrap (about 90 s)" >&2
  debootstrap --variant=minbase --include="${PACKAGES}" "${SUITE}" "${rootfs}" >&2
  # Keep the image small and let every container start with a unique machine id.
  rm -rf "${rootfs}"/var/lib/apt/lists/* "${rootfs}"/var/cache/apt/archives/*.deb
  : >"${rootfs}/etc/machine-id"
  tar -C "${rootfs}" -c . | docker import --change 'CMD ["/sbin/init"]' - "${image}" >&2
fi
docker tag "${image}" "${REPO}:latest"
echo "${image}"
