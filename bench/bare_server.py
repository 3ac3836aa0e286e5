"""The baseline: a bare aiohttp handler that reads the body and answers 200 on the webhook routes the
benchmark posts to (`python -m bench.bare_server PORT PATH...`)."""

from __future__ import annotations

import sys

from aiohttp import web


async def handle(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(text="OK")


if __name__ == "__main__":
    app = web.Application()
    for path in sys.argv[2:]:
        app.router.add_post(path, handle)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
