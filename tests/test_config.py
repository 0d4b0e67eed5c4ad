"""Config: sources, precedence, defaults, and errors that name the key (README, Configuration)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from convosd.config import (
    DaemonSection,
    default_socket_path,
    default_state_dir,
    load_settings,
    resolve_paths,
)
from convosd.errors import ConfigError


def test_defaults_match_the_contract() -> None:
    s = load_settings({}, environ={})
    assert s.convos.enabled is True
    assert s.convos.env == "production"
    assert s.convos.dm_policy == "pairing"
    assert s.convos.allow_from == ()
    d = s.daemon
    assert (d.shutdown_grace_s, d.frame_limit_bytes, d.max_connections) == (10, 1048576, 256)
    assert (d.max_in_flight_per_connection, d.subscriber_queue) == (64, 1000)
    assert (d.journal_max_age_days, d.journal_max_events, d.cli_timeout_s) == (30, 1000000, 60)
    assert (d.max_message_bytes, d.send_rate_per_s, d.join_retry_max_s) == (16384, 5, 86400)
    assert (d.backfill_interval_s, d.backfill_window_s) == (60, 600)
    # additions (docs/PROTOCOL.md, Limits)
    assert (d.max_subscriptions_per_connection, d.max_subscriptions) == (32, 4096)
    assert (d.max_attachment_bytes, d.max_attachment_store_bytes) == (10_485_760, 1 << 30)
    assert d.cli_env_passthrough == (
        "CONVOS_API_KEY",
        "CONVOS_UPLOAD_PROVIDER*",
        "CONVOS_ATTESTATION*",
        "XMTP_GATEWAY_HOST",
    )


def test_every_daemon_key_has_an_environment_variable() -> None:
    from convosd.config import ENV_KEYS

    for field, info in DaemonSection.model_fields.items():
        assert info.alias is not None
        assert f"CONVOSD_{field.upper()}" in ENV_KEYS
    assert ENV_KEYS["CONVOSD_ENV"] == ("convos", "env")
    assert ENV_KEYS["CONVOSD_DM_POLICY"] == ("convos", "dm_policy")


def test_toml_file_and_precedence(tmp_path: Path) -> None:
    cfg = tmp_path / "convosd.toml"
    cfg.write_text(
        '[convos]\nenv = "dev"\ndmPolicy = "open"\n'
        'allowFrom = ["' + "a" * 64 + '"]\n'
        '[daemon]\ncliTimeoutS = 5\nsocket = "/file.sock"\nstateDir = "/file-state"\n'
    )
    environ = {"CONVOSD_CONFIG": str(cfg), "CONVOSD_SOCKET": "/env.sock", "CONVOSD_ENV": "local"}
    s = load_settings({"state_dir": "/flag-state"}, environ=environ)
    assert s.convos.env == "local"  # environment beats the file
    assert s.convos.dm_policy == "open"  # file beats the default
    assert s.convos.allow_from == ("a" * 64,)
    assert s.daemon.cli_timeout_s == 5
    assert s.daemon.socket == Path("/env.sock")
    assert s.daemon.state_dir == Path("/flag-state")  # flag beats everything
    assert s.config_path == cfg


def test_config_flag_beats_environment(tmp_path: Path) -> None:
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text('[convos]\nenv = "dev"\n')
    b.write_text('[convos]\nenv = "local"\n')
    s = load_settings({"config": str(a)}, environ={"CONVOSD_CONFIG": str(b)})
    assert s.convos.env == "dev"


def test_openclaw_json_file(tmp_path: Path) -> None:
    cfg = tmp_path / "openclaw.json"
    cfg.write_text(
        json.dumps(
            {
                "agents": {"ignored": True},
                "channels": {
                    "convos": {
                        "enabled": True,
                        "identityId": "cli-managed-id",
                        "env": "production",
                        "ownerConversationId": "abc123",
                        "dmPolicy": "pairing",
                    }
                },
                "convosd": {"maxConnections": 8},
            }
        )
    )
    s = load_settings({"config": str(cfg)}, environ={})
    assert s.convos.identity_id == "cli-managed-id"
    assert s.convos.owner_conversation_id == "abc123"
    assert s.daemon.max_connections == 8


def test_missing_config_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=f"config file not found: {missing}"):
        load_settings({"config": str(missing)}, environ={})


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[convos]\nenv = "prod"\n', "[convos] env from config file"),
        ('[convos]\ndmPolicy = "friends"\n', "'pairing', 'allowlist', 'open' or 'disabled'"),
        ("[daemon]\nmaxMessageBytes = 200000\n", "[daemon] maxMessageBytes"),
        ("[daemon]\nbogusKey = 1\n", "unknown key [daemon] bogusKey"),
        ("[other]\nx = 1\n", "unknown table(s) other"),
        ("[daemon\n", "not valid TOML"),
        ('[convos]\nallowFrom = ["nothex"]\n', "is not an inbox id"),
    ],
)
def test_bad_file_values_name_the_key(tmp_path: Path, text: str, needle: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings({"config": str(cfg)}, environ={})
    assert needle in str(info.value)


def test_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({}, environ={"CONVOSD_CLI_TIMEOUT_S": "soon", "CONVOSD_DM_POLICY": "x"})
    message = str(info.value)
    assert "CONVOSD_CLI_TIMEOUT_S" in message
    assert "CONVOSD_DM_POLICY" in message  # every problem at once, not the first only


def test_environment_lists_and_cli_argv() -> None:
    s = load_settings(
        {},
        environ={
            "CONVOSD_ALLOW_UIDS": "1000, 1001",
            "CONVOSD_ADMIN_GIDS": "[5]",
            "CONVOSD_CLI": "node '/opt/convos cli/bin/run.js'",
            "CONVOSD_CLI_ENV_PASSTHROUGH": "FOO,BAR_*",
        },
    )
    assert s.daemon.allow_uids == (1000, 1001)
    assert s.daemon.admin_gids == (5,)
    assert s.daemon.cli == ("node", "/opt/convos cli/bin/run.js")
    assert s.daemon.cli_env_passthrough == ("FOO", "BAR_*")


def test_worker_node_flags_default_to_a_small_heap_and_are_checked() -> None:
    assert load_settings({}, environ={}).daemon.cli_worker_node_flags == (
        "--max-semi-space-size=2",
        "--optimize-for-size",
    )
    s = load_settings(
        {},
        environ={
            "CONVOSD_CLI_WORKER_NODE_FLAGS": "--max-semi-space-size=4,--max-old-space-size=512"
        },
    )
    assert s.daemon.cli_worker_node_flags == ("--max-semi-space-size=4", "--max-old-space-size=512")
    assert (
        load_settings(
            {}, environ={"CONVOSD_CLI_WORKER_NODE_FLAGS": "[]"}
        ).daemon.cli_worker_node_flags
        == ()
    )
    for bad in ("max-semi-space-size=2", "--", "--a b"):
        with pytest.raises(ConfigError, match="CONVOSD_CLI_WORKER_NODE_FLAGS"):
            load_settings({}, environ={"CONVOSD_CLI_WORKER_NODE_FLAGS": f'["{bad}"]'})


def test_worker_malloc_arena_max_defaults_to_2() -> None:
    assert load_settings({}, environ={}).daemon.cli_worker_malloc_arena_max == 2
    s = load_settings({}, environ={"CONVOSD_CLI_WORKER_MALLOC_ARENA_MAX": "0"})
    assert s.daemon.cli_worker_malloc_arena_max == 0
    with pytest.raises(ConfigError, match="CONVOSD_CLI_WORKER_MALLOC_ARENA_MAX"):
        load_settings({}, environ={"CONVOSD_CLI_WORKER_MALLOC_ARENA_MAX": "-1"})


def test_unsplittable_cli_is_refused() -> None:
    with pytest.raises(ConfigError, match="cannot be split"):
        load_settings({}, environ={"CONVOSD_CLI": "node 'unclosed"})


def test_default_paths() -> None:
    home = Path("/home/u")
    assert default_socket_path({"RUNTIME_DIRECTORY": "/run/convosd:/run/x"}, 5) == Path(
        "/run/convosd/convosd.sock"
    )
    assert default_socket_path({"XDG_RUNTIME_DIR": "/run/user/5"}, 5) == Path(
        "/run/user/5/convosd/convosd.sock"
    )
    assert default_socket_path({}, 5) == Path("/tmp/convosd-5/convosd.sock")
    assert default_state_dir({"STATE_DIRECTORY": "/var/lib/convosd"}, home) == Path(
        "/var/lib/convosd"
    )
    assert default_state_dir({"XDG_STATE_HOME": "/x"}, home) == Path("/x/convosd")
    assert default_state_dir({}, home) == Path("/home/u/.local/state/convosd")


def test_resolved_paths_put_the_cli_home_in_the_state_dir() -> None:
    s = load_settings({"state_dir": "/srv/c1"}, environ={})
    p = resolve_paths(s, environ={"HOME": "/root"}, uid=0)
    assert p.convos_home == Path("/srv/c1/convos")
    assert p.socket == Path("/tmp/convosd-0/convosd.sock")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (
            '[daemon]\nlog_level = "debug"\n',
            "unknown key [daemon] log_level (did you mean logLevel?)",
        ),
        (
            '[convos]\ndm_policy = "open"\n',
            "unknown key [convos] dm_policy (did you mean dmPolicy?)",
        ),
        ("[daemon]\nmaxMesageBytes = 10\n", "(did you mean maxMessageBytes?)"),
    ],
)
def test_keys_in_another_spelling_are_refused(tmp_path: Path, text: str, needle: str) -> None:
    """One spelling per key: a snake_case key is refused with the known ones listed."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings({"config": str(cfg)}, environ={})
    assert needle in str(info.value) and "allowed: " in str(info.value)
    assert "logLevel" in str(info.value) or "dmPolicy" in str(info.value)


def test_unknown_environment_variables_name_the_nearest_known_one() -> None:
    from convosd.config import unknown_env_vars

    environ = {
        "CONVOSD_DMPOLICY": "open",
        "CONVOSD_LOGLEVEL": "debug",
        "CONVOSD_SOCKET": "/x.sock",
        "CONVOSD_CONFIG": "/x.toml",
        "CONVOSD_GATEWAY_TOKEN": "t",
        "CONVOSD_ZZZ": "1",
        "HOME": "/root",
    }
    assert unknown_env_vars(environ) == [
        ("CONVOSD_DMPOLICY", "CONVOSD_DM_POLICY"),
        ("CONVOSD_LOGLEVEL", "CONVOSD_LOG_LEVEL"),
        ("CONVOSD_ZZZ", None),
    ]
