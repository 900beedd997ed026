"""Secrets referenced from the configuration, resolved only where they are used (inside the
task, on the worker), so that the YAML, Prefect flow-run parameters, the saved config and MLflow
params only ever hold the reference.

* ``${env:NAME}``: the environment variable ``NAME`` (of the worker process);
* ``${prefect-secret:NAME}``: the Prefect ``Secret`` block ``NAME`` (``prefect block create
  secret`` or ``Secret(value=...).save(NAME)``), read through the worker's Prefect API.

Any other value is used as written.
"""

from __future__ import annotations

import os
import re

REFERENCE = re.compile(r"^\$\{(env|prefect-secret):([^}\s]+)\}$")


def is_reference(value: str) -> bool:
    return REFERENCE.match(value) is not None


def resolve_secret(value: str, key: str) -> str:
    """The secret behind ``value`` (``key`` names the setting in errors)."""
    match = REFERENCE.match(value)
    if match is None:
        return value
    kind, name = match.groups()
    if kind == "env":
        found = os.environ.get(name)
        if not found:
            raise ValueError(f"{key}: environment variable {name} is not set (the setting "
                             f"refers to it as {value}); export it where the workers run")
        return found
    from prefect.blocks.system import Secret

    try:
        secret = Secret.load(name, validate=False)
    except ValueError as err:
        raise ValueError(f"{key}: no Prefect Secret block named {name!r} ({err}); create it "
                         f"with `prefect block create secret` or "
                         f"Secret(value=...).save({name!r})") from err
    return str(secret.get())
