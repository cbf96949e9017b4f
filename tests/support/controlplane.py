"""A real Kubernetes control plane (etcd + kube-apiserver + kubectl) for the e2e tests.

The binaries come from ``KUBEBUILDER_ASSETS`` or are built from Go modules by
``tools/controlplane/build.sh`` (cached across runs). ``ControlPlane`` generates its own PKI
with ``cryptography`` (a CA, a serving certificate for 127.0.0.1/localhost, a service-account
RSA signing key and client certificates), starts etcd and kube-apiserver on free loopback
ports in their own process groups, waits for ``/readyz`` and writes kubeconfigs. Nothing is
shared with the host: every file lives in one temporary folder that ``stop()`` removes.

Used by ``tests/e2e/conftest.py``; it can also be used by hand::

    with ControlPlane() as cp:
        cp.kubectl("get", "namespaces")
"""

from __future__ import annotations

import base64
import collections
import contextlib
import ctypes
import json
import logging
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from tests.support.pki import CertificateAuthority, KeyPair, service_account_key

__all__ = [
    "BINARIES",
    "REPO_ROOT",
    "BinariesUnavailableError",
    "ControlPlane",
    "ControlPlaneError",
    "KubectlError",
    "expected_kubernetes_version",
    "find_binaries",
]

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "tools" / "controlplane" / "build.sh"
BINARIES = ("etcd", "kube-apiserver", "kubectl")

ADMIN_USER = "e2e-admin"
ADMIN_GROUPS = ("system:masters",)
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
LOG_TAIL_LINES = 40


class ControlPlaneError(RuntimeError):
    """The control plane could not be built, started or used."""


class BinariesUnavailableError(ControlPlaneError):
    """No binaries were given and there is no Go toolchain to build them."""


class KubectlError(subprocess.CalledProcessError):
    """A kubectl command exited non-zero; the message carries its stdout and stderr."""

    def __str__(self) -> str:
        return (
            f"{super().__str__()}\n"
            f"--- stdout ---\n{self.stdout or ''}\n--- stderr ---\n{self.stderr or ''}"
        )


def expected_kubernetes_version() -> str:
    """The k8s.io/kubernetes version pinned in tools/controlplane/go.mod, e.g. ``v1.34.4``."""
    go_mod = (REPO_ROOT / "tools" / "controlplane" / "go.mod").read_text(encoding="utf-8")
    match = re.search(r"^\s*k8s\.io/kubernetes\s+(v\d+\.\d+\.\d+)\s*$", go_mod, re.MULTILINE)
    if match is None:
        raise ControlPlaneError("tools/controlplane/go.mod does not require k8s.io/kubernetes")
    return match.group(1)


def _has_binaries(folder: Path) -> bool:
    return all(os.access(folder / name, os.X_OK) for name in BINARIES)


def find_binaries(
    *, build_timeout: float = 3600.0, progress: Callable[[str], None] | None = None
) -> Path:
    """Return a folder holding etcd, kube-apiserver and kubectl, building them if needed.

    ``KUBEBUILDER_ASSETS`` wins when it holds all three; otherwise ``build.sh`` builds (or
    finds in its cache) the pinned versions, passing each line it prints on stderr to
    ``progress``. Raises ``BinariesUnavailableError`` when Go is missing and
    ``ControlPlaneError`` when the build fails or outlasts ``build_timeout`` seconds.
    """
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets and _has_binaries(Path(assets)):
        return Path(assets)
    if shutil.which("bash") is None:
        raise BinariesUnavailableError("bash is needed to run tools/controlplane/build.sh")
    started = time.monotonic()
    stderr_tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
    with tempfile.TemporaryFile("w+", encoding="utf-8") as stdout:
        build = subprocess.Popen(
            ["bash", str(BUILD_SCRIPT)],
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        watchdog = threading.Timer(build_timeout, _kill_group, args=(build,))
        watchdog.start()
        try:
            assert build.stderr is not None
            for line in build.stderr:
                stderr_tail.append(line.rstrip("\n"))
                if progress is not None:
                    progress(line.rstrip("\n"))
            returncode = build.wait()
        except BaseException:
            _kill_group(build)
            build.wait()
            raise
        finally:
            watchdog.cancel()
        stdout.seek(0)
        lines = stdout.read().strip().splitlines()
    elapsed = time.monotonic() - started
    if returncode == 127:
        raise BinariesUnavailableError(
            "no control-plane binaries: KUBEBUILDER_ASSETS is unset and the Go toolchain "
            f"(go) is not installed, so {BUILD_SCRIPT.relative_to(REPO_ROOT)} cannot build "
            "them\n" + "\n".join(stderr_tail)
        )
    if returncode != 0 or not lines:
        why = f"was killed after {build_timeout:.0f}s" if elapsed >= build_timeout else "failed"
        raise ControlPlaneError(
            f"{BUILD_SCRIPT} {why} (exit code {returncode}):\n" + "\n".join(stderr_tail)
        )
    folder = Path(lines[-1])
    if not _has_binaries(folder):
        raise ControlPlaneError(f"{BUILD_SCRIPT} printed {folder}, which lacks {BINARIES}")
    logger.info("control-plane binaries in %s (%.1fs)", folder, elapsed)
    return folder


def _kill_group(process: subprocess.Popen[str]) -> None:
    """SIGKILL a process started with ``start_new_session=True`` and its whole group."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def _tail_text(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _tail_file(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return _tail_text(text, lines)


def _free_ports(count: int) -> list[int]:
    """Distinct free TCP ports on 127.0.0.1 (held open together so they differ)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that makes the child get SIGKILL when the test process dies (Linux).

    It covers the one case teardown cannot: the test runner itself being killed (the
    temporary folder is then left behind, the processes are not).
    The libc function is looked up here, before fork, so the child only calls it.
    """
    # The signal fires when the *thread* that forked exits: only the main thread lives as
    # long as the process (a start() from a worker thread would die with that thread).
    if not sys.platform.startswith("linux") or threading.current_thread() is not (
        threading.main_thread()
    ):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig, sigkill = 1, int(signal.SIGKILL)

    def preexec() -> None:
        prctl(pr_set_pdeathsig, sigkill, 0, 0, 0)

    return preexec


# --- the control plane --------------------------------------------------------------------


class _Process:
    """One started binary: its Popen, log file and name."""

    def __init__(self, name: str, argv: list[str], log_path: Path, cwd: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("ab")
        try:
            self.popen = subprocess.Popen(
                argv,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent(),  # only calls a pre-resolved prctl
            )
        except BaseException:
            self._log.close()
            raise

    def running(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL it after ``grace`` seconds, reap, close the log."""
        try:
            pgid = self.popen.pid  # start_new_session: the child leads its own group
            for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
                if self.popen.poll() is not None:
                    break
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, sig)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.popen.wait(timeout=wait)
        finally:
            self._log.close()


class ControlPlane:
    """etcd + kube-apiserver on loopback, with an admin kubeconfig and a kubectl runner.

    Use as a context manager or call ``start()`` / ``stop()``. After ``start()``:
    ``server`` (https URL), ``kubeconfig`` (admin, group system:masters), ``ca_file``,
    ``bin_dir`` and ``workdir`` are set.
    """

    def __init__(
        self,
        *,
        bin_dir: Path | None = None,
        start_timeout: float = 120.0,
        build_timeout: float = 3600.0,
        keep_workdir: bool | None = None,
        extra_apiserver_args: Sequence[str] = (),
    ) -> None:
        self._bin_dir = bin_dir
        self.start_timeout = start_timeout
        self.build_timeout = build_timeout
        if keep_workdir is None:
            keep_workdir = os.environ.get("DATASYNC_E2E_KEEP_WORKDIR", "") not in ("", "0")
        self.keep_workdir = keep_workdir
        self.extra_apiserver_args = list(extra_apiserver_args)
        self._workdir: Path | None = None
        self._processes: list[_Process] = []
        self._ca: CertificateAuthority | None = None
        self._kubeconfig: Path | None = None
        self._admin_pair: KeyPair | None = None
        self._port = 0
        self._etcd_client = 0
        self._kubeconfig_count = 0

    # --- properties ---

    @property
    def bin_dir(self) -> Path:
        if self._bin_dir is None:
            raise ControlPlaneError("the control plane has not been started")
        return self._bin_dir

    @property
    def workdir(self) -> Path:
        if self._workdir is None:
            raise ControlPlaneError("the control plane has not been started")
        return self._workdir

    @property
    def server(self) -> str:
        """The API server's URL, e.g. ``https://127.0.0.1:40123``."""
        if not self._port:
            raise ControlPlaneError("the control plane has not been started")
        return f"https://127.0.0.1:{self._port}"

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (user e2e-admin in group system:masters)."""
        if self._kubeconfig is None:
            raise ControlPlaneError("the control plane has not been started")
        return self._kubeconfig

    @property
    def process_ids(self) -> dict[str, int]:
        """Process ids (= process group ids) of the running binaries, by name."""
        return {p.name: p.popen.pid for p in self._processes if p.running()}

    @property
    def ca_file(self) -> Path:
        return self.workdir / "pki" / "ca.crt"

    @property
    def etcd_log(self) -> Path:
        return self.workdir / "etcd.log"

    @property
    def apiserver_log(self) -> Path:
        return self.workdir / "kube-apiserver.log"

    # --- lifecycle ---

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Find or build the binaries, write the PKI, start etcd and kube-apiserver, wait ready.

        On failure everything started so far is stopped and ``ControlPlaneError`` is raised
        with the tail of the logs. A start that lost a race for a free port is retried.
        """
        if self._workdir is not None:
            raise ControlPlaneError("the control plane is already started")
        if self._bin_dir is None:
            self._bin_dir = find_binaries(build_timeout=self.build_timeout)
        elif not _has_binaries(self._bin_dir):
            raise ControlPlaneError(f"{self._bin_dir} lacks one of {BINARIES}")
        attempts = 3
        for attempt in range(1, attempts + 1):
            try:
                self._start_once()
                return
            except BaseException as exc:
                logs = self._log_tails() if self._workdir is not None else ""
                self.stop()
                port_race = "address already in use" in logs.lower()
                if isinstance(exc, ControlPlaneError) and port_race and attempt < attempts:
                    logger.warning("port taken while starting, retrying (%d)", attempt)
                    continue
                raise

    def _start_once(self) -> None:
        self._workdir = Path(tempfile.mkdtemp(prefix="datasync-e2e-"))
        pki = self._workdir / "pki"
        pki.mkdir(mode=0o700)
        self._write_pki(pki)
        etcd_client, etcd_peer, self._port = _free_ports(3)
        started = time.monotonic()
        deadline = started + self.start_timeout
        self._start_etcd(etcd_client, etcd_peer)
        self._wait_etcd(etcd_client, deadline)
        self._etcd_client = etcd_client
        self._start_apiserver(etcd_client, pki)
        self._kubeconfig = self._write_kubeconfig("admin", ADMIN_USER, self._admin_keypair())
        self._wait_ready(deadline)
        logger.info(
            "control plane ready at %s in %.1fs (workdir %s)",
            self.server,
            time.monotonic() - started,
            self._workdir,
        )

    def stop(self) -> None:
        """Stop kube-apiserver then etcd (whole process groups) and remove the workdir."""
        errors: list[BaseException] = []
        for process in reversed(self._processes):
            try:
                process.stop()
            except Exception as exc:  # keep stopping the others
                errors.append(exc)
        self._processes.clear()
        if self._workdir is not None:
            if self.keep_workdir:
                logger.warning("keeping control-plane workdir %s", self._workdir)
            else:
                shutil.rmtree(self._workdir, ignore_errors=True)
        self._workdir = None
        self._kubeconfig = None
        self._port = 0
        if errors:
            raise ControlPlaneError(f"errors while stopping the control plane: {errors}")

    def stop_apiserver(self) -> None:
        """Stop kube-apiserver alone (SIGTERM); etcd and every stored object stay."""
        for process in [p for p in self._processes if p.name == "kube-apiserver"]:
            process.stop()
            self._processes.remove(process)

    def start_apiserver(self, timeout: float = 60.0) -> None:
        """Start kube-apiserver again on the same port and etcd; wait until it is ready."""
        if self._workdir is None:
            raise ControlPlaneError("the control plane has not been started")
        if any(p.name == "kube-apiserver" for p in self._processes):
            raise ControlPlaneError("kube-apiserver is already running")
        self._start_apiserver(self._etcd_client, self._workdir / "pki")
        self._wait_ready(time.monotonic() + timeout)

    # --- start-up steps ---

    def _admin_keypair(self) -> KeyPair:
        if self._admin_pair is None:
            raise ControlPlaneError("the PKI has not been written")
        return self._admin_pair

    def _write_pki(self, pki: Path) -> None:
        self._ca = CertificateAuthority()
        (pki / "ca.crt").write_bytes(self._ca.cert_pem)
        serving = self._ca.issue(
            "kube-apiserver",
            server=True,
            dns_names=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"),
            ip_addresses=("127.0.0.1", "10.0.0.1"),
        )
        (pki / "apiserver.crt").write_bytes(serving.cert_pem)
        (pki / "apiserver.key").write_bytes(serving.key_pem)
        sa_key = service_account_key()
        (pki / "sa.key").write_bytes(sa_key.key_pem)
        (pki / "sa.pub").write_bytes(sa_key.cert_pem)
        self._admin_pair = self._ca.issue(ADMIN_USER, ADMIN_GROUPS)
        (pki / "admin.crt").write_bytes(self._admin_pair.cert_pem)
        (pki / "admin.key").write_bytes(self._admin_pair.key_pem)

    def _spawn(self, name: str, argv: list[str]) -> None:
        log_path = self.workdir / f"{name}.log"
        logger.debug("starting %s", " ".join(argv))
        self._processes.append(_Process(name, argv, log_path, self.workdir))

    def _start_etcd(self, client_port: int, peer_port: int) -> None:
        client_url = f"http://127.0.0.1:{client_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        self._spawn(
            "etcd",
            [
                str(self.bin_dir / "etcd"),
                "--name=e2e",
                f"--data-dir={self.workdir / 'etcd-data'}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=e2e={peer_url}",
                "--initial-cluster-state=new",
                "--unsafe-no-fsync",
                "--logger=zap",
                "--log-level=warn",
                "--log-outputs=stderr",
            ],
        )

    def _wait_etcd(self, client_port: int, deadline: float) -> None:
        url = f"http://127.0.0.1:{client_port}/health"
        while True:
            self._check_alive()
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if json.loads(response.read()).get("health") == "true":
                        return
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"etcd was not healthy within {self.start_timeout:.0f}s\n" + self._log_tails()
                )
            time.sleep(0.1)

    def _start_apiserver(self, etcd_client_port: int, pki: Path) -> None:
        self._spawn(
            "kube-apiserver",
            [
                str(self.bin_dir / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{etcd_client_port}",
                f"--cert-dir={pki}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--secure-port={self._port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                "--endpoint-reconciler-type=none",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--allow-privileged=true",
                "--authorization-mode=RBAC",
                "--disable-admission-plugins=ServiceAccount",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--profiling=false",
                "--v=0",
                *self.extra_apiserver_args,
            ],
        )

    def _ssl_context(self, pair: KeyPair | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        if pair is not None:
            cert_file = self.workdir / "pki" / "request-client.pem"
            if not cert_file.exists():
                cert_file.write_bytes(pair.cert_pem + pair.key_pem)
                cert_file.chmod(0o600)
            context.load_cert_chain(str(cert_file))
        return context

    def _wait_ready(self, deadline: float) -> None:
        context = self._ssl_context(self._admin_keypair())
        last = "no answer yet"
        while True:
            self._check_alive()
            try:
                with urllib.request.urlopen(
                    f"{self.server}/readyz", timeout=5, context=context
                ) as response:
                    if response.status == 200:
                        return
                    last = f"HTTP {response.status}"
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}: {exc.read().decode(errors='replace')[-2000:]}"
            except OSError as exc:
                last = repr(exc)
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"kube-apiserver at {self.server} was not ready within "
                    f"{self.start_timeout:.0f}s; last /readyz: {last}\n" + self._log_tails()
                )
            time.sleep(0.25)

    def _check_alive(self) -> None:
        for process in self._processes:
            if not process.running():
                raise ControlPlaneError(
                    f"{process.name} exited with code {process.popen.returncode}\n"
                    + self._log_tails()
                )

    def _log_tails(self) -> str:
        parts = ["(set DATASYNC_E2E_KEEP_WORKDIR=1 to keep the full logs after the run)"]
        for name in ("kube-apiserver", "etcd"):
            path = self.workdir / f"{name}.log"
            if path.exists():
                parts.append(f"--- last lines of {path} ---\n{_tail_file(path)}")
        return "\n".join(parts)

    def _write_kubeconfig(self, stem: str, user: str, pair: KeyPair) -> Path:
        def b64(data: bytes) -> str:
            return base64.b64encode(data).decode("ascii")

        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "e2e",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority-data": b64(self.ca_file.read_bytes()),
                    },
                }
            ],
            "users": [
                {
                    "name": user,
                    "user": {
                        "client-certificate-data": b64(pair.cert_pem),
                        "client-key-data": b64(pair.key_pem),
                    },
                }
            ],
            "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": user}}],
            "current-context": "e2e",
        }
        path = self.workdir / f"kubeconfig-{stem}.yaml"  # JSON is valid YAML
        path.write_text(json.dumps(config, indent=2), encoding="utf-8")
        path.chmod(0o600)
        return path

    # --- public API ---

    def kubeconfig_for(self, user: str, groups: Sequence[str] = ()) -> Path:
        """Mint a client certificate (CN=user, O=groups) and write a kubeconfig for it.

        The identity has no rights beyond what RBAC grants it (by default: discovery and
        self-review only); never pass ``system:masters`` here, use ``kubeconfig`` instead.
        """
        if self._ca is None or self._workdir is None:
            raise ControlPlaneError("the control plane has not been started")
        pair = self._ca.issue(user, groups)
        self._kubeconfig_count += 1
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", user)
        return self._write_kubeconfig(f"{self._kubeconfig_count}-{stem}", user, pair)

    def kubectl(
        self,
        *args: str,
        kubeconfig: Path | None = None,
        input: str | None = None,  # named as in subprocess.run
        check: bool = True,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl against this control plane (admin unless ``kubeconfig``).

        Returns the completed process (text stdout/stderr). With ``check`` a non-zero exit
        raises ``KubectlError``, whose message includes stdout and stderr.
        """
        argv = [
            str(self.bin_dir / "kubectl"),
            f"--kubeconfig={kubeconfig or self.kubeconfig}",
            f"--cache-dir={self.workdir / 'kubectl-cache'}",
            *args,
        ]
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        result = subprocess.run(
            argv,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=env,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        if check and result.returncode != 0:
            raise KubectlError(result.returncode, argv, result.stdout, result.stderr)
        return result

    def apply_crd(self, path: Path | str, timeout: float = 60.0) -> list[str]:
        """``kubectl apply`` a CRD file and wait until each CRD in it is ``Established``.

        Returns the applied object names (``customresourcedefinition.apiextensions.k8s.io/...``).
        """
        applied = self.kubectl("apply", "-f", str(path), "-o", "name").stdout.split()
        crds = [n for n in applied if n.startswith("customresourcedefinition")]
        if not crds:
            raise ControlPlaneError(f"{path} holds no CustomResourceDefinition")
        self.kubectl(
            "wait",
            "--for=condition=Established",
            f"--timeout={timeout:.0f}s",
            *crds,
            timeout=timeout + 30,
        )
        return applied

    def api_request(
        self,
        method: str,
        path: str,
        body: Any,
        *,
        content_type: str = "application/merge-patch+json",
        timeout: float = 10.0,
    ) -> Any:
        """Send a JSON body (a PATCH by default) to an API path as the admin; decoded answer."""
        context = self._ssl_context(self._admin_keypair())
        request = urllib.request.Request(
            f"{self.server}{path}",
            data=json.dumps(body).encode(),
            method=method,
            headers={"Content-Type": content_type},
        )
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return json.loads(response.read())

    def api_get(self, path: str, *, timeout: float = 10.0) -> Any:
        """GET an API path (e.g. ``/version``) as the admin and return the decoded JSON."""
        context = self._ssl_context(self._admin_keypair())
        with urllib.request.urlopen(
            f"{self.server}{path}", timeout=timeout, context=context
        ) as response:
            return json.loads(response.read())
