"""Each run gets its own loopback: two nodes on the fixed port at once, in two namespaces."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.xmtpnode.harness import LocalNode
from tests.xmtpnode.netns import Namespace, open_namespace


def fresh_namespace() -> Namespace:
    made = open_namespace()
    if isinstance(made, str):
        pytest.skip(f"real-node tier: {made}")
    return made


def test_two_nodes_on_the_fixed_port_in_two_namespaces(
    namespace: Namespace, tmp_path: Path
) -> None:
    # ``namespace`` (the session's, where the tier's node runs) only says whether one can be
    # made here; this test makes two more of its own.
    one, two = fresh_namespace(), fresh_namespace()
    first = LocalNode(one, tmp_path / "one")
    second = LocalNode(two, tmp_path / "two")
    third = LocalNode(one, tmp_path / "three")
    try:
        first.start()
        second.start()
        assert first.process is not None and first.process.poll() is None
        assert second.process is not None and second.process.poll() is None
        # a second node in the same namespace cannot take the ports: it says so and exits
        with pytest.raises(RuntimeError, match="did not start"):
            third.start()
        log = (tmp_path / "three" / "node.log").read_text()
        assert "could not listen" in log or "Address already in use" in log
    finally:
        for node in (first, second, third):
            node.stop()
        one.close()
        two.close()
