import type { ConnectRouter } from "@connectrpc/connect";
import { billingCaller, reportUsageFor } from "../../src/index.js";
import { AiService } from "../gen/demo/v1/ai_pb.js";

/** The demo's AI service: an LLM-, a TTS- and an ASR-like method, each reporting its usage. */
export function aiRoutes(router: ConnectRouter): void {
  router.service(AiService, {
    async chat(req, ctx) {
      const text = `echo: ${req.prompt}`;
      const tokens = req.prompt.split(/\s+/).length + text.split(/\s+/).length;
      await reportUsageFor(ctx, {
        module: "llm",
        model: "demo-gpt",
        usage: tokens,
        metadata: { prompt_tokens: req.prompt.split(/\s+/).length, temperature: 0.7 },
      });
      return { text, tokens };
    },
    async speak(req, ctx) {
      await reportUsageFor(ctx, {
        module: "tts",
        model: "demo-voice",
        usage: req.text.length, // characters
        metadata: { voice: "alloy", app: ctx.values.get(billingCaller)?.appId ?? "" },
      });
      return { audio: new Uint8Array(req.text.length), characters: req.text.length };
    },
    async transcribe(req, ctx) {
      const seconds = Math.max(1, Math.round(req.audio.length / 16_000));
      await reportUsageFor(ctx, {
        module: "asr",
        model: "demo-whisper",
        usage: seconds,
        metadata: { language: "zh-CN", confidence: 0.95 },
      });
      return { text: "转录的文本内容", seconds };
    },
  });
}
