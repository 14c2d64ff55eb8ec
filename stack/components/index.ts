import type { Config } from '../../lib/config.ts';
import type { Component } from '../component.ts';
import { postgres } from './postgres.ts';
import { kafka } from './kafka.ts';
import { temporal } from './temporal.ts';
import { chroma } from './chroma.ts';
import { docker } from './docker.ts';
import { mail } from './mail.ts';
import { prometheus } from './prometheus.ts';
import { alertmanager } from './alertmanager.ts';
import { chromium } from './chromium.ts';

/** Every server of the local stack, in install order. */
export function components(cfg: Config): Component[] {
  return [postgres(cfg), kafka(cfg), temporal(cfg), chroma(cfg), mail(cfg), docker(cfg), prometheus(cfg), alertmanager(cfg), chromium()];
}
