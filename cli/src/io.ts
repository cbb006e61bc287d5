/** Where a command writes: stdout and stderr in the real CLI, buffers in tests. */
export interface Io {
  out: (line: string) => void;
  err: (line: string) => void;
  /** Text without a line break (streamed output). */
  write: (text: string) => void;
}
