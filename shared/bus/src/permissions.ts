// Who may do what on the bus: one set of subject permissions per role, as nats-server enforces them
// (publish and subscribe allow-lists; whatever is not listed is refused). The JetStream operations
// behind each right are spelled out below, for the streams names.ts names:
//   - reading a KV bucket or object store: stream info, message get (direct or through the API) and an
//     ordered consumer (create, flow control) for watch, keys and object chunks;
//   - consuming a stream: a named pull consumer (create/update, info, next, ack);
//   - writing: publishing to the stream's subjects (a KV put, an object's chunks and meta, a trace).
// Each user receives replies only on its own inbox prefix (`_INBOX_<user public key>`), so no role can
// listen to another role's replies (where pull consumers deliver messages).
import {
  HEARTBEAT_BUCKET,
  kvStreamName,
  objectStoreStreamName,
  SPECULATOR_BUCKET,
  TRACE_STREAM,
  TRACE_SUBJECTS,
  VERDICT_STREAM,
  VERDICT_SUBJECTS,
  WEIGHTS_BUCKET,
} from "./names.js";

/**
 * The bus's roles. admin: everything (provisioning by hand, tests' set-up; never given to a service);
 * node: publish traces and heartbeats, read speculators and weights, consume traces (fleet suffix tree);
 * trainer: provision the streams, consume traces and verdicts, write speculators and weights, read
 * heartbeats; verifier: publish verdicts; operator: read-only status (stream and consumer info,
 * heartbeats, speculator manifests, the verdict dataset), never traces or weights.
 */
export const BUS_ROLES = ["admin", "node", "trainer", "verifier", "operator"] as const;
export type BusRole = (typeof BUS_ROLES)[number];

export interface SubjectPermissions {
  publish: string[];
  subscribe: string[];
}

const API = "$JS.API";
const SPECULATORS = kvStreamName(SPECULATOR_BUCKET);
const WEIGHTS = objectStoreStreamName(WEIGHTS_BUCKET);
const HEARTBEATS = kvStreamName(HEARTBEAT_BUCKET);
const ALL_STREAMS = [TRACE_STREAM, VERDICT_STREAM, SPECULATORS, WEIGHTS, HEARTBEATS];

/** The inbox prefix of a user: replies to its requests come here and nowhere else. */
export function inboxPrefix(userPublicKey: string): string {
  return `_INBOX_${userPublicKey}`;
}

/** Get messages of a stream and watch it through ordered consumers (KV get/watch/keys, object get). */
function read(stream: string): string[] {
  return [
    `${API}.STREAM.MSG.GET.${stream}`,
    `${API}.DIRECT.GET.${stream}`,
    `${API}.DIRECT.GET.${stream}.>`,
    `${API}.CONSUMER.CREATE.${stream}`,
    `${API}.CONSUMER.CREATE.${stream}.>`,
    `$JS.FC.${stream}.>`,
  ];
}

/** Consume a stream through named pull consumers (consumer.ts). */
function consume(stream: string): string[] {
  return [
    `${API}.CONSUMER.CREATE.${stream}.>`,
    `${API}.CONSUMER.DURABLE.CREATE.${stream}.*`,
    `${API}.CONSUMER.INFO.${stream}.*`,
    `${API}.CONSUMER.MSG.NEXT.${stream}.*`,
    `$JS.ACK.${stream}.>`,
  ];
}

/** Create and update the streams (provisionBus); never delete them. */
function provision(): string[] {
  return ALL_STREAMS.flatMap((s) => [`${API}.STREAM.CREATE.${s}`, `${API}.STREAM.UPDATE.${s}`]);
}

/** What every service does at connect and at provisioning: account info, stream names and info. */
function base(): string[] {
  return [`${API}.INFO`, `${API}.STREAM.NAMES`, ...ALL_STREAMS.map((s) => `${API}.STREAM.INFO.${s}`)];
}

/** The permissions of `role` for the user whose public key is `userPublicKey`. */
export function rolePermissions(role: BusRole, userPublicKey: string): SubjectPermissions {
  if (role === "admin") return { publish: [">"], subscribe: [">"] };
  const subscribe = [`${inboxPrefix(userPublicKey)}.>`];
  const kvWrite = (bucket: string) => `$KV.${bucket}.>`;
  let publish: string[];
  switch (role) {
    case "node":
      publish = [
        TRACE_SUBJECTS,
        kvWrite(HEARTBEAT_BUCKET),
        ...read(SPECULATORS),
        ...read(WEIGHTS),
        ...consume(TRACE_STREAM),
      ];
      break;
    case "trainer":
      publish = [
        ...provision(),
        ...consume(TRACE_STREAM),
        `${API}.CONSUMER.DELETE.${TRACE_STREAM}.*`,
        ...consume(VERDICT_STREAM),
        ...read(SPECULATORS),
        kvWrite(SPECULATOR_BUCKET),
        `${API}.STREAM.PURGE.${SPECULATORS}`,
        ...read(WEIGHTS),
        `$O.${WEIGHTS_BUCKET}.>`,
        `${API}.STREAM.PURGE.${WEIGHTS}`,
        ...read(HEARTBEATS),
      ];
      break;
    case "verifier":
      publish = [VERDICT_SUBJECTS];
      break;
    case "operator":
      publish = [
        `${API}.STREAM.LIST`,
        `${API}.CONSUMER.LIST.*`,
        `${API}.CONSUMER.NAMES.*`,
        ...ALL_STREAMS.map((s) => `${API}.CONSUMER.INFO.${s}.*`),
        ...read(HEARTBEATS),
        ...read(SPECULATORS),
        // The verdict dataset (specloop verdicts export: an ordered pull consumer it deletes after).
        `${API}.CONSUMER.CREATE.${VERDICT_STREAM}`,
        `${API}.CONSUMER.CREATE.${VERDICT_STREAM}.>`,
        `${API}.CONSUMER.MSG.NEXT.${VERDICT_STREAM}.*`,
        `${API}.CONSUMER.DELETE.${VERDICT_STREAM}.*`,
      ];
      break;
  }
  return { publish: [...base(), ...publish], subscribe };
}
