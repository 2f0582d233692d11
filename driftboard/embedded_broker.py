"""The embedded broker: kombu's file-system transport, made safe for several processes on one host.

kombu's own `_put` creates a message file under its final name and only then locks and writes it,
and its `_get` takes whatever file it lists (the lock is advisory and the move ignores it), so a busy
reader can take a message that is still empty and die on its JSON. Here a message is written under a
hidden name in the same folder, fsynced and renamed into place, so readers only ever list whole
messages; a reader claims one by renaming it into the processed folder on the same file system, so
exactly one reader gets it; and a file that still cannot be decoded is moved to the broken folder
with a logged error instead of killing the worker.

`register()` makes `filesystem://` mean this transport in every process that imports the Celery app.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from queue import Empty
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads
from kombu.utils.objects import cached_property

logger = logging.getLogger(__name__)

TRANSPORT_PATH = "driftboard.embedded_broker:Transport"


def register() -> None:
    """`filesystem://` URLs resolve to this transport (kombu looks the scheme up in its aliases)."""
    TRANSPORT_ALIASES["filesystem"] = TRANSPORT_PATH


def message_name(queue: str) -> str:
    """Oldest first when sorted; kombu's readers pick a queue's files by the `.{queue}.msg` ending."""
    return f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"


def write_whole(folder: str | Path, name: str, data: bytes) -> None:
    """`name` appears in `folder` only once it holds all of `data`, on disk.

    The temporary name starts with a dot and ends in `.tmp`: no reader's `.{queue}.msg` or `.exchange`
    filter matches it while it is written.
    """
    temporary = os.path.join(folder, f".{name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temporary, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, os.path.join(folder, name))
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise ChannelError(f"Cannot write {name!r} to the broker folder {folder!r}") from exc


class Channel(filesystem.Channel):
    def _put(self, queue: str, payload: dict[str, Any], **kwargs: Any) -> None:
        write_whole(self.data_folder_out, message_name(queue), str_to_bytes(dumps(payload)))

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str, queue: str) -> None:
        binding = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        self.change_table(exchange, lambda table: table if binding in table else [binding, *table])

    def _delete(self, queue: str, exchange: str, routing_key: str, pattern: str, *args: Any, **kwargs: Any) -> None:
        # The virtual channel's bookkeeping only; kombu's own override rewrites the table in place.
        super(filesystem.Channel, self)._delete(queue, exchange, routing_key, pattern, *args, **kwargs)
        binding = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        self.change_table(exchange, lambda table: [row for row in table if row != binding])

    def change_table(self, exchange: str, change: Callable[[list], list]) -> None:
        """Rewrite an exchange's bindings whole, one writer at a time: kombu truncates the file in place,
        so a process starting beside another could read an empty table and die on it."""
        file = self._exchange_file(exchange)
        self.control_folder.mkdir(parents=True, exist_ok=True)
        with open(self.control_folder / ".lock", "ab") as guard:
            filesystem.lock(guard, filesystem.LOCK_EX)
            try:
                table = self.get_table(exchange)
                changed = change(table)
                if changed != table:
                    write_whole(self.control_folder, file.name, str_to_bytes(dumps(changed)))
            finally:
                filesystem.unlock(guard)

    def _get(self, queue: str) -> dict[str, Any]:
        ending = f"{queue}.msg"
        for name in sorted(os.listdir(self.data_folder_in)):
            if name.partition(".")[2] != ending:
                continue
            claimed = os.path.join(self.claim_folder, name)
            try:
                os.rename(os.path.join(self.data_folder_in, name), claimed)
            except FileNotFoundError:
                continue  # another reader renamed it first: it is theirs
            except OSError as exc:
                raise ChannelError(f"Cannot claim {name!r} into {self.claim_folder!r}") from exc
            message = self.read_claimed(claimed, queue)
            if message is not None:
                return message
        raise Empty()

    def read_claimed(self, path: str, queue: str) -> dict[str, Any] | None:
        """The message in a claimed file, or None once an undecodable file is set aside."""
        try:
            with open(path, "rb") as file:
                raw = file.read()
        except OSError as exc:
            raise ChannelError(f"Cannot read {path!r} from the broker folder") from exc
        try:
            message = loads(bytes_to_str(raw))
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError both are
            self.set_aside(path, queue, f"{type(exc).__name__}: {exc}")
            return None
        if not isinstance(message, dict):
            self.set_aside(path, queue, f"a JSON {type(message).__name__}, not a message")
            return None
        if not self.store_processed:
            os.remove(path)
        return message

    def set_aside(self, path: str, queue: str, reason: str) -> None:
        broken = Path(self.broken_folder)
        broken.mkdir(parents=True, exist_ok=True)
        target = broken / Path(path).name
        os.replace(path, target)
        logger.error("Broker message on queue %r could not be decoded (%s); moved to %s", queue, reason, target)

    @cached_property
    def claim_folder(self) -> str:
        # kombu's default (the system temp folder) may be another file system, where a move is a copy
        # that two readers can both make; the processed folder sits beside the queue folder.
        return self.processed_folder

    @cached_property
    def broken_folder(self) -> str:
        default = Path(self.processed_folder).parent / "broken"
        return self.transport_options.get("broken_folder", str(default))


class Transport(filesystem.Transport):
    Channel = Channel
