"""The add-ons in contrib/ find the daemon where convosctl does, and refuse what it refuses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from contrib.socket_path import UntrustedSocket, socket_path


def test_a_named_socket_wins(tmp_path: Path) -> None:
    named = tmp_path / "x.sock"
    assert socket_path(named, {}) == named
    assert socket_path(None, {"CONVOSD_SOCKET": str(named)}) == named


def test_the_discovered_socket_is_used(tmp_path: Path) -> None:
    place = tmp_path / "xdg" / "convosd"
    place.mkdir(parents=True, mode=0o700)
    (place / "convosd.sock").touch()
    assert socket_path(None, {"XDG_RUNTIME_DIR": str(tmp_path / "xdg")}) == (place / "convosd.sock")


def test_a_socket_in_a_directory_others_can_write_is_refused(tmp_path: Path) -> None:
    place = tmp_path / "xdg" / "convosd"
    place.mkdir(parents=True)
    place.chmod(0o777)
    (place / "convosd.sock").touch()
    with pytest.raises(UntrustedSocket, match="writable by others"):
        socket_path(None, {"XDG_RUNTIME_DIR": str(tmp_path / "xdg")})


def test_no_socket_yet_means_the_daemon_default(tmp_path: Path) -> None:
    env = {"XDG_RUNTIME_DIR": str(tmp_path / "xdg")}
    assert socket_path(None, env) == tmp_path / "xdg" / "convosd" / "convosd.sock"
    assert os.path.lexists(tmp_path / "xdg") is False
