// The V1 tournament on its own (no gRPC, no store): `@specloop/verifier/tournament`, for the service and
// the simulation benchmark.
export { DEFAULT_BT_RIDGE, fitBradleyTerry, type Outcome, rankByScore, sigmoid } from "./bradley-terry.js";
export { Rng } from "./rng.js";
export {
  type Comparison,
  DEFAULT_TOURNAMENT_SEED,
  type PairJudge,
  type Phase,
  runTournament,
  SWISS_ROUND_DIVISOR,
  swissRound,
  type TournamentOptions,
  type TournamentResult,
} from "./tournament.js";
