"""Reading bags: rosbag2 directories (MCAP or sqlite3), single ``.mcap`` files, damaged MCAP files.

Intact bags are read with ``rosbags``: a directory with ``metadata.yaml``, or a ``.mcap`` file (or
a directory holding ``.mcap`` files) without one, through rosbags' MCAP storage reader. An MCAP
file that rosbags cannot open — cut short (no footer: "File end magic is invalid"), a broken
summary — is read with the ``mcap`` library's :class:`~mcap.stream_reader.StreamReader` from its
start instead: every record before the damage (schemas, channels, whole chunks and their
messages, CRCs checked) is kept, and reading ends at the first record that cannot be read. The
message counts of ``metadata.yaml`` (when there is one) still say what the bag held, so the
caller can count what was lost.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

import yaml
from rosbags.rosbag2 import Reader
from rosbags.rosbag2.storage_mcap import McapReader

from depth_diffusion_ros.tools.bag_types import TYPESTORE, BagError

#: topic -> (message type, message count)
TopicCounts = dict[str, tuple[str, int]]


@dataclass
class BagMessage:
    """One message read from a bag: topic, type name, log time (ns) and CDR bytes."""

    topic: str
    msgtype: str
    timestamp: int
    rawdata: bytes

    def decode(self) -> Any:
        """Deserialize into a rosbags message object (BagError for an unknown type or bad data)."""
        return deserialize(self.rawdata, self.msgtype, self.topic)


def deserialize(rawdata: bytes, msgtype: str, topic: str = "?") -> Any:
    """CDR bytes -> rosbags message; BagError naming the topic for unknown types or bad bytes."""
    if msgtype not in TYPESTORE.fielddefs:
        raise BagError(f"topic {topic} has unknown message type {msgtype!r}")
    try:
        return TYPESTORE.deserialize_cdr(rawdata, msgtype)
    except Exception as exc:  # rosbags raises assorted errors for truncated CDR
        raise BagError(f"cannot decode a {msgtype} message on {topic}: {exc}") from exc


def _bag_files(path: Path) -> tuple[list[Path], bool]:
    """The storage files of a bag and whether it has a metadata.yaml; BagError when it is none."""
    if not path.exists():
        raise BagError(f"bag not found: {path}")
    if path.is_file():
        if path.suffix != ".mcap":
            raise BagError(f"{path} is a file; pass a rosbag2 directory (with metadata.yaml) or a .mcap file")
        return [path], False
    if (path / "metadata.yaml").exists():
        return sorted(path.glob("*.mcap")), True
    files = sorted(path.glob("*.mcap"))
    if not files:
        raise BagError(f"{path} is not a rosbag2 directory (no metadata.yaml) and holds no .mcap file")
    return files, False


def declared_counts(bag_dir: Path) -> Optional[TopicCounts]:
    """Topic -> (type, message count) from a rosbag2 ``metadata.yaml`` (None if absent or unreadable)."""
    try:
        info = yaml.safe_load((bag_dir / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        return {t["topic_metadata"]["name"]: (t["topic_metadata"]["type"], int(t["message_count"]))
                for t in info["topics_with_message_count"]}
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError):
        return None


class _RosbagsSource:
    """An intact bag through rosbags: its Reader (with metadata.yaml) or its MCAP storage reader."""

    def __init__(self, path: Path, files: list[Path], has_metadata: bool) -> None:
        self.readers: list[Any] = [Reader(path)] if has_metadata else [McapReader(f) for f in files]
        try:
            for r in self.readers:
                r.open()
        except BaseException:
            self.close()
            raise
        self.topics: TopicCounts = {}
        for r in self.readers:
            for conn in r.connections:
                msgtype, count = self.topics.get(conn.topic, (conn.msgtype, 0))
                self.topics[conn.topic] = (msgtype, count + conn.msgcount)
        self.message_count = sum(int(r.message_count if has_metadata else r.metadata.message_count)
                                 for r in self.readers)

    def messages(self, wanted: Optional[set[str]]) -> Iterator[BagMessage]:
        for r in self.readers:
            conns = [c for c in r.connections if wanted is None or c.topic in wanted]
            if conns:
                for conn, timestamp, rawdata in r.messages(conns):
                    yield BagMessage(conn.topic, conn.msgtype, int(timestamp), bytes(rawdata))

    def close(self) -> None:
        for r in self.readers:
            try:
                r.close()
            except Exception:  # already closed or never opened
                pass


class _StreamSource:
    """A damaged MCAP bag through the mcap library's stream reader, up to the first damage.

    ``damage`` names the first record that could not be read (None: every file read to its end).
    """

    def __init__(self, files: list[Path]) -> None:
        self.files = files
        self.damage: Optional[str] = None
        self.topics: TopicCounts = {}
        self.message_count = 0
        for msg in self._stream(None):
            msgtype, count = self.topics.get(msg.topic, (msg.msgtype, 0))
            self.topics[msg.topic] = (msgtype, count + 1)
            self.message_count += 1

    def _stream(self, wanted: Optional[set[str]]) -> Iterator[BagMessage]:
        from mcap.records import Channel, Message, Schema
        from mcap.stream_reader import StreamReader

        for path in self.files:
            schemas: dict[int, str] = {}
            channels: dict[int, tuple[str, str]] = {}
            try:
                with path.open("rb") as f:
                    reader = StreamReader(f, validate_crcs=True, record_size_limit=max(1, path.stat().st_size))
                    for record in reader.records:
                        if isinstance(record, Schema):
                            schemas[record.id] = record.name
                        elif isinstance(record, Channel):
                            channels[record.id] = (record.topic, schemas.get(record.schema_id, ""))
                        elif isinstance(record, Message) and record.channel_id in channels:
                            topic, msgtype = channels[record.channel_id]
                            if wanted is None or topic in wanted:
                                yield BagMessage(topic, msgtype, int(record.log_time), bytes(record.data))
            except Exception as exc:  # noqa: BLE001 - any unreadable record is the damage
                self.damage = f"{path.name}: {type(exc).__name__}: {exc}".rstrip(": ")
                return

    def messages(self, wanted: Optional[set[str]]) -> Iterator[BagMessage]:
        yield from self._stream(wanted)
        if self.damage:
            raise BagError(self.damage)

    def close(self) -> None:
        pass


class BagReader:
    """Read a bag (see the module docstring) with clear errors.

    Attributes:
        path: the bag directory or ``.mcap`` file.
        topics: topic -> (msgtype, message count): the bag's own count (metadata.yaml, the MCAP
            summary) where known, else the number of readable messages.
        counts_known: whether ``topics`` holds the bag's own counts (so losses can be counted).
        salvaged: None for an intact bag; else why rosbags could not open it (it is being read
            up to its damage with the mcap stream reader).

    ``messages()`` yields :class:`BagMessage` (log-time order for intact bags, file order for a
    salvaged one); a truncated or corrupt file raises BagError naming the bag and how many
    messages were read before the failure.

    Raises:
        BagError: no such bag, not a bag, or nothing readable in it.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        files, has_metadata = _bag_files(self.path)
        self.salvaged: Optional[str] = None
        try:
            self._source: Any = _RosbagsSource(self.path, files, has_metadata)
            self.topics, self.counts_known = dict(self._source.topics), True
            return
        except Exception as exc:  # noqa: BLE001 - rosbags raises assorted errors for damaged files
            error = f"cannot open bag {self.path}: {exc}"
            if not files or any(not f.is_file() for f in files):
                raise BagError(error) from exc
            self.salvaged = str(exc)
        self._source = _StreamSource(files)
        if not self._source.message_count:
            raise BagError(f"{error}; the mcap stream reader found no readable message either "
                           f"({self._source.damage or 'empty'})")
        declared = declared_counts(self.path) if has_metadata else None
        self.counts_known = declared is not None
        self.topics = dict(declared) if declared is not None else dict(self._source.topics)

    def __enter__(self) -> "BagReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._source.close()

    @property
    def message_count(self) -> int:
        """Messages the bag says it holds (readable ones for a salvaged bag)."""
        return int(self._source.message_count)

    def messages(self, topics: Optional[Iterable[str]] = None) -> Iterator[BagMessage]:
        """Messages of ``topics`` (all when None)."""
        wanted = set(topics) if topics is not None else None
        n = 0
        try:
            for msg in self._source.messages(wanted):
                n += 1
                yield msg
        except Exception as exc:
            raise BagError(
                f"bag {self.path} is truncated or corrupt: reading failed after {n} messages ({exc})"
            ) from exc
