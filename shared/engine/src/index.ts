export type {
  Activation,
  Backend,
  BackendKind,
  BatchLayout,
  KvCacheSpec,
  KvStorage,
  PreparedBatch,
  RopeSpec,
  SequenceLayout,
  TokenIds,
  TopKRows,
  Weight,
} from "./backend.js";
export {
  CpuBackend,
  type CpuBackendOptions,
  CpuWeight,
  createCpuBackend,
} from "./backends/cpu/backend.js";
export { ReferenceBackend } from "./backends/reference/backend.js";
export { topKIds } from "./backends/reference/topk.js";
export {
  createWebGpuBackend,
  WebGpuBackend,
  type WebGpuBackendStats,
} from "./backends/webgpu/backend.js";
export type { PoolStats } from "./backends/webgpu/buffer-pool.js";
export {
  createWebGpuDevice,
  isSoftwareAdapter,
  RAISED_LIMITS,
  WANTED_FEATURES,
  type WebGpuAdapterSummary,
  type WebGpuDevice,
  type WebGpuFeature,
  type WebGpuOptions,
} from "./backends/webgpu/device.js";
export {
  checkFitsTarget,
  EAGLE_ARCHITECTURE,
  EAGLE_KEYS,
  EAGLE_TENSORS,
  type EagleConfig,
  type EagleConfigOptions,
  eagleConfigFor,
  eagleMetadata,
  expectedEagleTensors,
  parseEagleConfig,
} from "./eagle/config.js";
export {
  canTakeHostRows,
  type EagleForwardOutput,
  EagleHead,
  type EagleHeadOptions,
  type EagleInput,
  type HostRowsBackend,
} from "./eagle/head.js";
export { type RandomEagleOptions, randomEagleTensors, randomEagleWeights } from "./eagle/random.js";
export {
  type SpeculatorManifestFacts,
  sha256Hex,
  type ValidatedSpeculator,
  validateSpeculatorBlob,
} from "./eagle/validate.js";
export {
  KvCacheFullError,
  ModelFileError,
  SpeculatorBlobError,
  UnsupportedModelError,
  WEBGPU_SETUP_HINT,
  WebGpuDeviceError,
  WebGpuKernelError,
  WebGpuSoftwareAdapterError,
  WebGpuUnavailableError,
} from "./errors.js";
export {
  DEFAULT_BLOCK_SIZE,
  type GenerateOptions,
  type GenerateOutput,
  type GenerateRequest,
  type GenerateStats,
  generate,
} from "./generate.js";
export { type BatchEntry, buildLayout, treeDepths } from "./kv/layout.js";
export { blockBytes, blocksForBudget, KvManager } from "./kv/manager.js";
export {
  type Checkpoint,
  type CheckpointTensors,
  INDEX_FILE,
  loadCheckpoint,
  loadCheckpointTensors,
  type ShardIndex,
  SINGLE_FILE,
} from "./loader/checkpoint.js";
export {
  type GenerationDefaults,
  type LoadedModel,
  type LoadModelOptions,
  loadModelDir,
} from "./loader/hf-model.js";
export { type BundledPrompt, bundledPromptTokens, loadBundledPrompts } from "./loader/prompts.js";
export {
  encodeSafetensors,
  parseSafetensors,
  readSafetensors,
  type SafetensorsFile,
} from "./loader/safetensors.js";
export {
  ARCHITECTURES,
  expectedTensors,
  type Llama3RopeScaling,
  type ModelConfig,
  type ModelFamily,
  parseModelConfig,
} from "./model/config.js";
export { type ForwardOptions, type ForwardOutput, lastRows } from "./model/forward.js";
export { Model, type ModelSource } from "./model/model.js";
export { defaultInvFreq, llama3InvFreq, ropeSpec } from "./model/rope.js";
export type { LayerWeights, ModelWeights } from "./model/weights.js";
export { Rng, randomSeed } from "./sampling/rng.js";
export {
  argmax,
  checkSamplingParams,
  drawFrom,
  GREEDY,
  logSoftmax,
  logSumExp,
  type SamplingParams,
  sample,
  samplingProbs,
} from "./sampling/sample.js";
export {
  BACKEND_CHOICES,
  type BackendChoice,
  type BackendFactories,
  isBackendChoice,
  type SelectedBackend,
  selectBackend,
} from "./select-backend.js";
export {
  bf16ToF32,
  DTYPE_BYTES,
  type DType,
  f16ToF32,
  f32Tensor,
  f32ToBf16Bits,
  f32ToF16Bits,
  firstNonFiniteElement,
  type HostTensor,
  hostTensor,
  numel,
  toFloat32,
} from "./tensor.js";
export {
  type ChatMessage,
  type ChatRenderOptions,
  type ChatSpecialTokens,
  type ChatTemplate,
  chatTemplateFromText,
  loadChatTemplate,
  requireChatTemplate,
} from "./tokenizer/chat-template.js";
export type { StreamDecoder } from "./tokenizer/stream-decoder.js";
export {
  type DecodeOptions,
  type EncodeOptions,
  type SpecialTokenOverrides,
  Tokenizer,
} from "./tokenizer/tokenizer.js";
export {
  buildDraftVocab,
  DRAFT_VOCAB_KEY,
  draftVocabMetadata,
  parseDraftVocab,
} from "./train/draft-vocab.js";
export {
  EagleHeadTrainer,
  type EvaluateResult,
  type ExportOptions,
  TRAINER_CHECKPOINT_FORMAT,
  type TrainStepResult,
} from "./train/eagle-trainer.js";
export type { EagleTrainingExample } from "./train/examples.js";
export type { LinearKernelsName } from "./train/ops/linear-kernels.js";
export {
  DEFAULT_EAGLE_TRAINER_OPTIONS,
  defaultEagleTrainerOptions,
  type EagleTrainerOptions,
  parseEagleTrainerOptions,
} from "./train/options.js";
export {
  type TargetExampleOptions,
  type TrainerTarget,
  targetExample,
  trainerTarget,
} from "./train/target.js";
