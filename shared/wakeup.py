"""How every background loop waits for work: woken at once by a PostgreSQL NOTIFY on its
channel (or by `set()` from within the process), and at the latest after `poll_interval`,
so a missed notification only delays work, never loses it."""

import asyncio

import asyncpg


class Wakeup:
    def __init__(self, poll_interval: float) -> None:
        self.poll_interval = poll_interval
        self._event = asyncio.Event()

    def set(self, *_: object) -> None:
        self._event.set()

    async def listen(self, conn: asyncpg.Connection, channel: str) -> None:
        await conn.add_listener(channel, self.set)

    async def wait(self) -> bool:
        """Sleep until woken or the poll interval passes; True if woken. A wake-up that came
        while the loop was busy returns at once, so no notification is slept through."""
        try:
            await asyncio.wait_for(self._event.wait(), self.poll_interval)
            return True
        except TimeoutError:
            return False
        finally:
            self._event.clear()
