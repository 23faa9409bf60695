/**
 * createProviderTransport(): a tenant's ESP provider row (and its decrypted credentials) as a
 * Transport (delivery/transport.ts), routed `provider:<type>:<name>`. Called by
 * services/providers.service.ts, which caches the result per provider and version.
 *
 * Everything a tenant cannot be trusted to choose comes from operator config in `deps`: the
 * API base URLs (SENDGRID_API_URL, MAILGUN_API_URL / MAILGUN_EU_API_URL, SES_API_URL,
 * MSGRAPH_API_URL, MSGRAPH_LOGIN_URL), the deadline, and for SMTP providers the host guard
 * (a tenant-given host is vetted exactly like a per-user relay) and the extra trusted CAs.
 * A row whose stored fields no longer validate throws ProviderConfigError.
 */
import type { Provider } from '../../db/types.js';
import type { Transport } from '../transport.js';
import { createSmtpTransport } from '../transports/smtp.transport.js';
import { parseProviderConfig, providerRoute, type ProviderConfig } from './config.js';
import { createMailgunTransport } from './mailgun.transport.js';
import { createMsgraphTransport } from './msgraph.transport.js';
import { createSesTransport } from './ses.transport.js';
import { createSendgridTransport } from './sendgrid.transport.js';

export interface ProviderTransportDeps {
  /** OUTBOUND_TIMEOUT in ms: the deadline of one API request or SMTP step. */
  timeoutMs: number;
  urls: {
    sendgrid: string;
    mailgun: string;
    mailgunEu: string;
    /** undefined = the AWS endpoint of the provider's region. */
    ses?: string;
    msgraph: string;
    msgraphLogin: string;
  };
  smtp: {
    /** Our name in EHLO (MAIL_HOSTNAME). */
    heloName: string;
    /** OUTBOUND_TLS_CA_FILE's certificates (PEM), for relays with a private CA. */
    ca?: string[];
    /** ALLOW_PRIVATE_RELAY_HOSTS. */
    allowPrivate: boolean;
  };
}

export type ProviderRow = Pick<Provider, 'name' | 'provider_type' | 'settings'>;

export function createProviderTransport(row: ProviderRow, credentials: Record<string, unknown>, deps: ProviderTransportDeps): Transport {
  const config = parseProviderConfig(row.provider_type, row.name, { settings: row.settings, credentials });
  return transportFor(config, deps);
}

export function transportFor(config: ProviderConfig, deps: ProviderTransportDeps): Transport {
  const route = providerRoute(config.type, config.name);
  const timeoutMs = deps.timeoutMs;
  switch (config.type) {
    case 'sendgrid':
      return createSendgridTransport(config, { route, baseUrl: deps.urls.sendgrid, timeoutMs });
    case 'mailgun':
      return createMailgunTransport(config, { route, baseUrl: config.settings.region === 'eu' ? deps.urls.mailgunEu : deps.urls.mailgun, timeoutMs });
    case 'ses':
      return createSesTransport(config, { route, endpoint: deps.urls.ses, timeoutMs });
    case 'msgraph':
      return createMsgraphTransport(config, { route, graphUrl: deps.urls.msgraph, loginUrl: deps.urls.msgraphLogin, timeoutMs });
    case 'smtp':
      return createSmtpTransport({
        route,
        host: config.settings.host,
        port: config.settings.port,
        secure: config.settings.secure ?? config.settings.port === 465,
        user: config.settings.user,
        pass: config.credentials.pass,
        requireTLS: true,
        heloName: deps.smtp.heloName,
        timeoutMs,
        ca: deps.smtp.ca,
        guard: { allowPrivate: deps.smtp.allowPrivate },
      });
  }
}
