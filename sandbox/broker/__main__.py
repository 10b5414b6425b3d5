"""``python -m sandbox.broker``: serve the broker on the configured loopback address and port."""

from __future__ import annotations

import uvicorn

from sandbox.broker.app import create_app
from sandbox.config import load_settings
from sandbox.log import configure_logging


def main() -> None:
    settings = load_settings()
    configure_logging()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.broker_port, log_config=None, access_log=False)


if __name__ == "__main__":
    main()
