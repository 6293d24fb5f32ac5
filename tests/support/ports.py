"""The one port picker of the tests: a port for a server a test starts, free now and chosen below the
kernel's ephemeral range. A port got by binding port 0 comes from that range, where any outgoing
connection of a loaded machine (other tests, brokers, PostgreSQL clients) can take it before the server
binds it; below the range only another explicit bind can. The pick itself is the deploy script's
quiet_port (deploy/cluster/rabbitcluster.py), which the cluster demo also uses."""

from __future__ import annotations

import functools
import importlib.util
import sys

from tests.support.paths import REPO

SCRIPT = REPO / "deploy" / "cluster" / "rabbitcluster.py"
MODULE = "tinyfleet_rabbitcluster"  # the name tests/support/rabbit_cluster.py loads it under: one copy


@functools.cache
def _quiet_port() -> object:
    # a stdlib-only script, not a package module; loaded here without rabbit_cluster's heavy imports
    module = sys.modules.get(MODULE)
    if module is None:
        spec = importlib.util.spec_from_file_location(MODULE, SCRIPT)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[MODULE] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
    return module.quiet_port


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now and outside the ephemeral range."""
    pick = _quiet_port()
    assert callable(pick)
    return int(pick())
