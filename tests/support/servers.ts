import net from 'node:net';

/**
 * Fails (never skips) when a server the test needs is not answering, and says how to start it.
 * `npm test` starts the whole stack first; a single test file run by hand needs `npm run stack -- up`.
 */
export async function requireServer(name: string, port: number, host = '127.0.0.1'): Promise<void> {
  const open = await new Promise<boolean>((resolve) => {
    const s = net.connect({ port, host });
    s.setTimeout(2000, () => { s.destroy(); resolve(false); });
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
  if (!open) throw new Error(`${name} is not answering on ${host}:${port}; start the stack with \`npm run stack -- up\` (npm test does this)`);
}
