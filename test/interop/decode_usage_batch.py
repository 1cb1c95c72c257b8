#!/usr/bin/env python3
"""A Python billing backend reading what billing-sdk publishes: decodes UsageBatch payloads with
classes protoc generated from usage.proto (Debian's python3-protobuf), run by
test/integration/batch-interop.test.ts with /usr/bin/python3.

  decode_usage_batch.py GEN_DIR PAYLOAD_FILE...

Prints one JSON line per record, in order: id, usage, module, model, producer, api_key_sha256,
occurred_at (RFC 3339) and metadata (as JSON).
"""
import json
import sys


def main(gen_dir, files):
    sys.path.insert(0, gen_dir)
    from billing.v1 import usage_pb2
    from google.protobuf import json_format

    for path in files:
        batch = usage_pb2.UsageBatch.FromString(open(path, "rb").read())
        for record in batch.records:
            print(
                json.dumps(
                    {
                        "id": record.id,
                        "usage": str(record.usage),
                        "module": record.module,
                        "model": record.model,
                        "producer": record.producer,
                        "api_key_sha256": record.api_key_sha256,
                        "occurred_at": record.occurred_at.ToJsonString(),
                        "metadata": json_format.MessageToDict(record.metadata),
                    },
                    ensure_ascii=False,
                    sort_keys=True,
                )
            )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
