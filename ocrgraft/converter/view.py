"""`ocrgraft view`: every stage of a conversion in Netron from one local port. The index page lists the
stages; `/m/<file>/` is Netron's own web app (the files of the installed `netron` package) opened on
that file, which it reads from `/m/<file>/data/<file>`. A taken port is not an error: the next free one
is used, and the address printed.
"""

from __future__ import annotations

import html
import http.server
import mimetypes
import re
import socket
import threading
import urllib.parse
from pathlib import Path

from ocrgraft.core.errors import OcrgraftError


def netron_dir() -> Path:
    try:
        import netron
    except ImportError:
        raise OcrgraftError(
            "netron is not installed: pip install 'ocrgraft[view]' (make view installs it)"
        ) from None
    return Path(netron.__file__).resolve().parent


def free_port(host: str, port: int, tries: int = 50) -> int:
    """`port`, or the next one that can be bound."""
    for candidate in range(port, port + tries):
        with socket.socket() as s:
            try:
                s.bind((host, candidate))
                return candidate
            except OSError:
                continue
    raise OcrgraftError(f"no free port in {port}..{port + tries - 1} on {host}")


def make_handler(files: dict[str, Path], app: Path, title: str):
    """A request handler serving the index, Netron's app per file, and the files (their external data
    files beside them too)."""
    found = re.search(r'<meta name="version" content="([^"]*)"', (app / "index.html").read_text("utf-8"))
    version = found.group(1) if found else ""

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *_):  # quiet: the console shows the addresses once
            pass

        def do_GET(self):
            path = urllib.parse.unquote(urllib.parse.urlparse(self.path).path)
            if path in ("/", "/index.html"):
                return self._send(self._index().encode(), "text/html; charset=utf-8")
            match = re.fullmatch(r"/m/([^/]+)/(.*)", path)
            if not match or match.group(1) not in files:
                return self.send_error(404)
            name, rest = match.groups()
            if rest.startswith("data/"):  # the model, or an external-data file next to it
                target = files[name].parent / rest[len("data/") :]
                if target.parent != files[name].parent or not target.is_file():
                    return self.send_error(404)
                return self._send(target.read_bytes(), "application/octet-stream")
            static = (app / (rest or "index.html")).resolve()
            if static.parent != app and app not in static.parents or not static.is_file():
                return self.send_error(404)
            body = static.read_bytes()
            if static.name == "index.html":  # Netron's server does the same: which file to open
                meta = (
                    f'<meta name="type" content="Python"><meta name="version" content="{version}">'
                    f'<meta name="file" content="/m/{name}/data/{files[name].name}">'
                    f'<meta name="name" content="{name}">'
                )
                body = re.sub(rb'<meta name="version" content=".*">', meta.encode(), body, count=1)
            kind = mimetypes.guess_type(static.name)[0] or "application/octet-stream"
            return self._send(body, kind)

        def _index(self) -> str:
            rows = "".join(
                f'<li><a href="/m/{urllib.parse.quote(n)}/">{html.escape(n)}</a></li>' for n in files
            )
            return (
                f"<!doctype html><title>{html.escape(title)}</title><h1>{html.escape(title)}</h1>"
                f"<p>Each link opens that stage in Netron (on first use Netron may ask for consent to its "
                f"terms once).</p><ol>{rows}</ol>"
            )

        def _send(self, body: bytes, kind: str):
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def serve(files: list[Path], title: str, host: str, port: int) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Start serving in a background thread; the server and its address."""
    app = netron_dir()
    by_name = {f.name: f for f in files}
    port = free_port(host, port)
    server = http.server.ThreadingHTTPServer((host, port), make_handler(by_name, app, title))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://{host}:{port}/"
