"""The wheel, installed into a fresh venv, imports as relay / relay_adaptors / relay_config
beside other distributions' top-level `config` and `adaptors` packages.

Offline: the wheel is built with this venv's setuptools (no build isolation) from a copy of
the sources, installed without dependencies; the fresh venv sees this venv's third-party
packages through a .pth line (which adds the folder but runs none of its .pth hooks, so the
editable install of the checkout stays out of it) and runs outside the checkout.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

from .proc import ROOT

SOURCES = ("pyproject.toml", "setup.py", "README.md", "relay", "adaptors", "config")

CHECK = """
import json, sys, sysconfig
import relay.app, relay_adaptors, relay_config, config, adaptors
import relay_adaptors.kernel.registry, relay_config.schema
from relay_config.loader import parse_config
site = sysconfig.get_paths()["purelib"]
print(json.dumps({
    "site": site,
    "files": {m.__name__: m.__file__ for m in (relay.app, relay_adaptors, relay_adaptors.kernel.registry, relay_config, relay_config.schema)},
    "config": config.WHO, "adaptors": adaptors.WHO,
    "same_schema": relay.app.RelayConfig is relay_config.schema.RelayConfig,
    "parsed": parse_config(open(sys.argv[1]).read(), "x.yaml", env={}).tenants[0].name,
}))
"""

CONFIG = """\
tenants: [{name: acme, keys: [sk-test]}]
channels: [{name: demo, type: mock, models: [demo]}]
"""


def run(*args: str | Path, cwd: Path) -> str:
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_wheel_installs_under_unambiguous_names_beside_config_and_adaptors(tmp_path):
    src = tmp_path / "src"  # a copy, so the build leaves nothing in the checkout
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, src / name)
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", tmp_path / "dist", src, cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("relay_gateway-*.whl")
    top = {name.split("/", 1)[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {t for t in top if not t.endswith(".dist-info")} == {"relay", "relay_adaptors", "relay_config"}

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path).strip())
    (site / "deps-from-the-test-venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel, cwd=tmp_path)

    others = tmp_path / "others"  # another distribution's top-level packages
    for name in ("config", "adaptors"):
        (others / name).mkdir(parents=True)
        (others / name / "__init__.py").write_text(f"WHO = 'another {name}'\n")
    (tmp_path / "relay.yaml").write_text(CONFIG)
    out = json.loads(subprocess.run([python, "-c", CHECK, "relay.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                                    env={"PYTHONPATH": str(others), "PATH": "/usr/bin:/bin"}, check=True).stdout)
    assert (out["config"], out["adaptors"]) == ("another config", "another adaptors")
    for name, file in out["files"].items():
        assert file.startswith(out["site"] + "/"), (name, file)
    assert out["files"]["relay_config"].endswith("/relay_config/__init__.py")
    assert out["same_schema"] and out["parsed"] == "acme"
    assert "usage" in run(venv / "bin" / "relay", "--help", cwd=tmp_path)  # the console script
