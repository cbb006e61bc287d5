// For tests that need the sandbox: whether this kernel refuses what bubblewrap needs (user namespaces).
// Such tests skip, saying why, only then; a missing bwrap is a failure, not a skip (setup installs it).
import { spawnSync } from "node:child_process";
import { Sandbox, type SandboxOptions } from "./index.js";

/** Why the sandbox cannot run here (the kernel refuses unprivileged user namespaces), or false. */
export function kernelRefusesSandbox(): string | false {
  const user = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {};
  const probe = spawnSync(
    "bwrap",
    [
      ...["--unshare-all", "--unshare-user", "--die-with-parent", "--ro-bind", "/usr", "/usr"],
      ...["--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64", "/usr/bin/true"],
    ],
    { encoding: "utf8", timeout: 10_000, cwd: "/", ...user },
  );
  if (probe.error !== undefined || probe.status === 0) return false;
  const why = probe.stderr.trim();
  return /namespace|permission|operation not permitted/i.test(why)
    ? `this kernel refuses the sandbox's user namespaces (${why})`
    : false;
}

export const SANDBOX_REFUSED = kernelRefusesSandbox();

export function testSandbox(options: Partial<SandboxOptions> = {}): Sandbox {
  return new Sandbox({
    bwrap: "bwrap",
    python: "python3",
    maxSandboxes: 2,
    maxProcesses: 4,
    tmpfsMb: 16,
    maxOutputBytes: 1 << 20,
    user: { uid: 65534, gid: 65534 },
    ...options,
  });
}
