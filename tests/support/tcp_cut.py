"""A TCP relay in front of a server whose connections a test can cut, and whose port it can close and reopen:
a real network outage for one client (e.g. a NATS subscriber) while the server and its other clients carry on.
It also keeps what clients sent (``sent``), for tests of the order a client writes its commands in."""

import asyncio
import contextlib
from urllib.parse import urlsplit


class TcpCut:
    """Relays 127.0.0.1:<port> to ``upstream_url``'s host and port; ``cut()`` drops every connection and refuses
    new ones until ``restore()``."""

    def __init__(self, upstream_url: str) -> None:
        parts = urlsplit(upstream_url)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 4222)
        self._scheme = parts.scheme or "nats"
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._refusing = False
        self.port = 0
        self.sent = bytearray()  # every byte relayed from clients to the server, in relay order

    @property
    def url(self) -> str:
        return f"{self._scheme}://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refusing:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, keep: bytearray | None) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    if keep is not None:
                        keep += data
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer, self.sent), pipe(up_reader, writer, None))
        self._writers -= {writer, up_writer}

    def cut(self) -> None:
        """Drop every relayed connection now; refuse new ones."""
        self._refusing = True
        for w in list(self._writers):
            w.close()

    def restore(self) -> None:
        self._refusing = False

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
