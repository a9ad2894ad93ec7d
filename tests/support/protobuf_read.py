"""Reads events-topic records with Google's protobuf library and the schema file alone, as a
consumer outside bluetick would: compiles schemas/event.v2.proto with protoc (grpcio-tools),
then decodes each record (hex, one per line on stdin: a 0x00 byte, then varint-delimited
Event messages) and prints its events as JSON, one list per record, with bytes as hex and the
kind as its lower-case name."""

import importlib
import json
import os
import sys
import tempfile

from google.protobuf.internal.decoder import _DecodeVarint32
from grpc_tools import protoc

schema_dir = os.path.join(os.path.dirname(__file__), "../../schemas")
out = tempfile.mkdtemp()
if protoc.main(["protoc", f"-I{schema_dir}", f"--python_out={out}", "event.v2.proto"]) != 0:
    sys.exit("protoc refused schemas/event.v2.proto")
sys.path.insert(0, out)
# protoc names the module after the file, its dots as packages: event/v2_pb2.py.
schema = importlib.import_module("event.v2_pb2")


def as_json(msg):
    fields = {}
    for field, value in msg.ListFields():
        if field.type == field.TYPE_BYTES:
            value = value.hex()
        elif field.type == field.TYPE_ENUM:
            value = field.enum_type.values_by_number[value].name.lower()
        fields[field.name] = value
    return fields


for line in sys.stdin:
    record = bytes.fromhex(line.strip())
    if record[:1] != b"\x00":
        sys.exit("not a protobuf record")
    events, at = [], 1
    while at < len(record):
        size, at = _DecodeVarint32(record, at)
        event = schema.Event()
        event.ParseFromString(record[at:at + size])
        events.append(as_json(event))
        at += size
    print(json.dumps(events))
