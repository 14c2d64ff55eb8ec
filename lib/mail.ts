import nodemailer from 'nodemailer';
import type { Config } from './config.ts';

export interface EmailInput {
  subject: string;
  text: string;
  /** Defaults to cfg.smtp.to. */
  to?: string[];
}

export interface Mailer {
  /** Sends one plain-text e-mail; rejects when the server does not accept it (the caller retries). */
  send(input: EmailInput): Promise<{ messageId: string; accepted: string[] }>;
}

/** A mailer for cfg.smtp; each message gets its own connection, so a server restart between mails costs nothing. */
export function smtpMailer(smtp: Config['smtp']): Mailer {
  return {
    async send(input) {
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
    },
  };
}
