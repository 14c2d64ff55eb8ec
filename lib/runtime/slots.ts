import { createHash } from 'node:crypto';
import type { Config } from '../config.ts';
import type { Slot } from '../routing.ts';

export type { Slot };

export interface SlotDeployment {
  slot: Slot;
  version: string;
  /** Spec path inside the project (models/x.json). */
  model: string;
  /** marquee-inference:<version> when it runs from an image; null for a local process. */
  image: string | null;
  /** Which replica of the slot (0, the default, is the slot's own port; see slotPort). */
  replica?: number;
}

export interface SlotState extends SlotDeployment {
  running: boolean;
  url: string;
  /** Container id or process id. */
  id: string;
  /** The image id it runs (Docker) and the port it listens on, to tell a stale slot from a current one. */
  imageId?: string;
  port?: number;
  /** slotFingerprint of what it was started with; a slot started for another database is not reused. */
  fingerprint?: string;
}

/**
 * Where inference slots run: Docker containers on the host network when the engine answers,
 * local processes otherwise. Both are idempotent: deploying what already runs does nothing.
 */
export interface SlotRuntime {
  kind: 'docker' | 'process';
  deploy(d: SlotDeployment): Promise<SlotState>;
  remove(slot: Slot, replica?: number): Promise<boolean>;
  describe(slot: Slot, replica?: number): Promise<SlotState | undefined>;
}

/** Ports between replicas of a slot: replica k of main (3001) listens on 3001 + 100·k. */
export const REPLICA_PORT_STEP = 100;
/** Most replicas per slot (ports must stay clear of the next slot's replicas and of other services). */
export const MAX_REPLICAS = 8;

export function slotPort(cfg: Config, slot: Slot, replica = 0): number {
  return (slot === 'main' ? cfg.services.inferenceMain.port : cfg.services.inferenceNightly.port) + REPLICA_PORT_STEP * replica;
}

export function slotUrl(cfg: Config, slot: Slot, replica = 0): string {
  return `http://127.0.0.1:${slotPort(cfg, slot, replica)}`;
}

/** Environment shared by both runtimes: the slot, its port, and the config overrides in force. */
export function slotEnv(cfg: Config, d: SlotDeployment): Record<string, string> {
  const env: Record<string, string> = {
    INFERENCE_SLOT: d.slot,
    INFERENCE_PORT: String(slotPort(cfg, d.slot, d.replica)),
    INFERENCE_VERSION: d.version,
    MARQUEE_POSTGRES_URL: cfg.postgres.url,
    MARQUEE_CHROMA_URL: cfg.chroma.url,
  };
  if (d.image) env.INFERENCE_IMAGE = d.image;
  return env;
}

/** A short hash of everything a slot is started with (slotEnv and the spec path): equal means reusable. */
export function slotFingerprint(cfg: Config, d: SlotDeployment): string {
  const env = { ...slotEnv(cfg, d), model: d.model };
  const text = Object.keys(env).sort().map((k) => `${k}=${env[k as keyof typeof env]}`).join('\n');
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}
