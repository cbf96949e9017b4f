"""A fresh clone follows the README's "Try it on an existing cluster" path as written and
reaches a Cancelled resource, on the real control plane.

The section's shell blocks run, in order, as one bash script in an empty folder, with three
stand-ins for what a reader has: the clone URL points at this repository (cloned from its last
commit, as a fresh clone is), the kube context is the test control plane's kubeconfig (its
kubectl on PATH), and the AWS credentials and endpoint are moto's, where EXECUTION_ARN names a
running execution. Nothing else is changed: the venv, `pip install .` (from the package
registry), the CRD, the operator started in the background, the resource, `kubectl wait`.
Neither Go nor npm is on PATH for the script.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.controlplane import REPO_ROOT, ControlPlane
from tests.support.moto_server import MotoServer
from tests.support.operator_process import aws_env

SECTION = "### Try it on an existing cluster"
CLONE_URL = "https://github.com/datasync-operator/datasync-operator.git"


def readme_script() -> str:
    readme = (REPO_ROOT / "README.md").read_text()
    assert SECTION in readme, f"the README has no {SECTION!r} section"
    section = readme.split(SECTION, 1)[1]
    section = re.split(r"\n#{2,3} ", section, maxsplit=1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    assert blocks, "no ```sh blocks in the section"
    script = "\n".join(blocks)
    assert f"git clone {CLONE_URL}" in script
    return script


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_readme_existing_cluster_path_reaches_cancelled(
    control_plane: ControlPlane, moto: MotoServer, tmp_path: Path
) -> None:
    # A path ending like the URL, so that the clone lands in the folder the next `cd` names.
    origin = tmp_path / "origin" / CLONE_URL.rsplit("/", 1)[1]
    origin.parent.mkdir()
    origin.symlink_to(REPO_ROOT)
    script = readme_script().replace(CLONE_URL, str(origin))
    arn = moto.create_execution()
    tools = tmp_path / "bin"  # only kubectl (and the system's python3, git): no go, no npm
    tools.mkdir()
    (tools / "kubectl").symlink_to(control_plane.bin_dir / "kubectl")
    system_path = [p for p in os.environ.get("PATH", "").split(os.pathsep)
                   if p and not (Path(p) / "go").exists() and not (Path(p) / "npm").exists()]
    # The reader's python3: the real interpreter behind this test's virtualenv (not a shim).
    (tools / "python3").symlink_to(Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}")
    for needed in ("git", "bash"):
        found = shutil.which(needed)
        assert found, needed
        if str(Path(found).parent) not in system_path:
            (tools / needed).symlink_to(found)
    env = {
        # The reader's own HOME (their python3 may be a pyenv shim that needs it, pip its cache);
        # their kube context and AWS credentials are replaced below.
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "PATH": os.pathsep.join([str(tools), *system_path]),
        "KUBECONFIG": str(control_plane.kubeconfig),
        "EXECUTION_ARN": arn,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        **aws_env(moto.url),
    }
    env.update({k: v for k, v in os.environ.items() if k.startswith("PYENV_")})
    workdir = tmp_path / "reader"
    workdir.mkdir()
    process = subprocess.Popen(["bash", "-euo", "pipefail", "-c", script], cwd=workdir, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    try:
        output, _ = process.communicate(timeout=1100)
    finally:
        # The operator the script started in the background shares the script's process group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    name = re.search(r"kubectl wait --for=condition=Cancelled dse/([a-z0-9-]+)", script)
    assert name, "the section waits for condition=Cancelled"
    try:
        assert process.returncode == 0, output[-6000:]
        assert "condition met" in output, output[-3000:]
        status = control_plane.kubectl(
            "get", "dse", name.group(1), "-n", "default", "-o",
            "jsonpath={.status.conditions[?(@.type=='Cancelled')].status}").stdout
        assert status == "True", output[-3000:]
        assert moto.describe_status(arn) == "ERROR"  # DataSync's word for a cancelled execution
    finally:
        control_plane.kubectl("delete", "dse", name.group(1), "-n", "default",
                              "--ignore-not-found", "--wait=false", check=False)
