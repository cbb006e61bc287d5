// `specloop generate --server ADDR (--prompt TEXT | --tokens 1,2,3)`: one request to an inference node's
// Generate, the text printed as it streams; --json prints the whole answer (ids, finish reason, usage and
// the node's speculation stats) once it is done.
import { credentials, type ServiceError } from "@grpc/grpc-js";
import {
  drafterToProto,
  FinishReason,
  GenerateRequest,
  type GenerateResponse,
  InferenceClient,
  type SpeculationStats,
  type Usage,
} from "@specloop/proto";
import type { DrafterKind } from "@specloop/speculation";

export interface RemoteGenerateOptions {
  server: string;
  prompt?: string;
  tokens?: number[];
  maxTokens: number;
  temperature: number;
  seed?: number;
  drafter: DrafterKind | "auto";
  domain: string;
  timeoutMs: number;
}

export interface RemoteGenerateResult {
  request_id: string;
  text: string;
  output_ids: number[];
  finish_reason: string;
  usage: Usage | undefined;
  stats: SpeculationStats | undefined;
}

/**
 * Streams one Generate call; `onText` sees each chunk's text, `onChunk` each chunk whole. Rejects with the
 * call's gRPC error.
 */
export function remoteGenerate(
  opts: RemoteGenerateOptions,
  onText: (text: string) => void = () => undefined,
  onChunk: (chunk: GenerateResponse) => void = () => undefined,
): Promise<RemoteGenerateResult> {
  if ((opts.prompt === undefined) === (opts.tokens === undefined)) {
    return Promise.reject(new RangeError("give exactly one of --prompt and --tokens"));
  }
  const client = new InferenceClient(opts.server, credentials.createInsecure());
  const request = GenerateRequest.fromPartial({
    prompt: opts.prompt ?? "",
    promptTokenIds: opts.tokens ?? [],
    maxTokens: opts.maxTokens,
    sampling: {
      temperature: opts.temperature,
      ...(opts.seed !== undefined ? { seed: String(opts.seed) } : {}),
    },
    speculation: { drafter: drafterToProto(opts.drafter) },
    domain: opts.domain,
  });
  return new Promise((resolve, reject) => {
    const out: RemoteGenerateResult = {
      request_id: "",
      text: "",
      output_ids: [],
      finish_reason: "",
      usage: undefined,
      stats: undefined,
    };
    const call = client.generate(request, { deadline: new Date(Date.now() + opts.timeoutMs) });
    call.on("data", (m: GenerateResponse) => {
      onChunk(m);
      out.request_id = m.requestId;
      out.text += m.text;
      out.output_ids.push(...m.tokenIds);
      if (m.text !== "") onText(m.text);
      if (m.finishReason !== FinishReason.FINISH_REASON_UNSPECIFIED) {
        out.finish_reason = m.finishReason.replace("FINISH_REASON_", "").toLowerCase();
        out.usage = m.usage;
        out.stats = m.stats;
      }
    });
    call.on("error", (err: ServiceError) => {
      client.close();
      reject(err);
    });
    call.on("end", () => {
      client.close();
      resolve(out);
    });
  });
}
