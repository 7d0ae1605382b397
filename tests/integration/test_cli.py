"""pgshim's command line (issue 2): --help, --version, -c FILE, and a missing config file.
PgBouncer has a different command line, so these run only with PROXY=pgshim."""

import subprocess

import pytest

import proxyctl
from conftest import is_pgbouncer

pytestmark = pytest.mark.skipif(is_pgbouncer(), reason="pgshim's own command line")


def _run(*args):
    binary = proxyctl.find_pgshim_binary()
    if not binary:
        pytest.fail("no pgshim binary")
    return subprocess.run([binary] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=30)


def test_help():
    r = _run("--help")
    assert r.returncode == 0, r.stderr
    assert "-c" in r.stdout + r.stderr and "pgshim" in (r.stdout + r.stderr).lower()


def test_version():
    r = _run("--version")
    assert r.returncode == 0, r.stderr
    assert "pgshim" in r.stdout + r.stderr


def test_missing_config_file_fails(tmp_path):
    r = _run("-c", str(tmp_path / "does-not-exist.ini"))
    assert r.returncode != 0
    assert "does-not-exist.ini" in r.stdout + r.stderr
