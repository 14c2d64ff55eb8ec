/** Item 5 of issue 13: the placeholder admin token never leaves loopback. */
import { afterAll, describe, expect, it } from 'vitest';
import { checkAdminToken, isLoopback, PLACEHOLDER_ADMIN_TOKEN } from '../lib/admin-token.ts';
import { loadConfig } from '../lib/config.ts';
import { databaseUrl } from '../lib/db.ts';
import { freePort, request, waitForHttp } from '../testkit/net.ts';
import { alive, spawnTs, stop, type Proc } from '../testkit/processes.ts';
import { scratchDatabase } from './support/db.ts';

const exited = (p: Proc) => new Promise<number | null>((r) => (alive(p) ? p.once('exit', (code) => r(code)) : r(p.exitCode)));
const started: Proc[] = [];
let db: Awaited<ReturnType<typeof scratchDatabase>> | undefined;
afterAll(async () => {
  for (const p of started) await stop(p);
  await db?.drop();
});

describe('checkAdminToken', () => {
  it('accepts anything on loopback, refuses the placeholder and short tokens beyond it', () => {
    expect(loadConfig().services.gateway.adminToken).toBe(PLACEHOLDER_ADMIN_TOKEN);
    for (const host of ['127.0.0.1', '127.0.0.2', 'localhost', '::1']) {
      expect(isLoopback(host)).toBe(true);
      expect(() => checkAdminToken('gateway', host, PLACEHOLDER_ADMIN_TOKEN)).not.toThrow();
    }
    for (const host of ['0.0.0.0', '::', '10.1.2.3', 'gateway.example.org']) {
      expect(isLoopback(host)).toBe(false);
      expect(() => checkAdminToken('gateway', host, PLACEHOLDER_ADMIN_TOKEN)).toThrow(/gateway: refusing to listen on .* with the placeholder admin token from temporal.yaml\. Set a real one, e\.g\. MARQUEE_SERVICES_GATEWAY_ADMINTOKEN=/);
      expect(() => checkAdminToken('gateway', host, 'short-token')).toThrow(/an admin token of 11 characters \(at least 16 needed beyond loopback\)/);
      expect(() => checkAdminToken('gateway', host, 'a-real-token-of-32-characters-xx')).not.toThrow();
    }
  });
});

describe('the gateway process', () => {
  it('refuses to start on 0.0.0.0 with the placeholder token, and starts there with a real one', async () => {
    const refused = spawnTs('gateway', 'services/gateway/main.ts', { MARQUEE_SERVICES_GATEWAY_HOST: '0.0.0.0', GATEWAY_PORT: String(await freePort()) });
    started.push(refused);
    expect(await exited(refused)).toBe(2);
    expect(refused.output.join('')).toMatch(/gateway: refusing to listen on 0\.0\.0\.0 \(beyond loopback\) with the placeholder admin token/);

    db = await scratchDatabase('admintoken');
    const port = await freePort();
    const ok = spawnTs('gateway', 'services/gateway/main.ts', {
      MARQUEE_SERVICES_GATEWAY_HOST: '0.0.0.0', MARQUEE_SERVICES_GATEWAY_ADMINTOKEN: 'a-real-token-of-32-characters-xx',
      MARQUEE_POSTGRES_URL: databaseUrl(loadConfig(), db.name), GATEWAY_PORT: String(port), GATEWAY_MAIN_URL: `http://127.0.0.1:${await freePort()}`,
    });
    started.push(ok);
    await waitForHttp(`http://127.0.0.1:${port}/healthz`, 30_000, (r) => r.status === 200 || r.status === 503, () => alive(ok)).catch((err) => {
      throw new Error(`${(err as Error).message}\n${ok.output.join('')}`);
    });
    expect(ok.output.join('')).toContain(`gateway: listening on 0.0.0.0:${port}`);
    // The admin API takes the real token, and not the placeholder.
    const routing = (token: string) => request(`http://127.0.0.1:${port}/admin/routing`, { headers: { authorization: `Bearer ${token}` } });
    expect((await routing('a-real-token-of-32-characters-xx')).status).toBe(200);
    expect((await routing(PLACEHOLDER_ADMIN_TOKEN)).status).toBe(401);
  }, 60_000);
});
