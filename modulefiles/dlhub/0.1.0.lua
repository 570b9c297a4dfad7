-- DLHub for Slurm: publish, find and run machine-learning models on this cluster.
-- Installed by scripts/install, which fills in @PREFIX@ and @REGISTRY@.
help([[
DLHub for Slurm @VERSION@

  dlhub search QUERY        find models
  dlhub describe OWNER/NAME show one
  dlhub run OWNER/NAME --input JSON
  dlhub publish DIR         publish a model directory (dlhub init makes its servable.json)

The service address is read from $DLHUB_REGISTRY/service.json.
]])
whatis("Name: dlhub")
whatis("Version: @VERSION@")
whatis("Description: model hub on Slurm: publication, discovery and batched inference")

local prefix = "@PREFIX@"
prepend_path("PATH", pathJoin(prefix, "bin"))
setenv("DLHUB_HOME", prefix)
setenv("DLHUB_REGISTRY", "@REGISTRY@")
