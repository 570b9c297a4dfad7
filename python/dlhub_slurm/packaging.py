"""Packing a servable for upload: a gzipped tar with ``servable.json`` at its top.

Three sources are accepted:

- a directory holding ``servable.json`` (as ``dlhub init`` writes it): packed whole;
- a directory holding only ``dlhub.json`` (as DLHub's SDK writes it): packed whole, its
  ``dlhub.json`` sent as ``servable.json``;
- a model object from DLHub's SDK 2.x (``ScikitLearnModel.create_model(...)``, ...): its
  metadata (``to_dict(simplify_paths=True)``) and the files it lists, laid out as the SDK lays
  them out in its own upload (relative to the files' common directory).
"""

import io
import json
import os
import tarfile

from .errors import InvalidInputError

def pack(model, fileobj):
    """Writes the upload for ``model`` (a directory or an SDK model) to ``fileobj``."""
    if isinstance(model, (str, os.PathLike)):
        _pack_directory(os.fspath(model), fileobj)
    elif hasattr(model, "to_dict") and hasattr(model, "list_files"):
        _pack_sdk_model(model, fileobj)
    else:
        raise InvalidInputError(
            "publish_servable takes a servable directory (with servable.json from `dlhub init`) or a model "
            "from DLHub's SDK (dlhub_sdk.models.servables...), not %s" % type(model).__name__
        )


def _pack_directory(directory, fileobj):
    if not os.path.isdir(directory):
        raise InvalidInputError("%s is not a directory; give the servable directory that holds servable.json" % directory)
    has_servable = os.path.isfile(os.path.join(directory, "servable.json"))
    has_sdk = os.path.isfile(os.path.join(directory, "dlhub.json"))
    if not has_servable and not has_sdk:
        raise InvalidInputError(
            "%s has neither servable.json nor dlhub.json; make one with `dlhub init`" % directory
        )
    with tarfile.open(fileobj=fileobj, mode="w:gz") as tar:
        for root, dirs, files in os.walk(directory):
            dirs[:] = sorted(d for d in dirs if d not in (".git", "__pycache__", ".ipynb_checkpoints"))
            for name in sorted(files):
                path = os.path.join(root, name)
                arcname = os.path.relpath(path, directory)
                if arcname == "dlhub.json" and not has_servable:
                    arcname = "servable.json"
                if name in ("__pycache__",) or name.endswith(".pyc"):
                    continue
                # Links stay links: the service accepts those that stay inside the servable.
                tar.add(path, arcname=arcname, recursive=False)


def _pack_sdk_model(model, fileobj):
    try:
        metadata = model.to_dict(simplify_paths=True)
    except ValueError as e:
        raise InvalidInputError("the model's metadata is incomplete: %s" % e) from None
    for field in ("transfer_method", "funcx_id"):
        metadata.get("dlhub", {}).pop(field, None)
    files = list(model.list_files())
    if files:
        root = model._get_common_path() if hasattr(model, "_get_common_path") else os.path.commonpath(
            [os.path.abspath(os.path.dirname(f)) for f in files])
    with tarfile.open(fileobj=fileobj, mode="w:gz") as tar:
        for path in files:
            if not os.path.isfile(path):
                raise InvalidInputError("the model lists %s, which is not a file here" % path)
            tar.add(path, arcname=os.path.relpath(path, root), recursive=False)
        document = json.dumps(metadata, indent=2, sort_keys=True).encode()
        info = tarfile.TarInfo("servable.json")
        info.size = len(document)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(document))
