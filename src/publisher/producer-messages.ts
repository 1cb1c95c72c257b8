import { create, toBinary } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import {
  HeartbeatSchema,
  KeyListRequestSchema,
  KeyUpdateRefusalsSchema,
  type ProducerState,
} from "../../gen/billing/v1/usage_pb.js";
import type { KeyUpdateRefusals } from "../keys/key-update-refusal.js";

/** The counters a heartbeat carries (totals since the instance started). */
export interface HeartbeatCounters {
  queued: number;
  inFlight: number;
  published: number;
  failed: number;
  rejected: number;
  /** Records answered PUBACK 0x10 (no subscriber), each time. */
  heldNoSubscriber: number;
  reconnects: number;
  keyUpdates: number;
  keyUpdatesRefused: KeyUpdateRefusals;
  /** The key list's version, decimal. */
  keysVersion: string;
}

function refusals(r: KeyUpdateRefusals) {
  return create(KeyUpdateRefusalsSchema, {
    missingSignature: BigInt(r.missingSignature),
    unknownSigner: BigInt(r.unknownSigner),
    badSignature: BigInt(r.badSignature),
    undecodable: BigInt(r.undecodable),
    invalid: BigInt(r.invalid),
    replayed: BigInt(r.replayed),
    duplicate: BigInt(r.duplicate),
    tooLarge: BigInt(r.tooLarge),
    wrongAudience: BigInt(r.wrongAudience),
  });
}

/** An encoded `Heartbeat` of `producer`, sent now, in `state`. */
export function heartbeatPayload(
  producer: string,
  state: ProducerState,
  counters?: HeartbeatCounters,
): Buffer {
  const c = counters;
  const message = create(HeartbeatSchema, {
    producer,
    sentAt: timestampNow(),
    state,
    ...(c === undefined
      ? {}
      : {
          queued: BigInt(c.queued),
          inFlight: BigInt(c.inFlight),
          published: BigInt(c.published),
          failed: BigInt(c.failed),
          rejected: BigInt(c.rejected),
          heldNoSubscriber: BigInt(c.heldNoSubscriber),
          reconnects: BigInt(c.reconnects),
          keyUpdatesApplied: BigInt(c.keyUpdates),
          keyUpdatesRefused: refusals(c.keyUpdatesRefused),
          keyListVersion: BigInt(c.keysVersion),
        }),
  });
  return Buffer.from(toBinary(HeartbeatSchema, message));
}

/** An encoded `KeyListRequest` of `producer`, sent now. */
export function keyListRequestPayload(producer: string): Buffer {
  return Buffer.from(
    toBinary(
      KeyListRequestSchema,
      create(KeyListRequestSchema, { producer, sentAt: timestampNow() }),
    ),
  );
}
