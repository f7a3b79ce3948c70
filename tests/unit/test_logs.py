"""Logging: journald entries under systemd, readable lines on a console.

The journal is replaced by a recording ``sendv`` (the real one is
``systemd.journal.sendv``); what is asserted is what ``journalctl -u xdpd
-o verbose`` would show.
"""

from __future__ import annotations

import io
import os
import sys

import pytest
import structlog

from xdpd import logs


@pytest.fixture(autouse=True)
def _reset_structlog():
    yield
    structlog.reset_defaults()


class Journal:
    """Records entries as dicts (``{"MESSAGE": ..., ...}``) like journald stores them."""

    def __init__(self) -> None:
        self.entries: list[dict[str, str]] = []

    def sendv(self, *fields: str) -> None:
        entry = {}
        for f in fields:
            assert isinstance(f, str)
            key, sep, value = f.partition("=")
            assert sep, f"not a FIELD=value string: {f!r}"
            assert key == key.upper() and not key.startswith("_"), f"invalid journal field name {key!r}"
            assert key not in entry, f"field {key} sent twice"
            entry[key] = value
        self.entries.append(entry)


@pytest.fixture
def journal() -> Journal:
    j = Journal()
    assert logs.setup(target=logs.JOURNAL, journal_send=j.sendv) == logs.JOURNAL
    return j


def test_rule_count_becomes_searchable_journal_fields(journal):
    logs.get().info("count", packets=12, bytes=1500, delta_packets=2, delta_bytes=250,
                    rule="drop-bad-net", action="drop")
    [e] = journal.entries
    assert e["XDPD_EVENT"] == "count"
    assert e["XDPD_RULE"] == "drop-bad-net"      # journalctl -u xdpd XDPD_RULE=drop-bad-net
    assert e["XDPD_ACTION"] == "drop"
    assert (e["PACKETS"], e["BYTES"], e["DELTA_PACKETS"], e["DELTA_BYTES"]) == ("12", "1500", "2", "250")
    assert e["PRIORITY"] == "6"
    assert e["SYSLOG_IDENTIFIER"] == "xdpd"
    assert e["MESSAGE"] == ("count rule=drop-bad-net action=drop packets=12 bytes=1500 "
                            "delta_packets=2 delta_bytes=250")


def test_interface_count_fields(journal):
    logs.get().info("count", packets=3, bytes=210, delta_packets=3, delta_bytes=210,
                    iface="eth0", verdict="pass_default")
    [e] = journal.entries
    assert e["XDPD_IFACE"] == "eth0" and e["XDPD_VERDICT"] == "pass_default"
    assert "XDPD_RULE" not in e
    assert e["MESSAGE"].startswith("count iface=eth0 verdict=pass_default packets=3 ")


@pytest.mark.parametrize("method,priority", [("debug", None), ("info", "6"), ("warning", "4"),
                                             ("error", "3"), ("critical", "2")])
def test_priority_follows_the_level_and_debug_is_filtered(journal, method, priority):
    getattr(logs.get(), method)("stopped")
    if priority is None:
        assert journal.entries == []  # the default level is INFO
    else:
        assert [e["PRIORITY"] for e in journal.entries] == [priority]


def test_other_fields_get_an_xdpd_prefix_and_message_stays_one_line(journal):
    problem = "/etc/xdpd/rules.yaml:7:5: unknown key 'acton'\n  did you mean 'action'?"
    logs.get().error("reload_rejected", problem=problem, config_dir="/etc/xdpd", interfaces=2,
                     detach_on_stop=False)
    [e] = journal.entries
    assert e["XDPD_PROBLEM"] == problem          # the full text, line break included
    assert e["XDPD_CONFIG_DIR"] == "/etc/xdpd"
    assert e["XDPD_INTERFACES"] == "2"
    assert e["XDPD_DETACH_ON_STOP"] == "false"
    assert "\n" not in e["MESSAGE"]
    assert e["MESSAGE"].startswith('reload_rejected problem="/etc/xdpd/rules.yaml:7:5: unknown key ')
    assert e["PRIORITY"] == "3"


def test_field_names_are_valid_journal_names():
    assert logs.field_name("rule") == "XDPD_RULE"
    assert logs.field_name("delta_bytes") == "DELTA_BYTES"
    assert logs.field_name("pin-dir.x") == "XDPD_PIN_DIR_X"


def test_exception_traceback_in_its_own_field(journal):
    try:
        raise RuntimeError("no such map")
    except RuntimeError:
        logs.get().exception("reload_failed", detail="no such map")
    [e] = journal.entries
    assert e["PRIORITY"] == "3"
    assert "RuntimeError: no such map" in e["XDPD_EXCEPTION"]
    assert e["MESSAGE"] == "reload_failed detail=\"no such map\""


def test_default_sender_is_python3_systemd(monkeypatch):
    from systemd import journal as sd_journal

    recorded = Journal()
    monkeypatch.setattr(sd_journal, "sendv", recorded.sendv)
    assert logs.setup(target=logs.JOURNAL) == logs.JOURNAL
    logs.get().info("attached", iface="xdpdt-in", mode="native")
    assert recorded.entries[0]["XDPD_IFACE"] == "xdpdt-in"
    assert recorded.entries[0]["XDPD_MODE"] == "native"


def test_journal_unreachable_falls_back_to_stderr(capsys):
    def refuse(*fields):
        raise FileNotFoundError(2, "No such file or directory", "/run/systemd/journal/socket")

    logs.setup(target=logs.JOURNAL, journal_send=refuse)
    logs.get().warning("interface_missing", iface="eth9", hint="configured but not present")
    assert 'interface_missing iface=eth9 hint="configured but not present"' in capsys.readouterr().err


def test_console_is_a_readable_line_on_stderr(capsys):
    assert logs.setup(target=logs.CONSOLE) == logs.CONSOLE
    logs.get().info("attached", iface="eth0", mode="native")
    err = capsys.readouterr().err
    assert "[info" in err and "attached" in err and "iface=eth0" in err and "mode=native" in err


# ---------------------------------------------------------------- detection

def _stream(tmp_path):
    f = open(tmp_path / "stderr", "w")
    st = os.fstat(f.fileno())
    return f, f"{st.st_dev}:{st.st_ino}"


def test_journal_when_stderr_is_the_journal_stream(tmp_path):
    f, ident = _stream(tmp_path)
    with f:
        assert logs.choose_target({"JOURNAL_STREAM": ident, "INVOCATION_ID": "x"}, f) == logs.JOURNAL


def test_inherited_journal_stream_that_is_not_our_stderr_means_console(tmp_path):
    f, _ = _stream(tmp_path)
    other = open(tmp_path / "other", "w")
    with f, other:
        st = os.fstat(other.fileno())
        env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}", "INVOCATION_ID": "x"}
        assert logs.choose_target(env, f) == logs.CONSOLE


def test_invocation_id_alone_means_a_service_without_journal_stream(tmp_path):
    f, _ = _stream(tmp_path)
    with f:
        assert logs.choose_target({"INVOCATION_ID": "0123"}, f) == logs.JOURNAL
        assert logs.choose_target({}, f) == logs.CONSOLE
        assert logs.choose_target({"JOURNAL_STREAM": "garbage"}, f) == logs.CONSOLE


def test_override_by_environment(tmp_path):
    f, ident = _stream(tmp_path)
    with f:
        assert logs.choose_target({"XDPD_LOG_TARGET": "console", "JOURNAL_STREAM": ident}, f) == logs.CONSOLE
        assert logs.choose_target({"XDPD_LOG_TARGET": "journal"}, f) == logs.JOURNAL


def test_stream_without_a_file_descriptor_is_not_the_journal():
    assert logs.choose_target({"JOURNAL_STREAM": "1:2"}, io.StringIO()) == logs.CONSOLE


def test_setup_detects_by_itself(monkeypatch, tmp_path):
    recorded = Journal()
    f, ident = _stream(tmp_path)
    with f:
        monkeypatch.setattr(sys, "stderr", f)
        monkeypatch.setenv("JOURNAL_STREAM", ident)
        monkeypatch.delenv("XDPD_LOG_TARGET", raising=False)
        assert logs.setup(journal_send=recorded.sendv) == logs.JOURNAL
        monkeypatch.delenv("JOURNAL_STREAM")
        monkeypatch.delenv("INVOCATION_ID", raising=False)
        assert logs.setup(journal_send=recorded.sendv) == logs.CONSOLE
