// The speculator-trainer's API as promises, each call with the admin token (when given) and a deadline.
import type { CallOptions, ClientUnaryCall, Metadata, ServiceError } from "@grpc/grpc-js";
import {
  type GetTrainerStatusResponse,
  type GetTrainingConfigResponse,
  type GetVersionResponse,
  type ListVersionsResponse,
  type PauseTrainingResponse,
  type PinVersionResponse,
  type PromoteVersionResponse,
  type ResumeTrainingResponse,
  type RollbackVersionResponse,
  SpeculatorRole,
  SpeculatorTrainerClient,
  type TrainingConfig,
  type UnpinVersionResponse,
  type UpdateTrainingConfigResponse,
  type VersionStatus,
} from "@specloop/proto";
import { callParts, channelCredentials, type TrainerOptions } from "./options.js";

type Unary<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: (err: ServiceError | null, response: Res) => void,
) => ClientUnaryCall;

export class TrainerApi {
  private readonly client: SpeculatorTrainerClient;

  constructor(private readonly opts: TrainerOptions) {
    this.client = new SpeculatorTrainerClient(opts.trainer, channelCredentials(opts));
  }

  get address(): string {
    return this.opts.trainer;
  }

  close(): void {
    this.client.close();
  }

  private call<Req, Res>(method: Unary<Req, Res>, request: Req): Promise<Res> {
    const { metadata, options } = callParts(this.opts);
    return new Promise((resolve, reject) => {
      method.call(this.client, request, metadata, options, (err, res) => (err ? reject(err) : resolve(res)));
    });
  }

  status(): Promise<GetTrainerStatusResponse> {
    return this.call(this.client.getTrainerStatus, {});
  }

  listVersions(statuses: VersionStatus[], limit: number): Promise<ListVersionsResponse> {
    return this.call(this.client.listVersions, { statuses, limit });
  }

  getVersion(versionId: string): Promise<GetVersionResponse> {
    return this.call(this.client.getVersion, { versionId });
  }

  promote(versionId: string, canary: boolean, reason: string): Promise<PromoteVersionResponse> {
    const role = canary ? SpeculatorRole.SPECULATOR_ROLE_CANARY : SpeculatorRole.SPECULATOR_ROLE_LIVE;
    return this.call(this.client.promoteVersion, { versionId, role, actor: "", reason });
  }

  rollback(reason: string): Promise<RollbackVersionResponse> {
    return this.call(this.client.rollbackVersion, { actor: "", reason });
  }

  pin(reason: string): Promise<PinVersionResponse> {
    return this.call(this.client.pinVersion, { actor: "", reason });
  }

  unpin(): Promise<UnpinVersionResponse> {
    return this.call(this.client.unpinVersion, { actor: "" });
  }

  pause(): Promise<PauseTrainingResponse> {
    return this.call(this.client.pauseTraining, { actor: "" });
  }

  resume(): Promise<ResumeTrainingResponse> {
    return this.call(this.client.resumeTraining, { actor: "" });
  }

  getConfig(): Promise<GetTrainingConfigResponse> {
    return this.call(this.client.getTrainingConfig, {});
  }

  updateConfig(config: TrainingConfig, updateFields: string[]): Promise<UpdateTrainingConfigResponse> {
    return this.call(this.client.updateTrainingConfig, { config, updateFields });
  }
}
