/**
 * The little dense linear algebra the vector job needs, in plain TypeScript (the seeded Gaussian
 * source is lib/random.ts): orthonormalisation of a tall block, a symmetric eigensolver for small matrices, and a
 * randomized subspace iteration for the top eigenpairs of a large symmetric operator that is only
 * available as a block product (so the operator itself is never formed).
 *
 * Tall blocks are row-major Float64Arrays of n rows × l columns (row i = movie i): at 27k movies
 * and l ≈ 48 that is 10 MB, so double precision costs nothing and keeps the iteration stable.
 */
import { Rng } from '../random.ts';

/**
 * Orthonormalises the columns of the row-major n×l block X in place (modified Gram-Schmidt, run
 * twice per column for stability). A column that is (numerically) in the span of the previous ones
 * is replaced by a fresh random direction, so the block always keeps full rank l ≤ n.
 */
export function orthonormalize(X: Float64Array, n: number, l: number, rng: Rng): void {
  if (l > n) throw new Error(`cannot orthonormalise ${l} columns of length ${n}`);
  const cols: Float64Array[] = [];
  for (let j = 0; j < l; j++) {
    const c = new Float64Array(n);
    for (let i = 0; i < n; i++) c[i] = X[i * l + j];
    cols.push(c);
  }
  for (let j = 0; j < l; j++) {
    const c = cols[j];
    for (let tries = 0; ; tries++) {
      const before = Math.sqrt(dot(c, c));
      for (let pass = 0; pass < 2; pass++) {
        for (let p = 0; p < j; p++) {
          const q = cols[p];
          const d = dot(c, q);
          for (let i = 0; i < n; i++) c[i] -= d * q[i];
        }
      }
      const after = Math.sqrt(dot(c, c));
      if (after > 1e-10 * Math.max(before, 1e-300) && after > 1e-200) {
        for (let i = 0; i < n; i++) c[i] /= after;
        break;
      }
      if (tries > 5) throw new Error('orthonormalisation failed: block is rank deficient');
      for (let i = 0; i < n; i++) c[i] = rng.normal();
    }
  }
  for (let j = 0; j < l; j++) {
    const c = cols[j];
    for (let i = 0; i < n; i++) X[i * l + j] = c[i];
  }
}

function dot(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/**
 * Eigen-decomposition of a small symmetric l×l matrix (row-major) by cyclic Jacobi rotations.
 * Returns eigenvalues in descending order and the matching eigenvectors as the columns of a
 * row-major l×l matrix.
 */
export function symmetricEigen(A: Float64Array, l: number): { values: Float64Array; vectors: Float64Array } {
  const a = Float64Array.from(A);
  const v = new Float64Array(l * l);
  for (let i = 0; i < l; i++) v[i * l + i] = 1;
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < l; p++) for (let q = p + 1; q < l; q++) off += a[p * l + q] ** 2;
    if (off < 1e-30) break;
    for (let p = 0; p < l; p++) {
      for (let q = p + 1; q < l; q++) {
        const apq = a[p * l + q];
        if (Math.abs(apq) < 1e-300) continue;
        const theta = (a[q * l + q] - a[p * l + p]) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < l; k++) {
          const akp = a[k * l + p], akq = a[k * l + q];
          a[k * l + p] = c * akp - s * akq;
          a[k * l + q] = s * akp + c * akq;
        }
        for (let k = 0; k < l; k++) {
          const apk = a[p * l + k], aqk = a[q * l + k];
          a[p * l + k] = c * apk - s * aqk;
          a[q * l + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < l; k++) {
          const vkp = v[k * l + p], vkq = v[k * l + q];
          v[k * l + p] = c * vkp - s * vkq;
          v[k * l + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const order = Array.from({ length: l }, (_, i) => i).sort((x, y) => a[y * l + y] - a[x * l + x]);
  const values = new Float64Array(l);
  const vectors = new Float64Array(l * l);
  order.forEach((src, dst) => {
    values[dst] = a[src * l + src];
    for (let k = 0; k < l; k++) vectors[k * l + dst] = v[k * l + src];
  });
  return { values, vectors };
}

/** Z = G·X for the n×l block X; Z arrives zeroed. */
export type BlockProduct = (X: Float64Array, Z: Float64Array, l: number) => void;

/**
 * Top-k eigenpairs of a symmetric positive semi-definite n×n operator G by randomized subspace
 * iteration (Halko, Martinsson & Tropp 2011, alg. 4.4 + Rayleigh-Ritz): a random n×(k+p) block
 * is pushed through G `iterations` times with re-orthonormalisation, then G is solved exactly on
 * the resulting subspace. Cost: (iterations + 1) block products plus O(n·l²) per step.
 */
export function topEigenpairs(product: BlockProduct, n: number, k: number, opts: { oversample?: number; iterations?: number; seed?: number } = {}): { values: Float64Array; vectors: Float64Array; k: number } {
  k = Math.max(1, Math.min(k, n));
  const l = Math.min(n, k + (opts.oversample ?? 16));
  const rng = Rng.unhashed(opts.seed ?? 42);
  let X = new Float64Array(n * l);
  for (let i = 0; i < X.length; i++) X[i] = rng.normal();
  orthonormalize(X, n, l, rng);
  let Z = new Float64Array(n * l);
  for (let it = 0; it < (opts.iterations ?? 5); it++) {
    Z.fill(0);
    product(X, Z, l);
    [X, Z] = [Z, X];
    orthonormalize(X, n, l, rng);
  }
  Z.fill(0);
  product(X, Z, l);
  // B = Xᵀ G X, symmetrised against rounding.
  const B = new Float64Array(l * l);
  for (let i = 0; i < n; i++) {
    const r = i * l;
    for (let a = 0; a < l; a++) {
      const xa = X[r + a];
      if (xa === 0) continue;
      for (let b = 0; b < l; b++) B[a * l + b] += xa * Z[r + b];
    }
  }
  for (let a = 0; a < l; a++) for (let b = a + 1; b < l; b++) B[a * l + b] = B[b * l + a] = (B[a * l + b] + B[b * l + a]) / 2;
  const eig = symmetricEigen(B, l);
  const vectors = new Float64Array(n * k);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < k; j++) {
      let s = 0;
      for (let a = 0; a < l; a++) s += X[i * l + a] * eig.vectors[a * l + j];
      vectors[i * k + j] = s;
    }
  }
  return { values: eig.values.slice(0, k), vectors, k };
}
