"""``python -m sandbox.broker``: serve the broker on the configured loopback address and port."""

from __future__ import annotations

import uvicorn

from sandbox.broker.app import create_app
from sandbox.config import load_settings
from sandbox.http_limits import MAX_HEADER_BYTES
from sandbox.log import configure_logging


def main() -> None:
    settings = load_settings()
    configure_logging()
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.broker_port,
        log_config=None,
        access_log=False,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,  # the parser's own bound; HeaderSizeLimit is exact
    )


if __name__ == "__main__":
    main()
