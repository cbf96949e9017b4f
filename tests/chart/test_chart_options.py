"""The chart's conventional options: commonLabels, an image registry for mirrors, envFrom,
extraArgs, extra volumes and mounts, ephemeral storage for /tmp, and the `helm test` pod that
runs `datasync-operator doctor` with the operator's identity and configuration."""

from __future__ import annotations

from typing import Any

from tests.support.helm import Helm, of_kind, one

DIGEST = "sha256:" + "a" * 64


def operator_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return containers[0]


def test_common_labels_on_every_resource_and_pod(helm: Helm) -> None:
    docs = helm.template({"commonLabels": {"team": "data", "cost-center": "42"},
                          "replicaCount": 2, "networkPolicy": {"enabled": True}})
    for doc in docs:
        assert doc["metadata"]["labels"]["team"] == "data", doc["kind"]
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pod_labels["cost-center"] == "42"


def test_image_registry_for_a_mirror(helm: Helm) -> None:
    docs = helm.template({"image": {"registry": "mirror.example.com:5000",
                                    "repository": "platform/datasync-operator", "tag": "1.2.3"}})
    assert operator_container(docs)["image"] == "mirror.example.com:5000/platform/datasync-operator:1.2.3"
    pinned = helm.template({"image": {"registry": "mirror.example.com", "digest": DIGEST}})
    assert operator_container(pinned)["image"] == f"mirror.example.com/datasync-operator@{DIGEST}"
    test_pod = one(pinned, "Pod")["spec"]["containers"][0]
    assert test_pod["image"] == operator_container(pinned)["image"]


def test_env_from_extra_args_volumes_and_mounts(helm: Helm) -> None:
    docs = helm.template({
        "envFrom": [{"configMapRef": {"name": "proxy"}}],
        "extraArgs": ["--log-level", "DEBUG"],
        "extraVolumes": [{"name": "ca", "configMap": {"name": "corporate-ca"}}],
        "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/ssl/corporate", "readOnly": True}],
    })
    main = operator_container(docs)
    assert main["envFrom"] == [{"configMapRef": {"name": "proxy"}}]
    assert main["args"] == ["--log-level", "DEBUG"]
    assert "command" not in main  # the image's entrypoint (`datasync-operator run`) stays
    mounts = {m["name"]: m["mountPath"] for m in main["volumeMounts"]}
    assert mounts == {"tmp": "/tmp", "ca": "/etc/ssl/corporate"}
    volumes = {v["name"] for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes == {"tmp", "ca"}


def test_ephemeral_storage_covers_tmp(helm: Helm) -> None:
    docs = helm.template()
    main = operator_container(docs)
    requests, limits = main["resources"]["requests"], main["resources"]["limits"]
    assert requests["ephemeral-storage"] == "64Mi" and limits["ephemeral-storage"] == "128Mi"
    [tmp] = [v for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"] if v["name"] == "tmp"]
    assert tmp["emptyDir"]["sizeLimit"] == "64Mi"
    assert "cpu" not in limits  # on purpose: see the chart README's kube-score table


def test_helm_test_pod_runs_doctor_as_the_operator(helm: Helm) -> None:
    docs = helm.template({"replicaCount": 2, "watch": {"allNamespaces": False,
                                                       "namespaces": ["team-a", "team-b"]}})
    pod = one(docs, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    spec = pod["spec"]
    deployment = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == deployment["serviceAccountName"]
    [doctor] = spec["containers"]
    assert doctor["command"] == ["datasync-operator", "doctor"]
    env = {e["name"]: e.get("value") for e in doctor["env"]}
    operator_env = {e["name"]: e.get("value") for e in deployment["containers"][0]["env"]}
    for name in ("DATASYNC_OPERATOR_NAMESPACES", "DATASYNC_OPERATOR_STANDALONE",
                 "DATASYNC_OPERATOR_LEASE_NAME", "POD_NAMESPACE"):
        assert env[name] == operator_env[name], name
    assert env["DATASYNC_OPERATOR_NAMESPACES"] == "team-a,team-b"
    assert doctor["securityContext"]["readOnlyRootFilesystem"] is True
    # Not selected by the operator's Service, PDB or NetworkPolicy.
    selector = one(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    assert not selector.items() <= pod["metadata"]["labels"].items()
    assert of_kind(helm.template({"tests": {"enabled": False}}), "Pod") == []
