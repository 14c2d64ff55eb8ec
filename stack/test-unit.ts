/**
 * `npm run test:unit`: the fast tier. Installs the one binary it needs (the time-skipping Temporal
 * test server, in the project venv) and runs vitest.unit.config.ts with every server address
 * pointed at a closed loopback port, so a test that quietly needs the stack fails here instead
 * of passing wherever the stack happens to run.
 */
import { spawnSync } from 'node:child_process';
import { ensureVenv } from './components/venv.ts';

const closedPort = '9'; // discard: nothing listens there on loopback
await ensureVenv();
const env = {
  ...process.env,
  MARQUEE_POSTGRES_URL: `postgresql://marquee@127.0.0.1:${closedPort}/marquee`,
  MARQUEE_KAFKA_BROKERS: `127.0.0.1:${closedPort}`,
  MARQUEE_TEMPORAL_ADDRESS: `127.0.0.1:${closedPort}`,
  MARQUEE_CHROMA_URL: `http://127.0.0.1:${closedPort}`,
  MARQUEE_SMTP_PORT: closedPort,
  MARQUEE_DOCKER: 'off',
  DOCKER_HOST: `unix:///nonexistent/docker.sock`,
};
const r = spawnSync('npx', ['vitest', 'run', '-c', 'vitest.unit.config.ts', ...process.argv.slice(2)], { stdio: 'inherit', env });
process.exit(r.status ?? 1);
