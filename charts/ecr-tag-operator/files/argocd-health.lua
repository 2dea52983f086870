-- Argo CD health check for ecrtag.dev/EcrImageTag (ecr-tag-operator).
--
-- Argo CD runs health checks with gopher-lua (Lua 5.1). A check set in argocd-cm gets the base, table
-- and package libraries (require("os") gives only os.date and os.time), no string or math unless
-- useOpenLibs is set; this script uses only the base and table libraries. It reads the global `obj`
-- (the live resource) and returns {status, message}.
--
--   Healthy      Ready=True, and both status.observedGeneration and Ready's own observedGeneration
--                (when set) equal metadata.generation.
--   Progressing  no status or no Ready condition yet; the status describes an older generation;
--                Ready=Unknown; Ready=False with a reason that clears by itself (TRANSIENT below).
--   Degraded     Ready=False with any other reason, including reasons this script does not know:
--                a rollout waiting on these tags should stop rather than wait for ever.
--                Observe mode with drifted tags is Degraded too: Observe never writes to ECR, so
--                nothing moves the tags back by itself.

-- Ready reasons that clear by themselves: ecr_tag_operator.reasons.TRANSIENT (a test keeps them equal).
local TRANSIENT = {
  Throttling = true,
  ServerError = true,
  ServiceUnavailable = true,
  InternalFailure = true,
  RequestTimeout = true,
  TooManyRequests = true,
  RequestLimitExceeded = true,
  EndpointConnectionError = true,
  ConnectTimeout = true,
  ReadTimeout = true,
  UpstreamTooManyRequests = true,
  UpstreamUnavailable = true,
  ImageRestoring = true,
  Copying = true,
  NotInSync = true,
}

-- How many tags a message names before "and N more".
local LISTED = 5

local function listing(items)
  local shown = {}
  for i = 1, #items do
    if i > LISTED then
      return table.concat(shown, ", ") .. " and " .. tostring(#items - LISTED) .. " more"
    end
    shown[i] = items[i]
  end
  return table.concat(shown, ", ")
end

-- Generations compared as text, whether Argo CD hands them over as numbers or strings: gopher-lua
-- prints an integral number whole, so 123456789012347 and 123456789012346 stay apart.
local function same(a, b)
  return a ~= nil and b ~= nil and tostring(a) == tostring(b)
end

local function ready_condition(status)
  if status.conditions == nil then
    return nil
  end
  for _, condition in ipairs(status.conditions) do
    if condition.type == "Ready" then
      return condition
    end
  end
  return nil
end

-- The tags whose inSync is not true: their names, and "tag (reason)" for each.
local function unsynced(status)
  local names, described = {}, {}
  if status.tags == nil then
    return names, described
  end
  for _, entry in ipairs(status.tags) do
    if entry.inSync ~= true and entry.tag ~= nil then
      names[#names + 1] = tostring(entry.tag)
      described[#described + 1] = tostring(entry.tag) .. " (" .. tostring(entry.reason or "NotInSync") .. ")"
    end
  end
  return names, described
end

-- The first of ECR's failures, e.g. "ECR PutImage ImageTagAlreadyExistsException for tag staging".
local function first_failure(status)
  if status.failures == nil or status.failures[1] == nil then
    return nil
  end
  local failure = status.failures[1]
  local text = "ECR"
  if failure.operation ~= nil then
    text = text .. " " .. tostring(failure.operation)
  end
  text = text .. " " .. tostring(failure.code or "failure")
  local id = failure.imageId or {}
  local about = {}
  local tag = failure.tag or id.imageTag
  if tag ~= nil then
    about[#about + 1] = "tag " .. tostring(tag)
  end
  if id.imageDigest ~= nil then
    about[#about + 1] = "digest " .. tostring(id.imageDigest)
  end
  if failure.layerDigest ~= nil then
    about[#about + 1] = "layer " .. tostring(failure.layerDigest)
  end
  if #about > 0 then
    text = text .. " for " .. table.concat(about, ", ")
  end
  return text
end

-- "<Reason>: <Ready's message>; ECR <operation> <code> for tag <tag>; not in sync: <tag> (<reason>), ..."
local function describe(status, ready)
  local label = ready.reason or ("Ready=" .. tostring(ready.status))
  local parts = {}
  if ready.message ~= nil and ready.message ~= "" then
    parts[1] = label .. ": " .. tostring(ready.message)
  else
    parts[1] = label
  end
  local failure = first_failure(status)
  if failure ~= nil then
    parts[#parts + 1] = failure
  end
  local _, described = unsynced(status)
  if #described > 0 then
    parts[#parts + 1] = "not in sync: " .. listing(described)
  end
  return table.concat(parts, "; ")
end

local function observe_drift(status, ready)
  local names = unsynced(status)
  local text = "Observe mode: "
  if #names == 1 then
    text = text .. "1 tag drifted: " .. listing(names)
  elseif #names > 1 then
    text = text .. tostring(#names) .. " tags drifted: " .. listing(names)
  else
    text = text .. "tags drifted"
  end
  if ready.message ~= nil and ready.message ~= "" then
    text = text .. "; " .. tostring(ready.message)
  end
  return text
end

local function assess(resource)
  local status = resource.status
  if status == nil then
    return "Progressing", "Waiting for the operator: no status yet"
  end
  local generation = nil
  if resource.metadata ~= nil then
    generation = resource.metadata.generation
  end
  if generation ~= nil and not same(status.observedGeneration, generation) then
    local text = "Waiting for the operator to observe generation " .. tostring(generation)
    if status.observedGeneration ~= nil then
      text = text .. " (status is for generation " .. tostring(status.observedGeneration) .. ")"
    end
    return "Progressing", text
  end
  local ready = ready_condition(status)
  if ready == nil then
    return "Progressing", "Waiting for the operator to set the Ready condition"
  end
  if generation ~= nil and ready.observedGeneration ~= nil and not same(ready.observedGeneration, generation) then
    return "Progressing", "Waiting for the operator to update Ready for generation " .. tostring(generation)
      .. " (Ready is for generation " .. tostring(ready.observedGeneration) .. ")"
  end
  if ready.status == "True" then
    return "Healthy", tostring(ready.message or "")
  end
  if ready.status == "False" then
    local mode = nil
    if resource.spec ~= nil then
      mode = resource.spec.mode
    end
    if mode == "Observe" and ready.reason == "Drifted" then
      return "Degraded", observe_drift(status, ready)
    end
    if ready.reason ~= nil and TRANSIENT[ready.reason] then
      return "Progressing", describe(status, ready)
    end
    return "Degraded", describe(status, ready)
  end
  -- Unknown (or anything else): the operator has not decided yet.
  return "Progressing", describe(status, ready)
end

local hs = {}
hs.status, hs.message = assess(obj)
return hs
