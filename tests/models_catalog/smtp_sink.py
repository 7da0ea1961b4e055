"""A real SMTP server on loopback (aiosmtpd) that records or refuses what it is sent."""

import socket
import threading
from collections import Counter
from email import message_from_bytes

from aiosmtpd.controller import Controller


class SinkHandler:
    def __init__(self, *, refuse_first: int = 0, delay_seconds: float = 0.0):
        self.refuse_first = refuse_first
        self.delay_seconds = delay_seconds
        self.messages: list = []
        self.recipients: Counter[str] = Counter()
        self.attempts = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        import asyncio

        with self.lock:
            self.attempts += 1
            if self.attempts <= self.refuse_first:
                return "451 4.3.0 Try again later"
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        with self.lock:
            self.messages.append(message_from_bytes(envelope.content))
            self.recipients.update(envelope.rcpt_tos)
        return "250 OK"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_sink(handler: SinkHandler) -> Controller:
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    return controller
