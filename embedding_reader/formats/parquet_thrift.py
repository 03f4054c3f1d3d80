"""A minimal reader of the thrift compact protocol, for parquet page headers: structs, lists and integers, bounded
in depth; anything it does not know raises ValueError."""

from typing import Any, Dict, List, Tuple


class NotFastPath(Exception):
    """This chunk or page is outside what the direct decoder handles: decode it with pyarrow."""


def varint(data: memoryview, position: int) -> Tuple[int, int]:
    result, shift = 0, 0
    while True:
        if position >= len(data) or shift > 63:
            raise NotFastPath("truncated or overlong varint")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7


def _zigzag(data: memoryview, position: int) -> Tuple[int, int]:
    value, position = varint(data, position)
    return (value >> 1) ^ -(value & 1), position


def parse_struct(data: memoryview, position: int, depth: int = 0) -> Tuple[Dict[int, Any], int]:
    """A compact-protocol struct as {field id: value}, and the position after it."""
    if depth > 8:
        raise NotFastPath("page header nested too deep")
    fields: Dict[int, Any] = {}
    field_id = 0
    while True:
        if position >= len(data):
            raise NotFastPath("truncated page header")
        byte = data[position]
        position += 1
        if byte == 0:
            return fields, position
        kind, delta = byte & 0x0F, byte >> 4
        if delta:
            field_id += delta
        else:
            field_id, position = _zigzag(data, position)
        if kind in (1, 2):
            fields[field_id] = kind == 1
        else:
            fields[field_id], position = _parse_value(data, position, kind, depth)


def _parse_value(data: memoryview, position: int, kind: int, depth: int) -> Tuple[Any, int]:
    """One compact-protocol value of the given type."""
    if kind == 3:
        if position >= len(data):
            raise NotFastPath("truncated page header")
        return data[position], position + 1
    if kind in (4, 5, 6):
        return _zigzag(data, position)
    if kind == 7:
        return None, position + 8
    if kind == 8:
        length, position = varint(data, position)
        return None, position + length
    if kind in (9, 10):
        return _parse_list(data, position, depth)
    if kind == 12:
        return parse_struct(data, position, depth + 1)
    raise NotFastPath(f"thrift type {kind} in a page header")


def _parse_list(data: memoryview, position: int, depth: int) -> Tuple[List[Any], int]:
    """A compact-protocol list or set: a size-and-type byte (and a varint size if large), then the items."""
    if position >= len(data):
        raise NotFastPath("truncated page header")
    size, element = data[position] >> 4, data[position] & 0x0F
    position += 1
    if size == 15:
        size, position = varint(data, position)
    items = []
    for _ in range(size):
        if position >= len(data):
            raise NotFastPath("truncated page header")
        if element in (1, 2):
            item, position = data[position] == 1, position + 1
        else:
            item, position = _parse_value(data, position, element, depth + 1)
        items.append(item)
    return items, position
