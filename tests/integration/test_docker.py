"""docker/ (issue 8): the compose file validates and the Dockerfiles lint clean.

No Docker engine runs here, so the images are not built; the same topology runs as plain
processes in test_django_legacy.py. The linter is dockerfile-utils from the npm registry,
installed once into a cache directory (pinned version).
"""

import os
import shutil
import subprocess

import pytest

import conftest
import proxyctl

DOCKER = os.path.join(proxyctl.REPO, "docker")
LINTER_VERSION = "0.16.3"
NPM_CACHE = os.environ.get("PGSHIM_NPM_DIR", "/tmp/pgshim-npm-tools")


def test_compose_file_validates():
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.skip("docker-compose not installed (Debian package docker-compose)")
    r = subprocess.run([exe, "-f", os.path.join(DOCKER, "docker-compose.yml"), "config", "-q"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def _linter():
    exe = os.path.join(NPM_CACHE, "node_modules", ".bin", "dockerfile-utils")
    if os.path.exists(exe):
        return exe
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm not installed: cannot fetch dockerfile-utils")
    os.makedirs(NPM_CACHE, exist_ok=True)
    r = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", NPM_CACHE,
                        "dockerfile-utils@" + LINTER_VERSION],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        # No registry reachable is a property of the machine, not of the Dockerfiles.
        pytest.skip("npm could not install dockerfile-utils: %s" % r.stderr.strip()[-300:])
    return exe


@pytest.mark.parametrize("name", ["Dockerfile", "app.Dockerfile"])
def test_dockerfile_lints_clean(name):
    r = subprocess.run([_linter(), "lint", os.path.join(DOCKER, name)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "", r.stdout + r.stderr


@pytest.mark.skipif(conftest.is_pgbouncer(), reason="pgshim's own configuration")
def test_sidecar_ini_loads(proxies):
    """The ini the compose file mounts is a valid pgshim configuration."""
    r = subprocess.run([proxies.binary, "--check-config", os.path.join(DOCKER, "pgshim.ini")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
