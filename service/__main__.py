"""`python -m service`: the jobs API on $BATCHFLOWS_SERVICE_HOST:$BATCHFLOWS_SERVICE_PORT."""

from __future__ import annotations

import uvicorn

from service.app import create_app
from service.settings import load_settings


def main() -> None:
    settings = load_settings()
    # No access log: download links carry their signature in the query string.
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
