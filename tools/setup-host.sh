#!/bin/sh
# Prepare a Debian 12 or Debian 13 machine to build, test and run xdpd. Idempotent.
#  - Debian packages (bcc exists only as python3-bpfcc; the PyPI "bcc" is unrelated),
#    and what make deb and the end-to-end test use (debhelper, pybuild,
#    lintian, debootstrap, systemd-nspawn), and what the line-rate benchmark
#    compares xdpd with (nftables, iptables, ipset) and turns GRO on with
#    (ethtool); the same names on both releases
#  - kernel headers for bcc: the running kernel's package, or Debian's
#    current ones linked in as /lib/modules/$(uname -r)/{build,source}
#  - a bpf filesystem at /sys/fs/bpf
set -eu

PACKAGES="python3-bpfcc python3-pyroute2 python3-yaml python3-watchdog python3-structlog
python3-sdnotify python3-systemd python3-pytest python3-hypothesis bpftool xdp-tools
iproute2 iputils-ping iputils-arping procps make util-linux
debhelper dh-python pybuild-plugin-pyproject python3-all python3-setuptools
dpkg-dev fakeroot lintian debootstrap systemd-container
nftables iptables ipset ethtool"

missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
release=$(uname -r)
build=/lib/modules/$release/build
if [ ! -d "$build/include" ] && [ ! -e /sys/kernel/kheaders.tar.xz ]; then
    missing="$missing HEADERS"
fi
if [ -n "$missing" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    pkgs=$(echo "$missing" | sed 's/HEADERS//')
    [ -n "$(echo $pkgs)" ] && apt-get install -y -q $pkgs
fi

if [ ! -d "$build/include" ] && [ ! -e /sys/kernel/kheaders.tar.xz ]; then
    # Prefer the exact headers package; fall back to Debian's current ones.
    if apt-get install -y -q "linux-headers-$release" >/dev/null 2>&1 && [ -d "$build/include" ]; then
        :
    else
        # Debian 13's linux-headers-<version>-amd64 depends on its kernel image
        # (Debian 12's does not): on a machine running another kernel, unpack
        # the two headers packages into /usr/src instead, so that no Debian
        # kernel (and initramfs) is installed that a boot loader could pick.
        flavour=$(apt-cache depends linux-headers-amd64 | sed -n 's/^ *Depends: \(linux-headers-.*-amd64\)$/\1/p' | head -n 1)
        if apt-cache depends "$flavour" | grep -q "Depends: linux-image-"; then
            common=$(apt-cache depends "$flavour" | sed -n 's/^ *Depends: \(linux-headers-.*-common\)$/\1/p' | head -n 1)
            tmp=$(mktemp -d)
            (cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "$flavour" "$common" >/dev/null)
            # Only their /usr/src: unpacked at / they would also leave a
            # /lib/modules entry for a kernel that is not there.
            for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$tmp/unpacked"; done
            cp -a "$tmp/unpacked/usr/src/." /usr/src/
            rm -rf "$tmp"
            echo "setup: unpacked $flavour and $common into /usr/src (not installed: they would pull in a kernel image)"
        else
            apt-get install -y -q linux-headers-amd64
        fi
        amd64=$(ls -d /usr/src/linux-headers-*-amd64 | sort -V | tail -n 1)
        common=$(echo "$amd64" | sed 's/-amd64$/-common/')
        mkdir -p "/lib/modules/$release"
        ln -sfn "$amd64" "$build"
        ln -sfn "$common" "/lib/modules/$release/source"
        echo "setup: linked $build -> $amd64 (no headers package for kernel $release)"
    fi
fi

if ! grep -q " /sys/fs/bpf bpf " /proc/self/mounts; then
    mount -t bpf bpf /sys/fs/bpf
fi
