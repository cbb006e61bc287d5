// The one mapping between the wire's Drafter enum and the drafter names the code, the CLI and configs use
// ("none", "suffix", "eagle", "draft-model", "hybrid", "auto"). Hand-written beside the generated code: it is part of
// the contract's TypeScript face, and both the node and the CLI need it.
import { Drafter } from "./gen/specloop/v1/common.js";

export const DRAFTER_NAMES = ["none", "suffix", "eagle", "draft-model", "hybrid"] as const;
export type DrafterName = (typeof DRAFTER_NAMES)[number];

const TO_PROTO: Record<DrafterName | "auto", Drafter> = {
  auto: Drafter.DRAFTER_AUTO,
  none: Drafter.DRAFTER_NONE,
  suffix: Drafter.DRAFTER_SUFFIX,
  eagle: Drafter.DRAFTER_EAGLE,
  "draft-model": Drafter.DRAFTER_DRAFT_MODEL,
  hybrid: Drafter.DRAFTER_HYBRID,
};

/** The wire value of a drafter name. */
export function drafterToProto(name: DrafterName | "auto"): Drafter {
  return TO_PROTO[name];
}

/**
 * The name of a wire value; "unspecified" for DRAFTER_UNSPECIFIED (the node's default applies) and undefined
 * for a value this build does not know (proto3 enums are open: UNRECOGNIZED).
 */
export function drafterFromProto(value: Drafter): DrafterName | "auto" | "unspecified" | undefined {
  if (value === Drafter.DRAFTER_UNSPECIFIED) return "unspecified";
  for (const [name, v] of Object.entries(TO_PROTO)) if (v === value) return name as DrafterName | "auto";
  return undefined;
}
