"""DLHub for Slurm from Python: publish, find and run models on this cluster's DLHub.

    from dlhub_slurm import DLHubClient
    dl = DLHubClient()                       # finds the service as `dlhub` does; munge signs you in
    dl.search("iris")
    dl.run("alice/iris", [[5.1, 3.5, 1.4, 0.2]])
    future = dl.run("alice/iris", [[5.1, 3.5, 1.4, 0.2]], asynchronous=True)
    future.result()

Standard library only. ``module load dlhub`` puts it on ``PYTHONPATH``; ``pip install`` of the
repository's ``python/`` directory installs it into a virtual environment.
"""

from .client import DLHubClient, DLHubFuture, describe_wait
from .errors import (
    AuthenticationError,
    ConflictError,
    DLHubError,
    DLHubTimeoutError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    QuotaExceededError,
    ServableError,
    ServiceUnavailableError,
    WithdrawnError,
)

__version__ = "0.1.0"

__all__ = [
    "DLHubClient",
    "DLHubFuture",
    "describe_wait",
    "DLHubError",
    "AuthenticationError",
    "ConflictError",
    "DLHubTimeoutError",
    "ForbiddenError",
    "InvalidInputError",
    "NotFoundError",
    "QuotaExceededError",
    "ServableError",
    "ServiceUnavailableError",
    "WithdrawnError",
]
