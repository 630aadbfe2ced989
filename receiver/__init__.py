"""The webhook receiver: Meta's handshake, signature check, durable archive, hand-off to workers.

`create_app(settings)` is the entry point; `archiver serve` runs it under uvicorn.
"""

from receiver.app import create_app

__all__ = ["create_app"]
