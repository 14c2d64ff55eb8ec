/**
 * The least a gateway process can be: a node:http server that sends every GET on to one upstream
 * over pooled keep-alive connections and passes the answer back, with no routing, no deadline, no
 * metrics, no history. bench:gateway runs it as a third arm, so that what the hop itself costs on
 * this machine (an extra process, two wake-ups, two loopback round trips) is told apart from what
 * the gateway's own work adds on top.
 * Run as its own process: BARE_PROXY_PORT, BARE_PROXY_UPSTREAM (http://host:port); BARE_PROXY_NICE
 * and BARE_PROXY_RT_PRIORITY give it the gateway's scheduling priorities when the bench sets those.
 */
import http from 'node:http';
import { setProcessPriority, setRealtime } from '../lib/priority.ts';

const port = Number(process.env.BARE_PROXY_PORT);
const upstream = new URL(process.env.BARE_PROXY_UPSTREAM ?? '');
if (!Number.isInteger(port) || port <= 0 || upstream.protocol !== 'http:') {
  console.error('bare-proxy: set BARE_PROXY_PORT (a port) and BARE_PROXY_UPSTREAM (an http:// URL)');
  process.exit(2);
}
if (process.env.BARE_PROXY_NICE) setProcessPriority(Number(process.env.BARE_PROXY_NICE));
if (process.env.BARE_PROXY_RT_PRIORITY) setRealtime(Number(process.env.BARE_PROXY_RT_PRIORITY));
// The gateway's own agent settings (services/gateway/upstream.ts), so the two hops differ only in the work around them.
const agent = new http.Agent({ keepAlive: true, keepAliveMsecs: 1000, maxSockets: 128, maxFreeSockets: 64, scheduling: 'lifo', timeout: 30_000, noDelay: true });

const server = http.createServer((req, res) => {
  const out = http.request({ method: 'GET', hostname: upstream.hostname, port: Number(upstream.port || 80), path: req.url, agent }, (up) => {
    const chunks: Buffer[] = [];
    // A reset mid-body fails this request (the bench counts it), not the proxy.
    up.on('error', () => res.destroy());
    up.on('data', (c: Buffer) => chunks.push(c));
    up.on('end', () => {
      const body = Buffer.concat(chunks);
      res.writeHead(up.statusCode ?? 502, { 'content-type': String(up.headers['content-type'] ?? 'text/plain'), 'content-length': String(body.length) }).end(body);
    });
  });
  out.on('error', (err) => { if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' }).end(`bare-proxy: ${err.message}`); else res.destroy(); });
  res.on('error', () => out.destroy());
  out.end();
});
server.keepAliveTimeout = 65_000;
server.listen(port, '127.0.0.1', () => console.log(`bare-proxy: 127.0.0.1:${port} → ${upstream.origin}`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
