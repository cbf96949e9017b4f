-- Argo CD health check for datasync.operator.io/DataSyncExecution.
--
-- Install it as resource.customizations.health.datasync.operator.io_DataSyncExecution in the
-- argocd-cm ConfigMap (gitops/argocd/argocd-cm.yaml holds this script in that shape).
-- Argo CD runs it with only Lua's base and table libraries (no string library), so strings are
-- only joined with `..` and converted with tostring.
--
--   Degraded     Stalled=True: the operator cannot go on without a change (AWS refused the
--                request or the credentials, the spec is invalid, the execution failed or
--                finished before it could be cancelled).
--   Progressing  no status yet, a status older than the spec (observedGeneration), a transient
--                AWS failure being retried (Reconciling=True), Ready Unknown or False, deletion.
--   Healthy      Ready=True: cancelled as asked, or (desiredState Running) active or succeeded.

local hs = {}

local function find_condition(conditions, condition_type)
  for _, condition in ipairs(conditions) do
    if condition.type == condition_type then
      return condition
    end
  end
  return nil
end

local function describe(condition)
  local reason = condition.reason or condition.type
  if condition.message ~= nil and condition.message ~= "" then
    return reason .. ": " .. condition.message
  end
  return reason
end

local metadata = obj.metadata or {}
local status = obj.status or {}
local conditions = status.conditions or {}
local generation = metadata.generation

if metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "Being deleted"
  return hs
end

if #conditions == 0 then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end

-- A status written for an older spec says nothing about the current one.
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
    .. " (status is for generation " .. tostring(status.observedGeneration) .. ")"
  return hs
end

local stalled = find_condition(conditions, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end

local reconciling = find_condition(conditions, "Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(reconciling)
  if status.retry ~= nil and status.retry.nextAttemptTime ~= nil then
    hs.message = hs.message .. " (next attempt at " .. tostring(status.retry.nextAttemptTime) .. ")"
  end
  return hs
end

local ready = find_condition(conditions, "Ready")
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
else
  hs.status = "Progressing"
end
hs.message = describe(ready)
return hs
