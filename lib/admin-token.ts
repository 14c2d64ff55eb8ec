/**
 * The gateway's admin token in temporal.yaml is a placeholder that only loopback may see: anyone
 * who can reach the admin API with it can move all traffic. A service that listens beyond loopback
 * refuses to start with it (or with another token too short to resist guessing).
 */
import { isIP } from 'node:net';

/** The value temporal.yaml ships with. */
export const PLACEHOLDER_ADMIN_TOKEN = 'change-me-local-only';
/** Below this, a token listened for beyond loopback is refused (about 96 bits as base64). */
export const MIN_EXPOSED_TOKEN_LENGTH = 16;

export function isLoopback(host: string): boolean {
  if (host === 'localhost' || host === '::1') return true;
  return isIP(host) === 4 && host.startsWith('127.');
}

/** Throws with what to do when `host` is beyond loopback and the token is the placeholder or weak. */
export function checkAdminToken(service: string, host: string, token: string): void {
  if (isLoopback(host)) return;
  const why = token === PLACEHOLDER_ADMIN_TOKEN ? 'the placeholder admin token from temporal.yaml'
    : token.length < MIN_EXPOSED_TOKEN_LENGTH ? `an admin token of ${token.length} characters (at least ${MIN_EXPOSED_TOKEN_LENGTH} needed beyond loopback)` : undefined;
  if (!why) return;
  throw new Error(`${service}: refusing to listen on ${host} (beyond loopback) with ${why}. `
    + 'Set a real one, e.g. MARQUEE_SERVICES_GATEWAY_ADMINTOKEN=$(openssl rand -base64 24), in the environment of every marquee process, '
    + 'or listen on 127.0.0.1 (services.gateway.host).');
}
