/**
 * The local stack's mail server: an SMTP server on the configured smtp.host:port that keeps every
 * message it accepts as an .eml file under .marquee/mail/, so release and backup e-mails can be
 * read on a laptop with no relay. Started by the stack's `mail` component; a real relay in
 * temporal.yaml (a host that is not loopback) replaces it.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { SMTPServer } from 'smtp-server';
import { loadConfig, stateDir } from '../lib/config.ts';

const { smtp } = loadConfig();
const dir = path.join(stateDir(), 'mail');
mkdirSync(dir, { recursive: true });
let n = 0;

const server = new SMTPServer({
  authOptional: true,
  disabledCommands: ['STARTTLS', 'AUTH'],
  logger: false,
  size: 10 * 1024 * 1024,
  onData(stream, session, callback) {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('error', (err: Error) => callback(err));
    stream.on('end', () => {
      if ((stream as { sizeExceeded?: boolean }).sizeExceeded) {
        callback(Object.assign(new Error('message exceeds the 10 MB limit'), { responseCode: 552 }));
        return;
      }
      const file = path.join(dir, `${new Date().toISOString().replace(/[:.]/g, '-')}-${process.pid}-${++n}.eml`);
      try {
        writeFileSync(file, Buffer.concat(chunks));
        console.log(`mail: ${session.envelope.rcptTo.map((r) => r.address).join(', ')} → ${file}`);
        callback();
      } catch (err) {
        callback(err as Error);
      }
    });
  },
});
server.on('error', (err) => console.error(`mail: ${err.message}`));
server.listen(smtp.port, smtp.host, () => console.log(`mail: SMTP on ${smtp.host}:${smtp.port}, messages kept in ${dir}`));
for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => server.close(() => process.exit(0)));
