// Structured logging: one JSON object per line on stdout, through pino. A service creates one root
// logger named after itself and hands children (`logger.child({ component: "scheduler" })`) to its parts.

import type { DestinationStream, Logger as PinoLogger } from "pino";
import { pino } from "pino";

export type Logger = PinoLogger;

/** Levels a service accepts in `log.level`, most to least severe; "silent" turns logging off. */
export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export const DEFAULT_LOG_LEVEL: LogLevel = "info";

/**
 * A root logger whose every line carries `name`. Writes synchronously to stdout unless a destination
 * is given (tests pass one to read the lines back), so a line logged just before exit is not lost.
 */
export function createLogger(
  name: string,
  level: LogLevel = DEFAULT_LOG_LEVEL,
  destination?: DestinationStream,
): Logger {
  const options = {
    name,
    level,
    // ISO time reads better in `kubectl logs` than epoch milliseconds and sorts the same.
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label: string) => ({ level: label }) },
  };
  return destination ? pino(options, destination) : pino(options, pino.destination({ fd: 1, sync: true }));
}

/** A logger that drops everything, for code paths that run without a service around them. */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}
