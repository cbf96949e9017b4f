"""GitOps health of DataSyncExecutions: Argo CD's Lua health check and Flux's kstatus rules.

The Argo CD script (gitops/argocd/health.lua) runs in Lua 5.1 through lupa, sandboxed the way
Argo CD runs it (gopher-lua with only the base, table and a safe os library: no string library,
no string methods). kstatus has no Python port: ``kstatus_compute`` implements the rules of
sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute for a custom resource, which Flux's
Kustomization ``wait``/``healthChecks`` apply. Both are run over the status fixtures in
fixtures/status/ and must agree with fixtures/status/expected.yaml.

The fixtures are recorded from real runs by fixtures/record.py: the operator process against
kube-apiserver and moto's DataSync server behind the fault proxy, one scenario per fixture
(``invalid-spec`` against kmock's emulator, because the API server refuses its spec); each is the
object as the server returned it, metadata trimmed. Re-record them with
``.venv/bin/python tests/chart/fixtures/record.py`` (a few minutes), never edit them by hand.

Run this file as a script to rewrite gitops/argocd/argocd-cm.yaml from health.lua.
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lupa.lua51 as lua51  # Argo CD runs gopher-lua, a Lua 5.1
import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
HEALTH_LUA = REPO_ROOT / "gitops" / "argocd" / "health.lua"
ARGOCD_CM = REPO_ROOT / "gitops" / "argocd" / "argocd-cm.yaml"
CM_KEY = "resource.customizations.health.datasync.operator.io_DataSyncExecution"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "status"
EXPECTED: dict[str, dict[str, str]] = yaml.safe_load((FIXTURES / "expected.yaml").read_text())
CRD = REPO_ROOT / "crds" / "datasyncexecution.yaml"
ARGO_HEALTH_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}


def fixture_names() -> list[str]:
    return sorted(p.stem for p in FIXTURES.glob("*.yaml") if p.name != "expected.yaml")


def load_fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((FIXTURES / f"{name}.yaml").read_text())
    return loaded


# --- Argo CD: the Lua script in Argo CD's sandbox --------------------------------------------

_SANDBOX = """
local script, obj = ...
-- Argo CD opens only base, table and a safe os (time, date, clock); no string library.
local env = {
  assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs,
  pcall = pcall, select = select, tonumber = tonumber, tostring = tostring, type = type,
  unpack = unpack, xpcall = xpcall, print = print, table = table,
  os = {time = os.time, date = os.date, clock = os.clock},
  obj = obj,
}
env._G = env
local chunk, err = loadstring(script, "=health.lua")
if chunk == nil then error(err) end
setfenv(chunk, env)
-- gopher-lua without its string library has no string methods: ("x"):upper() fails there.
local string_meta = getmetatable("")
local saved = string_meta.__index
string_meta.__index = nil
local ok, result = pcall(chunk)
string_meta.__index = saved
if not ok then error(result) end
return result
"""


def to_lua(runtime: Any, value: Any) -> Any:
    """Python data -> Lua values the way Argo CD's decodeValue does (lists 1-based)."""
    if isinstance(value, Mapping):
        return runtime.table_from({k: to_lua(runtime, v) for k, v in value.items()})
    if isinstance(value, list):
        return runtime.table_from([to_lua(runtime, v) for v in value])
    return value


def run_health_lua(obj: Mapping[str, Any], script: str | None = None) -> dict[str, Any]:
    lupa = lua51
    runtime = lupa.LuaRuntime(unpack_returned_tuples=True)
    sandbox = runtime.execute("return function(...) " + _SANDBOX + " end")
    result = sandbox(script or HEALTH_LUA.read_text(), to_lua(runtime, obj))
    assert lupa.lua_type(result) == "table", f"the script returned {result!r}, not a table"
    return dict(result.items())


def argocd_cm_text() -> str:
    script = HEALTH_LUA.read_text()
    body = "".join(f"    {line}\n" if line else "\n" for line in script.splitlines())
    return (
        "# Argo CD health check for DataSyncExecutions, generated from health.lua (do not edit here;\n"
        "# run `python tests/chart/test_gitops_health.py` after changing health.lua).\n"
        "# Apply with: kubectl -n argocd patch configmap argocd-cm --patch-file gitops/argocd/argocd-cm.yaml\n"
        "apiVersion: v1\n"
        "kind: ConfigMap\n"
        "metadata:\n"
        "  name: argocd-cm\n"
        "  namespace: argocd\n"
        "data:\n"
        f"  {CM_KEY}: |\n"
        f"{body}"
    )


RECORDED_HEADER = "# Recorded by tests/chart/fixtures/record.py from a real run"
TRIMMED_METADATA = {"name", "namespace", "generation", "creationTimestamp"}


@pytest.mark.parametrize("name", fixture_names())
def test_fixture_was_recorded_not_written(name: str) -> None:
    text = (FIXTURES / f"{name}.yaml").read_text()
    assert text.startswith(RECORDED_HEADER), f"{name}.yaml was not recorded by record.py"
    obj = load_fixture(name)
    assert list(obj) == ["apiVersion", "kind", "metadata", "spec", "status"][: len(obj)]
    metadata = set(obj["metadata"])
    if "deletionTimestamp" in metadata:
        metadata -= {"deletionTimestamp", "finalizers"}
    assert metadata == TRIMMED_METADATA, sorted(metadata)


def test_every_fixture_has_an_expectation() -> None:
    assert set(fixture_names()) == set(EXPECTED), (
        "fixtures and expected.yaml disagree: "
        f"{sorted(set(fixture_names()) ^ set(EXPECTED))}"
    )


@pytest.mark.parametrize("name", fixture_names())
def test_argocd_health(name: str) -> None:
    health = run_health_lua(load_fixture(name))
    assert health["status"] in ARGO_HEALTH_STATUSES
    assert health["status"] == EXPECTED[name]["argocd"], health
    assert EXPECTED[name]["argocdMessage"] in health["message"], health
    assert isinstance(health["message"], str) and health["message"]


def test_argocd_retry_message_names_the_next_attempt() -> None:
    obj = load_fixture("retrying-server-error")
    health = run_health_lua(obj)
    assert obj["status"]["retry"]["nextAttemptTime"] in health["message"]


def test_argocd_ready_false_without_stall_is_progressing() -> None:
    obj = load_fixture("running-active")
    for condition in obj["status"]["conditions"]:
        if condition["type"] == "Ready":
            condition["status"] = "False"
            condition["reason"] = "SomeFutureReason"
            condition["message"] = "not ready for a reason this check does not know"
    health = run_health_lua(obj)
    assert health == {
        "status": "Progressing",
        "message": "SomeFutureReason: not ready for a reason this check does not know",
    }


def test_argocd_handles_missing_metadata_and_empty_conditions() -> None:
    assert run_health_lua({"status": {"conditions": []}})["status"] == "Progressing"
    assert run_health_lua({})["status"] == "Progressing"


def test_sandbox_rejects_string_library_use() -> None:
    """The sandbox really is Argo CD's: a script using string methods must fail here too."""
    with pytest.raises(lua51.LuaError, match="attempt to index a string value"):
        run_health_lua({}, 'local hs = {}; hs.status = ("healthy"):upper(); return hs')
    with pytest.raises(lua51.LuaError, match="string"):
        run_health_lua({}, 'local hs = {}; hs.status = string.format("%s", "x"); return hs')


def test_argocd_cm_embeds_the_same_script() -> None:
    assert ARGOCD_CM.read_text() == argocd_cm_text(), (
        "gitops/argocd/argocd-cm.yaml is out of date: run `python tests/chart/test_gitops_health.py`"
    )
    data = yaml.safe_load(ARGOCD_CM.read_text())["data"]
    assert data[CM_KEY] == HEALTH_LUA.read_text()


def test_argocd_example_installs_this_chart_with_valid_values() -> None:
    import jsonschema

    docs = list(yaml.safe_load_all((REPO_ROOT / "examples" / "argocd-application.yaml").read_text()))
    apps = {doc["metadata"]["name"]: doc for doc in docs}
    assert all(doc["apiVersion"] == "argoproj.io/v1alpha1" and doc["kind"] == "Application" for doc in docs)
    source = apps["datasync-operator"]["spec"]["source"]
    assert (REPO_ROOT / source["path"] / "Chart.yaml").is_file()
    schema = json.loads((REPO_ROOT / source["path"] / "values.schema.json").read_text())
    jsonschema.validate(source["helm"]["valuesObject"], schema)
    # The argocd-cm key names this CRD's group and kind.
    crd = yaml.safe_load(CRD.read_text())
    assert (
        f"resource.customizations.health.{crd['spec']['group']}_{crd['spec']['names']['kind']}"
    ) == CM_KEY


def test_flux_example_waits_on_kstatus_without_custom_expressions() -> None:
    docs = list(yaml.safe_load_all((REPO_ROOT / "examples" / "flux-kustomization.yaml").read_text()))
    kinds = {doc["kind"]: doc for doc in docs}
    kustomization = kinds["Kustomization"]
    assert kustomization["apiVersion"] == "kustomize.toolkit.fluxcd.io/v1"
    assert kustomization["spec"]["wait"] is True
    assert "healthCheckExprs" not in kustomization["spec"]
    source = kustomization["spec"]["sourceRef"]
    assert (source["kind"], source["name"]) == ("GitRepository", kinds["GitRepository"]["metadata"]["name"])


# --- Flux: kstatus ---------------------------------------------------------------------------


def kstatus_compute(obj: Mapping[str, Any]) -> tuple[str, str]:
    """kstatus's Compute for a custom resource: (status, message).

    1. metadata.deletionTimestamp set -> Terminating.
    2. status.observedGeneration present and != metadata.generation -> InProgress.
    3. The first condition (in list order) that is Reconciling=True -> InProgress, or
       Stalled=True -> Failed.
    4. (No type-specific rules for custom resources.)
    5. A Ready condition: True -> Current, False or Unknown -> InProgress.
    6. Otherwise -> Current ("Resource is current"), even with no status at all.
    """
    metadata = obj.get("metadata") or {}
    status = obj.get("status") or {}
    if metadata.get("deletionTimestamp"):
        return "Terminating", "Resource scheduled for deletion"
    generation = metadata.get("generation")
    observed = status.get("observedGeneration")
    if generation is not None and observed is not None and observed != generation:
        kind = obj.get("kind", "Resource")
        return "InProgress", f"{kind} generation is {generation}, but latest observed generation is {observed}"
    conditions = status.get("conditions") or []
    for condition in conditions:
        if condition.get("type") == "Reconciling" and condition.get("status") == "True":
            return "InProgress", condition.get("message", "")
        if condition.get("type") == "Stalled" and condition.get("status") == "True":
            return "Failed", condition.get("message", "")
    for condition in conditions:
        if condition.get("type") != "Ready":
            continue
        if condition.get("status") == "True":
            return "Current", "Resource is Ready"
        if condition.get("status") in ("False", "Unknown"):
            return "InProgress", condition.get("message", "")
    return "Current", "Resource is current"


@pytest.mark.parametrize("name", fixture_names())
def test_kstatus_classification(name: str) -> None:
    status, message = kstatus_compute(load_fixture(name))
    assert status == EXPECTED[name]["kstatus"], (status, message)


def test_kstatus_and_argocd_agree_once_the_operator_reported() -> None:
    """Where both have something to say, Current~Healthy, InProgress~Progressing, Failed~Degraded."""
    mapping = {"Current": "Healthy", "InProgress": "Progressing", "Failed": "Degraded",
               "Terminating": "Progressing"}
    for name in fixture_names():
        obj = load_fixture(name)
        if not (obj.get("status") or {}).get("conditions"):
            continue  # kstatus calls a resource without status Current; Argo CD waits for it
        assert mapping[kstatus_compute(obj)[0]] == run_health_lua(obj)["status"], name


def test_reconciling_and_stalled_are_never_both_true() -> None:
    for name in fixture_names():
        conditions = {c["type"]: c["status"] for c in (load_fixture(name).get("status") or {}).get("conditions", [])}
        assert not (conditions.get("Reconciling") == "True" and conditions.get("Stalled") == "True"), name


# --- the fixtures themselves -----------------------------------------------------------------


def _openapi_to_jsonschema(node: Any) -> Any:
    """Drop the Kubernetes extensions so jsonschema can check the CRD's structural schema."""
    if isinstance(node, dict):
        return {
            k: _openapi_to_jsonschema(v)
            for k, v in node.items()
            if not k.startswith("x-kubernetes-") and k != "format"
        }
    if isinstance(node, list):
        return [_openapi_to_jsonschema(v) for v in node]
    return node


def _closed(schema: Any) -> Any:
    """Structural schemas prune unknown fields: treat them as errors so fixtures stay real."""
    schema = copy.deepcopy(schema)
    if isinstance(schema, dict):
        if schema.get("type") == "object" and "properties" in schema:
            schema.setdefault("additionalProperties", False)
        for key in ("properties",):
            if key in schema:
                schema[key] = {k: _closed(v) for k, v in schema[key].items()}
        if "items" in schema:
            schema["items"] = _closed(schema["items"])
    return schema


#: Fixtures whose spec the API server would refuse today (the operator still handles them).
SPEC_OUTSIDE_SCHEMA = {"invalid-spec"}


@pytest.mark.parametrize("name", fixture_names())
def test_fixture_matches_the_crd_schema(name: str) -> None:
    import jsonschema

    crd = yaml.safe_load(CRD.read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    schema = _closed(_openapi_to_jsonschema(schema))
    schema["properties"]["metadata"] = {"type": "object"}
    obj = json.loads(json.dumps(load_fixture(name)))
    if name in SPEC_OUTSIDE_SCHEMA:
        jsonschema.validate(obj.get("status", {}), schema["properties"]["status"])
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(obj, schema)
    else:
        jsonschema.validate(obj, schema)


if __name__ == "__main__":
    ARGOCD_CM.write_text(argocd_cm_text())
    print(f"wrote {ARGOCD_CM.relative_to(REPO_ROOT)}", file=sys.stderr)
