import nodemailer from 'nodemailer';
import { loadConfig } from '../lib/config.ts';

export interface EmailInput {
  subject: string;
  text: string;
  /** Defaults to cfg.smtp.to. */
  to?: string[];
}

/** Sends one plain-text e-mail through cfg.smtp; fails (so Temporal retries) when the server does not accept it. */
export async function sendEmail(input: EmailInput): Promise<{ messageId: string; accepted: string[] }> {
  const { smtp } = loadConfig();
  const to = input.to ?? smtp.to;
  if (to.length === 0) return { messageId: '', accepted: [] };
  const transport = nodemailer.createTransport({
    host: smtp.host,
    port: smtp.port,
    secure: smtp.secure,
    // A local relay without TLS is the default setup; STARTTLS is still used when offered.
    ignoreTLS: !smtp.secure && smtp.host === '127.0.0.1',
    connectionTimeout: 10_000,
    greetingTimeout: 10_000,
    socketTimeout: 30_000,
  });
  try {
    const info = await transport.sendMail({ from: smtp.from, to, subject: input.subject, text: input.text });
    return { messageId: info.messageId, accepted: info.accepted.map(String) };
  } finally {
    transport.close();
  }
}
