"""Substrate's settings: read into settings.sources["substrate"], former names still read."""

from __future__ import annotations

import logging

import pytest

from downlink.security.protocol import _ws_stall
from downlink.settings import SettingsError, from_env


def test_settings_are_the_sources_with_their_defaults() -> None:
    mine = from_env({}).sources["substrate"]
    assert mine["retention_hours"] == 3.0
    assert mine["ws_idle_timeout_s"] == 60.0
    assert mine["ws_allow_networks"] == ()
    assert mine["purge_batch"] == 2000


def test_former_names_are_read_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="downlink.settings"):
        mine = from_env({
            "DOWNLINK_WS_IDLE_TIMEOUT_S": "7",
            "DOWNLINK_WS_ALLOW_NETWORKS": "10.0.0.0/8, 192.168.0.0/16",
            "DOWNLINK_PURGE_BATCH": "50",
        }).sources["substrate"]
    assert mine["ws_idle_timeout_s"] == 7.0
    assert mine["ws_allow_networks"] == ("10.0.0.0/8", "192.168.0.0/16")
    assert mine["purge_batch"] == 50
    said = caplog.text
    assert ("DOWNLINK_WS_IDLE_TIMEOUT_S is deprecated: use "
            "DOWNLINK_SUBSTRATE_WS_IDLE_TIMEOUT_S") in said
    assert "DOWNLINK_PURGE_BATCH is deprecated: use DOWNLINK_SUBSTRATE_PURGE_BATCH" in said


def test_the_new_name_wins_over_the_former(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="downlink.settings"):
        mine = from_env({
            "DOWNLINK_SUBSTRATE_WS_BUFFER_MAX": "5", "DOWNLINK_WS_BUFFER_MAX": "9",
        }).sources["substrate"]
    assert mine["ws_buffer_max"] == 5
    assert "deprecated" not in caplog.text


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DOWNLINK_SUBSTRATE_RETENTION_HOURS": "-1"}, "must not be negative"),
        ({"DOWNLINK_WS_MAX_FRAME_BYTES": "0"}, "must be at least 1"),
        ({"DOWNLINK_SUBSTRATE_WS_RATE_WINDOW_S": "0"}, "must be positive"),
        ({"DOWNLINK_SUBSTRATE_WS_ALLOW_NETWORKS": "10.0.0.0/8,nowhere"}, "'nowhere' is not a"),
        ({"DOWNLINK_SUBSTRATE_PURGE_BATCH": "lots"}, "is not a valid value"),
    ],
)
def test_bad_values_are_refused_naming_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message) as refused:
        from_env(env)
    assert "DOWNLINK_SUBSTRATE_" in str(refused.value)


def test_the_websocket_stall_limit_is_the_idle_timeout() -> None:
    assert _ws_stall(from_env({"DOWNLINK_SUBSTRATE_WS_IDLE_TIMEOUT_S": "12"})) == 12.0
