"""Chat-format SFT data: JSONL, JSON or parquet rows with `messages` = [{role, content}, ...] (system / user /
assistant), as `python -m cluster.build_prm_data` writes them. Malformed rows are counted with their reason."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

ROLES = ("system", "user", "assistant")


def check_messages(messages) -> str | None:
    """None for a usable conversation, else the reason it is not."""
    if not isinstance(messages, list) or not messages:
        return "messages is not a non-empty list"
    for m in messages:
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            return "a message without a system/user/assistant role and string content"
    if not any(m["role"] == "assistant" for m in messages):
        return "no assistant turn"
    return None


def load_conversations(path: str | Path) -> tuple[list[list[dict]], Counter]:
    """(conversations, malformed reasons -> count)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"chat data {path}: no such file")
    bad: Counter = Counter()
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq
        try:
            records = pq.read_table(path).to_pylist()
        except Exception as e:  # noqa: BLE001 - any reader failure is the file's fault: name it
            raise ValueError(f"chat data {path}: not a readable parquet file ({type(e).__name__}: {e})") from None
    elif path.suffix == ".json":
        try:
            records = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"chat data {path}: not valid JSON ({e})") from None
        if not isinstance(records, list):
            raise ValueError(f"chat data {path}: a JSON file must hold a list of rows")
    else:
        records = []
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                bad["not a JSON line"] += 1
    out = []
    for r in records:
        reason = "row is not an object" if not isinstance(r, dict) else check_messages(r.get("messages"))
        if reason:
            bad[reason] += 1
        else:
            out.append(r["messages"])
    return out, bad
