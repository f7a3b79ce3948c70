"""Where the metrics go: ``/metrics`` over HTTP (``metrics_listen``) and a
textfile for node_exporter (``metrics_textfile``), either, both or neither.

Both follow the config in force: :meth:`MetricsExport.apply` runs at start
and after every applied reload and starts, stops or moves the listener, and
starts or stops the textfile (removing the file it wrote before, which
node_exporter would otherwise go on exporting with frozen numbers).
:meth:`MetricsExport.write_textfile` runs at every count report
(``log_interval``).

Neither may stop the filter.  A listener that cannot bind, or a textfile
that cannot be written, is logged with what to do and the daemon goes on
filtering; the listener is tried again at the next applied reload, the
textfile at the next report.  An address that is not (yet) on this host is
bound anyway (``IP_FREEBIND``, as systemd's ``FreeBind=``): xdpd starts
before the network is configured, and the listener works once the address
appears.

The HTTP server runs in threads of its own; a scrape reads the pins there
(:class:`xdpd.metrics.MetricsCollector`), never through the main loop, and
the main loop never waits for a scrape except when it stops or moves the
listener (a scrape takes milliseconds; a client gets :data:`CLIENT_TIMEOUT`
seconds to send its request).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import socketserver
import tempfile
import threading
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry

from .metrics import render

IP_FREEBIND = 15
"""<linux/in.h>; Python's socket module does not name it.  Also honoured on
IPv6 sockets (level SOL_IP), as systemd relies on."""

CLIENT_TIMEOUT = 5.0
"""Seconds a client has to send its request; bounds how long stopping waits."""

TEXTFILE_MODE = 0o644
"""node_exporter runs as its own user; the daemon's umask (0077 in the unit) would hide the file."""

_HINT_LISTEN = ("xdpd.service allows IP traffic from and to localhost only (IPAddressAllow=localhost): "
                "to be scraped from elsewhere, add IPAddressAllow=<scraper address> in a drop-in "
                "(systemctl edit xdpd)")


class MetricsExport:
    """The listener and the textfile, as the settings say."""

    def __init__(self, registry: CollectorRegistry, log) -> None:
        self.registry, self.log = registry, log
        self.listen: tuple[str, int] | None = None
        self.textfile: str | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._wrote: str | None = None      # the textfile as last written, to remove it when it changes
        self._failing: dict[str, str] = {}  # what -> error logged, so a lasting error is logged once

    # -- settings ------------------------------------------------------------
    def apply(self, settings) -> None:
        """Follow ``settings.metrics_listen`` and ``settings.metrics_textfile``."""
        listen = settings.metrics_listen
        if listen != self.listen or (listen is not None and self._server is None):
            self._stop_listener()
            self.listen = listen
            if listen is not None:
                self._start_listener(listen)
        if settings.metrics_textfile != self.textfile:
            self._remove_textfile()
            self.textfile = settings.metrics_textfile
            self.write_textfile()  # at once, not a log_interval later

    def close(self) -> None:
        """Stop the listener (the textfile stays: its numbers were true when written)."""
        self._stop_listener()

    # -- HTTP ------------------------------------------------------------------
    def _start_listener(self, listen: tuple[str, int]) -> None:
        url = _url(listen)
        try:
            try:
                server = _Server(listen, self)
            except OSError as e:
                if e.errno != errno.EADDRNOTAVAIL:
                    raise
                server = _Server(listen, self, freebind=True)
                self.log.warning("metrics_address_absent", address=url,
                                 hint=f"{listen[0]} is on no interface (yet); listening anyway, scrapes "
                                      "work once it is (a typo never will: check metrics_listen)")
        except OSError as e:
            self.log.error("metrics_listen_failed", address=url, detail=str(e),
                           hint="another process may use the port (change metrics_listen), or the address "
                                "family is not allowed (xdpd.service: RestrictAddressFamilies=); "
                                "tried again at the next reload")
            return
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="xdpd-metrics", daemon=True)
        self._thread.start()
        extra = {} if ipaddress.ip_address(listen[0]).is_loopback else {"hint": _HINT_LISTEN}
        self.log.info("metrics_listening", address=url, **extra)

    def _stop_listener(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()       # the accept loop: at most its 0.5 s poll
        self._server.server_close()   # and waits for requests being answered
        self._thread.join()
        self.log.info("metrics_listen_stopped", address=_url(self.listen))
        self._server = self._thread = None

    def scrape(self, accept: str | None) -> tuple[bytes, str]:
        """(body, content type) for one scrape, in the format the client accepts
        (Prometheus asks for OpenMetrics; curl gets the text format)."""
        encoder, content_type = choose_encoder(accept)
        try:
            body = encoder(self.registry)
        except Exception as e:
            self._failed("scrape", "metrics_scrape_failed", e)
            raise
        self._recovered("scrape", "metrics_scrape_ok")
        return body, content_type

    # -- textfile --------------------------------------------------------------
    def write_textfile(self) -> None:
        """Replace the textfile (if one is configured) with the current metrics."""
        if self.textfile is None:
            return
        try:
            write_atomically(self.textfile, render(self.registry))
        except Exception as e:
            self._failed("textfile", "metrics_textfile_failed", e, path=self.textfile,
                         hint="the directory must exist and be writable by xdpd: xdpd.service allows "
                              "/var/lib/prometheus/node-exporter (node_exporter's textfile directory on "
                              "Debian); another one needs ReadWritePaths= in a drop-in")
            return
        self._wrote = self.textfile
        self._recovered("textfile", "metrics_textfile_written", path=self.textfile)

    def _remove_textfile(self) -> None:
        if self._wrote is None:
            return
        try:
            os.unlink(self._wrote)
        except FileNotFoundError:
            pass
        except OSError as e:
            self.log.warning("metrics_textfile_not_removed", path=self._wrote, detail=str(e))
        else:
            self.log.info("metrics_textfile_removed", path=self._wrote)
        self._wrote = None
        self._failing.pop("textfile", None)

    # -- errors: logged when they start or change, and when they end ----------
    def _failed(self, what: str, event: str, e: Exception, **fields) -> None:
        # An OSError's own text names the temporary file, new each time: its reason is what lasts.
        detail = e.strerror if isinstance(e, OSError) and e.strerror else f"{type(e).__name__}: {e}"
        if self._failing.get(what) != detail:
            self._failing[what] = detail
            self.log.error(event, detail=detail, **fields)

    def _recovered(self, what: str, event: str, **fields) -> None:
        if self._failing.pop(what, None) is not None:
            self.log.info(event, **fields)


def write_atomically(path: str, data: bytes, mode: int = TEXTFILE_MODE) -> None:
    """Replace ``path`` with ``data``: a reader sees the old file or the new one, never part of one.

    The temporary file is in the same directory (rename is atomic only within
    a file system) and named ``.<name>.XXXX.tmp``: node_exporter reads only
    ``*.prom``.  Not fsynced: after a crash the next report rewrites it.
    """
    directory, name = os.path.split(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            os.fchmod(f.fileno(), mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _url(listen: tuple[str, int] | None) -> str:
    if listen is None:
        return ""
    host, port = listen
    return f"http://[{host}]:{port}/metrics" if ":" in host else f"http://{host}:{port}/metrics"


class _Handler(BaseHTTPRequestHandler):
    """``GET /metrics``; anything else is 404.  Logs nothing per request."""

    server: "_Server"
    timeout = CLIENT_TIMEOUT
    server_version = "xdpd"

    def do_GET(self) -> None:
        if urlsplit(self.path).path != "/metrics":
            self._reply(404, b"xdpd: the metrics are at /metrics\n", "text/plain; charset=utf-8")
            return
        try:
            body, content_type = self.server.export.scrape(self.headers.get("Accept"))
        except Exception as e:
            self._reply(500, f"xdpd: reading the metrics failed: {e}\n".encode(), "text/plain; charset=utf-8")
            return
        self._reply(200, body, content_type)

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        pass


class _Server(socketserver.ThreadingTCPServer):
    """A threading TCP server for :class:`_Handler`.

    Not ``http.server.HTTPServer``: its ``server_bind`` resolves the address
    to a name, a DNS query the unit's IP allow-list would leave hanging.
    Handler threads are joined on close, so nothing reads the maps after
    the daemon closed them.
    """

    allow_reuse_address = True
    daemon_threads = False
    block_on_close = True

    def __init__(self, listen: tuple[str, int], export: MetricsExport, freebind: bool = False) -> None:
        self.address_family = socket.AF_INET6 if ":" in listen[0] else socket.AF_INET
        self.export, self.freebind = export, freebind
        super().__init__(listen, _Handler)

    def server_bind(self) -> None:
        if self.freebind:
            self.socket.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
        super().server_bind()
