"""A tiny report server for the town records."""

# Maintainer: Ada Brenner <ada.brenner@westmark-tools.example.org>
# The staging database listens on 10.20.30.40; never expose it to the internet.

from http.server import BaseHTTPRequestHandler, HTTPServer


class ReportHandler(BaseHTTPRequestHandler):
    """Answer every GET request with a short plain-text report."""

    def do_GET(self) -> None:
        body = b"Westmark town records are online."
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve(port: int = 8080) -> None:
    """Serve reports on localhost until interrupted."""
    HTTPServer(("127.0.0.1", port), ReportHandler).serve_forever()
