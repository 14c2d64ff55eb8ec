/**
 * Makes the root filesystem of the base image `marquee-node:20` from the host's own Node.js 20
 * runtime: no registry is reachable, so nothing can be pulled, but `docker import` of a tar works.
 * The tar holds the node binary with the shared libraries ldd names, npm when the host has it,
 * a busybox shell and tools, and a minimal /etc.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export interface RootfsResult {
  tar: string;
  nodeVersion: string;
}

function sh(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 });
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited with ${r.status}: ${(r.stderr || r.stdout).trim()}`);
  return r.stdout;
}

/** The shared libraries (and the loader) a dynamic binary needs, as absolute host paths; [] for a static one. */
export function sharedLibraries(binary: string): string[] {
  const r = spawnSync('ldd', [binary], { encoding: 'utf8' });
  // ldd exits non-zero with "not a dynamic executable" for static binaries.
  if (r.status !== 0) return [];
  const libs: string[] = [];
  for (const line of r.stdout.split('\n')) {
    const m = /=>\s*(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (m) libs.push(m[1]);
    else if (/=>\s*not found/.test(line)) throw new Error(`${binary} needs a library the host lacks: ${line.trim()}`);
  }
  return libs;
}

/** Copies a file (following symlinks) to the same absolute path inside root. */
function copyIn(root: string, hostPath: string, inside = hostPath): void {
  const dest = path.join(root, inside);
  mkdirSync(path.dirname(dest), { recursive: true });
  if (existsSync(dest)) return;
  copyFileSync(realpathSync(hostPath), dest);
}

function copyBinary(root: string, hostPath: string, inside: string): void {
  copyIn(root, hostPath, inside);
  chmodSync(path.join(root, inside), 0o755);
  for (const lib of sharedLibraries(hostPath)) copyIn(root, lib);
}

function link(root: string, target: string, inside: string): void {
  const dest = path.join(root, inside);
  mkdirSync(path.dirname(dest), { recursive: true });
  if (!existsSync(dest)) symlinkSync(target, dest);
}

const ETC: Record<string, string> = {
  passwd: 'root:x:0:0:root:/root:/bin/sh\nnode:x:1000:1000::/home/node:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n',
  group: 'root:x:0:\nnode:x:1000:\nnogroup:x:65534:\n',
  hosts: '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n',
  'nsswitch.conf': 'passwd: files\ngroup: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n',
  'os-release': 'NAME="marquee-node"\nID=marquee-node\nPRETTY_NAME="Marquee Node.js base (host runtime)"\n',
};

/**
 * Writes the root filesystem to `<workDir>/rootfs.tar` (workDir is emptied first) and returns its
 * path with the node version it holds. Throws when the host's node is not Node.js 20.
 */
export function makeRootfs(workDir: string, nodeBinary = process.execPath): RootfsResult {
  const nodeVersion = sh(nodeBinary, ['--version']).trim();
  if (!/^v20\./.test(nodeVersion)) throw new Error(`the base image marquee-node:20 needs the host's Node.js 20, but ${nodeBinary} is ${nodeVersion}`);

  rmSync(workDir, { recursive: true, force: true });
  const root = path.join(workDir, 'rootfs');
  mkdirSync(root, { recursive: true });

  // The layout of the official node images: node in /usr/local/bin, npm under /usr/local/lib.
  copyBinary(root, nodeBinary, '/usr/local/bin/node');
  link(root, '/usr/local/bin/node', '/usr/bin/node');
  const npmDir = path.resolve(path.dirname(realpathSync(nodeBinary)), '..', 'lib', 'node_modules', 'npm');
  if (existsSync(path.join(npmDir, 'bin', 'npm-cli.js'))) {
    mkdirSync(path.join(root, 'usr/local/lib/node_modules'), { recursive: true });
    sh('cp', ['-a', npmDir, path.join(root, 'usr/local/lib/node_modules/npm')]);
    link(root, '../lib/node_modules/npm/bin/npm-cli.js', '/usr/local/bin/npm');
    link(root, '../lib/node_modules/npm/bin/npx-cli.js', '/usr/local/bin/npx');
  }

  // A shell and the usual small tools: busybox-static when installed, else dash with its libraries.
  const busybox = ['/usr/bin/busybox', '/bin/busybox'].find((p) => existsSync(p));
  if (busybox) {
    copyBinary(root, busybox, '/bin/busybox');
    for (const applet of sh(busybox, ['--list-full']).split('\n').map((s) => s.trim()).filter(Boolean)) {
      if (applet.includes('..') || applet === 'linuxrc') continue;
      link(root, '/bin/busybox', `/${applet}`);
    }
  } else {
    const dash = ['/usr/bin/dash', '/bin/dash'].find((p) => existsSync(p));
    if (!dash) throw new Error('neither busybox nor dash is installed on the host, so the image would have no /bin/sh');
    copyBinary(root, dash, '/bin/sh');
  }

  for (const [name, text] of Object.entries(ETC)) {
    mkdirSync(path.join(root, 'etc'), { recursive: true });
    writeFileSync(path.join(root, 'etc', name), text);
  }
  const certs = '/etc/ssl/certs/ca-certificates.crt';
  if (existsSync(certs)) copyIn(root, certs);

  for (const dir of ['tmp', 'var/tmp']) {
    mkdirSync(path.join(root, dir), { recursive: true });
    chmodSync(path.join(root, dir), 0o1777);
  }
  mkdirSync(path.join(root, 'root'), { recursive: true, mode: 0o700 });
  mkdirSync(path.join(root, 'home/node'), { recursive: true });
  chownSync(path.join(root, 'home/node'), 1000, 1000);
  for (const dir of ['proc', 'sys', 'dev', 'app']) mkdirSync(path.join(root, dir), { recursive: true });

  const tar = path.join(workDir, 'rootfs.tar');
  sh('tar', ['--numeric-owner', '-C', root, '-cf', tar, '.']);
  rmSync(root, { recursive: true, force: true });
  return { tar, nodeVersion };
}
