-- DLHub for Slurm: publish, find and run machine-learning models on this cluster.
-- The modulefile template: scripts/install fills in @PREFIX@, @REGISTRY@, @VERSION@ and
-- @WORKER_PYTHON@ and writes it as modulefiles/dlhub/<version>.lua under the prefix.
help([==[
DLHub for Slurm @VERSION@

  dlhub search QUERY        find models
  dlhub describe OWNER/NAME show one
  dlhub run OWNER/NAME --input JSON
  dlhub test DIR --input J  try a model directory on this node before publishing it
  dlhub publish DIR         publish a model directory (dlhub init makes its servable.json)

  Python: from dlhub_slurm import DLHubClient; DLHubClient().run("alice/iris", [[5.1, 3.5, 1.4, 0.2]])

The service address is read from $DLHUB_REGISTRY/service.json.
Manual pages: man dlhub, man dlhub-run, ...; bash completion is loaded with the module.
]==])
whatis("Name: dlhub")
whatis("Version: @VERSION@")
whatis("Description: model hub on Slurm: publication, discovery and batched inference")

local prefix = "@PREFIX@"
prepend_path("PATH", pathJoin(prefix, "bin"))
setenv("DLHUB_HOME", prefix)
setenv("DLHUB_REGISTRY", "@REGISTRY@")
-- The Python client (standard library only), for any python3 on this node.
prepend_path("PYTHONPATH", pathJoin(prefix, "share/dlhub/python"))
prepend_path("MANPATH", pathJoin(prefix, "share/man"))
-- Completions: bash gets them on load; zsh finds _dlhub on FPATH (at its next compinit).
prepend_path("FPATH", pathJoin(prefix, "share/zsh/site-functions"))
if myShellType() == "sh" then
    execute{cmd="[ -n \"${BASH_VERSION:-}\" ] && [ -r " .. pathJoin(prefix, "share/bash-completion/completions/dlhub") ..
        " ] && . " .. pathJoin(prefix, "share/bash-completion/completions/dlhub"), modeA={"load"}}
end
-- The worker Python the site's pools use, so that `dlhub test` runs servables with it.
local worker_python = "@WORKER_PYTHON@"
if worker_python ~= "" then
    setenv("DLHUB_WORKER_PYTHON", worker_python)
end
