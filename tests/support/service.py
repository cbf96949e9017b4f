"""A base for the test services (moto, the fault proxy, the emulator, the operator process):
``with Service() as running:`` starts it and always stops it, whatever the test did."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Service:
    """Something a test starts and must stop; subclasses implement ``start`` and ``stop``."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> object:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
