import { readFileSync } from 'node:fs';
import path from 'node:path';
import { build } from 'esbuild';
import { projectRoot } from '../config.ts';
import { tarFiles } from '../docker.ts';

/**
 * The inference service bundled into one ES module (esbuild), so an image needs no node_modules:
 * the build context stays a few MB and a build takes seconds.
 */
export async function bundleInference(): Promise<Buffer> {
  return bundleEntry('services/inference/main.ts');
}

/** One service entry (a path from the repository root) bundled the same way, for the service images. */
export async function bundleEntry(entry: string): Promise<Buffer> {
  const result = await build({
    entryPoints: [path.join(projectRoot, entry)],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    write: false,
    external: ['pg-native'],
    // Some dependencies still call require(); give the ES module one.
    banner: { js: "import { createRequire as __marqueeRequire } from 'node:module'; const require = __marqueeRequire(import.meta.url);" },
    logLevel: 'silent',
  });
  return Buffer.from(result.outputFiles[0].contents);
}

/** The build context of marquee-inference:<version>: Dockerfile, bundle, config and the one spec baked in. */
export async function inferenceBuildContext(modelPath: string): Promise<Buffer> {
  const file = (p: string) => readFileSync(path.join(projectRoot, p));
  return tarFiles({
    Dockerfile: file('docker/inference/Dockerfile'),
    'package.json': file('package.json'),
    'temporal.yaml': file('temporal.yaml'),
    'dist/inference.mjs': await bundleInference(),
    [modelPath]: file(modelPath),
  });
}
