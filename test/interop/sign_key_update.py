#!/usr/bin/env python3
"""A Python billing backend signing its key list: the README's example, run by
test/integration/key-signature-interop.test.ts with /usr/bin/python3, python3-cryptography
(an Ed25519 implementation independent of Node's) and classes protoc generated from usage.proto.

  sign_key_update.py sign PRIVATE.pem SIGNER AUDIENCE GEN_DIR RAW_KEY...  > signed.bin
  sign_key_update.py verify PUBLIC.pem GEN_DIR                  < signed.bin
"""
import hashlib
import sys
import time

from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key


def sign(private_pem, signer, audience, raw_keys):
    from billing.v1 import usage_pb2

    private_key = load_pem_private_key(open(private_pem, "rb").read(), password=None)
    # The audience: the deployment the update is for (the services' keyUpdateAudience).
    update = usage_pb2.KeyUpdate(
        snapshot=True, version=time.time_ns() // 1_000_000, audience=audience
    )
    update.sent_at.GetCurrentTime()
    for raw in raw_keys:
        update.keys.add(
            api_key_sha256=hashlib.sha256(raw.encode()).hexdigest(),
            app_id="py-app",
            state=usage_pb2.KEY_STATE_ACTIVE,
        )
    key_update = update.SerializeToString()  # the exact bytes that are signed
    signed = usage_pb2.SignedKeyUpdate(
        key_update=key_update, signature=private_key.sign(key_update), signer=signer
    )
    sys.stdout.buffer.write(signed.SerializeToString())


def verify(public_pem):
    from billing.v1 import usage_pb2

    signed = usage_pb2.SignedKeyUpdate.FromString(sys.stdin.buffer.read())
    public_key = load_pem_public_key(open(public_pem, "rb").read())
    public_key.verify(signed.signature, signed.key_update)  # raises InvalidSignature
    update = usage_pb2.KeyUpdate.FromString(signed.key_update)
    print(f"verified signer={signed.signer} version={update.version} keys={len(update.keys)}")


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "sign":
        sys.path.insert(0, sys.argv[5])
        sign(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[6:])
    else:
        sys.path.insert(0, sys.argv[3])
        verify(sys.argv[2])
