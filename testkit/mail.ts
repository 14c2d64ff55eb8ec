/**
 * An SMTP server a test owns: it keeps every accepted message in memory, so the test can read the
 * release, backup or alert mail its run sent. (The stack's own sink, stack/mail-sink.ts, keeps
 * files for people instead.)
 */
import { SMTPServer } from 'smtp-server';

export interface MailCatcher {
  /** Raw messages (or what `decode` made of them), in arrival order. */
  readonly mails: string[];
  close(): Promise<void>;
}

/** `into`: an array the test already holds (and may empty between cases); a new one otherwise. */
export async function catchMail(port: number, opts: { host?: string; decode?: (raw: string) => string; into?: string[] } = {}): Promise<MailCatcher> {
  const mails = opts.into ?? [];
  const decode = opts.decode ?? ((raw: string) => raw);
  const server = new SMTPServer({
    // Plain loopback SMTP without credentials, as nodemailer and Alertmanager are configured in tests.
    authOptional: true, disabledCommands: ['STARTTLS', 'AUTH'], logger: false,
    onData(stream, _session, cb) {
      let raw = '';
      stream.on('data', (c: Buffer) => { raw += c.toString(); });
      stream.on('error', (err: Error) => cb(err));
      stream.on('end', () => { mails.push(decode(raw)); cb(); });
    },
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, opts.host ?? '127.0.0.1', () => { server.off('error', reject); resolve(); });
  });
  return { mails, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}
