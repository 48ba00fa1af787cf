"""The proxy listeners' HTTP/1.1 server, on ``asyncio.Protocol`` and llhttp (httptools)."""
