export {
  type AcceptanceStats,
  type BudgetedSequence,
  type BudgetInputs,
  BudgetOptionsError,
  type BudgetPolicyOptions,
  defaultBudgetPolicyOptions,
  draftBudget,
  expectedRemaining,
  NO_ACCEPTANCE,
  parseBudgetPolicyOptions,
  policyBudget,
  updateAcceptance,
} from "./budget.js";
export {
  type DecoderOptions,
  type SequencePlan,
  type SequenceStep,
  SpeculativeDecoder,
  type StepOptions,
  type StepOutput,
  type StepPlan,
  type StepResult,
} from "./decoder.js";
export {
  type CapDecision,
  DRAFT_CAPS,
  type DraftCapOptions,
  DraftCapTuner,
  defaultDraftCapOptions,
} from "./draft-cap.js";
export { DraftModelDrafter, type DraftModelOptions } from "./draft-model.js";
export {
  DRAFTER_KINDS,
  type Drafter,
  type DrafterKind,
  type DraftRequest,
  EMPTY_PROPOSAL,
  isDrafterKind,
  type Proposal,
  type SequenceView,
  type TargetFeatures,
} from "./drafter.js";
export { DEFAULT_EAGLE_FEATURE_WINDOW, EagleDrafter, type EagleDrafterOptions } from "./eagle-drafter.js";
export {
  type SpeculativeGenerateOptions,
  type SpeculativeOutput,
  type SpeculativeStats,
  speculativeGenerate,
} from "./generate.js";
export { defaultHybridDrafterOptions, HybridDrafter, type HybridDrafterOptions } from "./hybrid-drafter.js";
export {
  type CapturedFeatures,
  DecodeSequence,
  type Detokenizer,
  type FinishReason,
  type SequenceOptions,
  type SpeculationCounters,
  type StepRecord,
  StopCondition,
} from "./sequence.js";
export { SuffixOptionsError, SuffixTreeError } from "./suffix/errors.js";
export {
  DEFAULT_SUFFIX_FLEET_MAX_TOKENS,
  DEFAULT_SUFFIX_MAX_DEPTH,
  defaultSuffixDrafterOptions,
  parseSuffixDrafterOptions,
  SuffixDrafter,
  type SuffixDrafterOptions,
  type SuffixMatchInfo,
  type SuffixSource,
} from "./suffix/suffix-drafter.js";
export { SuffixTree, type SuffixTreeOptions, type SuffixTreeStats } from "./suffix/suffix-tree.js";
export {
  checkProposal,
  childrenOf,
  proposalDepth,
  truncateProposal,
  type Verdict,
  verifyGreedy,
  verifySampled,
} from "./verify.js";
