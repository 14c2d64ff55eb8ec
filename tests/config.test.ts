import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { loadConfigFile, projectRoot } from '../lib/config.ts';
import { durationMs } from '../lib/duration.ts';

const shipped = path.join(projectRoot, 'temporal.yaml');
const base = () => parse(readFileSync(shipped, 'utf8'));

function writeConfig(obj: unknown): string {
  const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'marquee-cfg-')), 'temporal.yaml');
  writeFileSync(file, typeof obj === 'string' ? obj : stringify(obj));
  return file;
}

describe('temporal.yaml loader', () => {
  it('loads the shipped file with the documented defaults', () => {
    const cfg = loadConfigFile(shipped, {});
    expect(cfg.kafka.topic).toBe('movielog');
    expect(cfg.services.gateway.port).toBe(8082);
    expect(cfg.services.inferenceMain.port).toBe(3001);
    expect(cfg.services.inferenceNightly.port).toBe(3002);
    expect(cfg.services.simulator.port).toBe(8080);
    expect(cfg.release.percent).toBe(20);
    expect(durationMs(cfg.release.bake)).toBe(12 * 3600_000);
  });

  it('a missing key fails with a message naming it', () => {
    const raw = base();
    delete raw.temporal.taskQueue;
    expect(() => loadConfigFile(writeConfig(raw), {})).toThrow(/temporal\.taskQueue: missing key/);
  });

  it('a wrong type fails with a message naming the key and the problem', () => {
    const raw = base();
    raw.services.gateway.port = 'eighty';
    expect(() => loadConfigFile(writeConfig(raw), {})).toThrow(/services\.gateway\.port: .*expected number/);
  });

  it('an unknown key fails with a message naming it', () => {
    const raw = base();
    raw.kafka.brokerz = ['x:1'];
    expect(() => loadConfigFile(writeConfig(raw), {})).toThrow(/kafka\.brokerz: unknown key/);
  });

  it('an out-of-range value is refused', () => {
    const raw = base();
    raw.release.percent = 80;
    expect(() => loadConfigFile(writeConfig(raw), {})).toThrow(/release\.percent/);
  });

  it('bad YAML and a missing file say so', () => {
    expect(() => loadConfigFile(writeConfig('temporal: [unclosed'), {})).toThrow(/not valid YAML/);
    expect(() => loadConfigFile('/nonexistent/temporal.yaml', {})).toThrow(/cannot read the file/);
  });

  it('MARQUEE_* environment variables override keys, with the same validation', () => {
    const cfg = loadConfigFile(shipped, { MARQUEE_TEMPORAL_ADDRESS: '127.0.0.1:7777', MARQUEE_SERVICES_GATEWAY_PORT: '9999', MARQUEE_KAFKA_BROKERS: 'a:1,b:2' });
    expect(cfg.temporal.address).toBe('127.0.0.1:7777');
    expect(cfg.services.gateway.port).toBe(9999);
    expect(cfg.kafka.brokers).toEqual(['a:1', 'b:2']);
    expect(() => loadConfigFile(shipped, { MARQUEE_SERVICES_GATEWAY_PORT: 'x' })).toThrow(/services\.gateway\.port/);
    expect(() => loadConfigFile(shipped, { MARQUEE_NO_SUCH_KEY: '1' })).toThrow(/MARQUEE_NO_SUCH_KEY: no such configuration key/);
  });

  it('parses durations', () => {
    expect(durationMs('90s')).toBe(90_000);
    expect(durationMs('30m')).toBe(1_800_000);
    expect(() => durationMs('12 hours')).toThrow(/bad duration/);
  });
});
