import { type ChildProcess, spawn } from "node:child_process";
import { usageBatchRecordBytes } from "../../src/protocol/usage-batch.js";
import type { Mosquitto } from "../helpers/mosquitto.js";

/** A mosquitto_sub child over TLS counting the records it receives. */
export async function countingSubscriber(m: Mosquitto, caFile: string) {
  const proc: ChildProcess = spawn(
    "mosquitto_sub",
    [
      "-h",
      "127.0.0.1",
      "-p",
      String(m.tlsPort),
      "--cafile",
      caFile,
      "-V",
      "mqttv5",
      "-q",
      "1",
    ].concat(["-t", "billing/report", "-F", "%x", "-i", `bench-sub-${process.pid}`]),
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  let records = 0;
  let rest = "";
  proc.stdout?.setEncoding("latin1").on("data", (chunk: string) => {
    const lines = (rest + chunk).split("\n");
    rest = lines.pop() ?? "";
    for (const l of lines) records += usageBatchRecordBytes(Buffer.from(l, "hex")).length;
  });
  return {
    count: () => records,
    reset: () => {
      records = 0;
    },
    stop: () => proc.kill(),
  };
}
