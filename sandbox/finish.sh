#!/bin/sh
# Turns a Debian root filesystem into the sandbox image. Runs as root in a throwaway container that
# is then committed. Arguments: INSTALL PACKAGE... With INSTALL=1 (a base image pulled from a
# registry) it first installs the packages with apt; a debootstrap rootfs already has them.
# Arguments rather than environment variables, which the commit would keep in the image.
set -eu

install=$1
shift
if [ "$install" = 1 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "$@"
fi

# A venv that sees Debian's pytest, so environment layers can pip install without touching the
# system Python (Debian marks it externally managed).
python3 -m venv --system-site-packages /opt/venv
# `pytest` on PATH must be the venv's, so it sees what an environment layer installs.
printf '#!/bin/sh\nexec /opt/venv/bin/python -m pytest "$@"\n' > /opt/venv/bin/pytest
chmod 755 /opt/venv/bin/pytest

rm -rf /var/cache/apt/archives/*.deb /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/* \
  /usr/share/info/* /usr/share/locale/*

# The sandbox user never changes identity: setuid/setgid bits only serve an attacker.
find / -xdev -type f \( -perm -4000 -o -perm -2000 \) -exec chmod ug-s {} +

mkdir -p /workspace
python3 -c 'import platform, sys; print("dsagent-facts", "%d.%d" % sys.version_info[:2], platform.libc_ver()[1], platform.machine())'
/opt/venv/bin/python -m pytest --version
git --version
