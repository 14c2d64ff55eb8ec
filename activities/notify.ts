import type { EmailInput } from '../lib/mail.ts';
import type { ActivityDeps } from './deps.ts';

export type { EmailInput } from '../lib/mail.ts';

export function notifyActivities({ mailer }: ActivityDeps) {
  return {
    /** Sends one plain-text e-mail; fails (so Temporal retries) when the server does not accept it. */
    async sendEmail(input: EmailInput): Promise<{ messageId: string; accepted: string[] }> {
      return mailer.send(input);
    },
  };
}
