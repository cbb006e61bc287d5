// What a sandbox sees of the host's files: the interpreter's executable, its standard library and the
// shared libraries they load (found with ldd), each bound read-only at its own path, with every symlink on
// the way to them reproduced, so that the dynamic loader and the interpreter find them where they look.
// Nothing else of the host is there: no /etc, no home, no sockets, no store.
import { spawnSync } from "node:child_process";
import { lstatSync, readdirSync, readlinkSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";

/** A read-only bind of a host path at the same path, or a symlink as the host has it. */
export type Mount = { kind: "bind"; path: string } | { kind: "symlink"; path: string; target: string };

const MAX_SYMLINKS = 40;

/** The mounts that make a set of host paths visible, each once, in an order bwrap can apply. */
export class MountPlan {
  private readonly binds = new Set<string>();
  private readonly links = new Map<string, string>();

  /** Makes `path` resolve inside the sandbox as on the host: its symlinks, then the file or directory. */
  expose(path: string, hops = 0): this {
    if (hops > MAX_SYMLINKS) throw new Error(`too many symlinks resolving ${path}`);
    if (!isAbsolute(path)) throw new Error(`not an absolute path: ${path}`);
    const parts = path.split("/").filter((p) => p !== "" && p !== ".");
    let current = "";
    for (let i = 0; i < parts.length; i++) {
      const next = `${current}/${parts[i]}`;
      if (lstatSync(next).isSymbolicLink()) {
        const target = readlinkSync(next);
        this.links.set(next, target);
        const rest = parts.slice(i + 1);
        return this.expose(join(resolve(current || "/", target), ...rest), hops + 1);
      }
      current = next;
    }
    this.binds.add(current || "/");
    return this;
  }

  /** Binds first (shortest path first, so a directory comes before anything under it), then symlinks. */
  mounts(): Mount[] {
    const binds = [...this.binds].sort((a, b) => a.length - b.length || a.localeCompare(b));
    const kept: string[] = [];
    for (const b of binds) if (!kept.some((k) => under(b, k))) kept.push(b);
    const links = [...this.links.entries()]
      .filter(([path]) => !kept.some((k) => under(path, k)))
      .sort(([a], [b]) => a.localeCompare(b));
    return [
      ...kept.map((path): Mount => ({ kind: "bind", path })),
      ...links.map(([path, target]): Mount => ({ kind: "symlink", path, target })),
    ];
  }
}

function under(path: string, dir: string): boolean {
  return path === dir || path.startsWith(dir.endsWith("/") ? dir : `${dir}/`);
}

/** The shared libraries (and the dynamic loader) the given ELF files load, as ldd reports them. */
export function sharedLibraries(files: readonly string[]): string[] {
  if (files.length === 0) return [];
  const out = spawnSync("ldd", [...files], { encoding: "utf8", timeout: 30_000 });
  if (out.error !== undefined) throw new Error(`ldd: ${out.error.message}`);
  const libs = new Set<string>();
  for (const line of out.stdout.split("\n")) {
    // "\tlibm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x...)" or "\t/lib64/ld-linux-x86-64.so.2 (0x...)"
    const m = /^\s+(?:\S+ => )?(\/\S+) \(0x[0-9a-f]+\)$/.exec(line);
    if (m?.[1] !== undefined) libs.add(m[1]);
  }
  return [...libs];
}

/** Shared objects directly inside `dir` (Python's lib-dynload), whose own libraries must be there too. */
export function sharedObjectsIn(dir: string): string[] {
  try {
    return readdirSync(dir)
      .filter((f) => f.endsWith(".so"))
      .map((f) => join(dir, f));
  } catch {
    return [];
  }
}
