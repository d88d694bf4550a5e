"""TensorBoard event files written by dlc itself (backend-neutral, no TensorFlow import): the same tags from
the same history rows on both backends, so `tensorboard --logdir runs` shows any set of runs side by side.

The file format is TFRecord: for each record, the length (uint64 LE), its masked CRC32C, the serialized Event
protobuf, and the data's masked CRC32C.
"""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path

_POLY = 0x82F63B78
_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ _POLY if _c & 1 else _c >> 1
    _TABLE.append(_c)


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tag_for(key: str) -> str:
    """history key -> TensorBoard tag: loss/train, loss/val, accuracy/val, lr."""
    if key == "lr":
        return "lr"
    if key.startswith("val_"):
        return f"{key[4:]}/val"
    return f"{key}/train"


class EventWriter:
    def __init__(self, logdir: Path):
        from tensorboard.compat.proto import event_pb2

        self._pb = event_pb2
        logdir.mkdir(parents=True, exist_ok=True)
        self.path = logdir / f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.dlc"
        self._write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

    def _write(self, event) -> None:
        data = event.SerializeToString()
        header = struct.pack("<Q", len(data))
        with open(self.path, "ab") as fh:  # one append per event: a killed run leaves a readable file
            fh.write(header + struct.pack("<I", _masked(crc32c(header))) + data
                     + struct.pack("<I", _masked(crc32c(data))))

    def scalars(self, step: int, values: dict[str, float]) -> None:
        from tensorboard.compat.proto import summary_pb2

        vals = [summary_pb2.Summary.Value(tag=tag_for(k), simple_value=float(v)) for k, v in values.items()
                if k not in ("epoch", "time_s", "samples_per_s") and v is not None]
        self._write(self._pb.Event(wall_time=time.time(), step=step, summary=summary_pb2.Summary(value=vals)))

    def tagged(self, step: int, values: dict[str, float | None]) -> None:
        """Scalars under their own tags (the training evidence's `evidence/<layer>/<field>`); None is left
        out."""
        from tensorboard.compat.proto import summary_pb2

        vals = [summary_pb2.Summary.Value(tag=tag, simple_value=float(v)) for tag, v in values.items()
                if v is not None]
        self._write(self._pb.Event(wall_time=time.time(), step=step, summary=summary_pb2.Summary(value=vals)))

    def close(self) -> None:
        """Nothing is held open; kept so callers can treat this like other writers."""
