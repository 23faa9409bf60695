/**
 * Amazon SES as a delivery route (Transport, delivery/transport.ts), through the SES v2 API
 * client (`@aws-sdk/client-sesv2`, requests signed with AWS SigV4 from the provider's access
 * key). `SendEmail` with `Content.Raw.Data` = the finished message byte for byte (our DKIM
 * signature included), `Destination.ToAddresses` = the envelope recipient (SES delivers to the
 * destination only, whatever the headers say), `FromEmailAddress` = the envelope sender (a
 * verified identity), the provider's configuration set when it has one (that is where SES
 * publishes delivery events, to the SNS topic), and the tag `outbound_id` = our id, which comes
 * back in those events. SES answers with `MessageId`.
 *
 * The endpoint is the region's AWS endpoint, or SES_API_URL when the operator sets it (tests, a
 * VPC endpoint); never anything a tenant gives. The client makes one attempt per send (the
 * delivery queue owns retries and route fallback) with OUTBOUND_TIMEOUT as its deadline.
 * `verify()` calls `GetAccount` and requires sending to be enabled.
 *
 * Errors: SES's own codes that mean "this account cannot send now" (paused, suspended, MAIL FROM
 * domain not verified, quota, throttling) make the route unavailable; otherwise the HTTP status
 * decides as for every provider (providers/http.ts): 400 MessageRejected is permanent.
 */
import { GetAccountCommand, SendEmailCommand, SESv2Client } from '@aws-sdk/client-sesv2';
import type { SesConfig } from './config.js';
import { routeFailure, statusFailure } from './http.js';
import { DeliveryError, type DeliveryResult, type OutgoingMessage, type Transport } from '../transport.js';

export interface SesOptions {
  route: string;
  /** SES_API_URL; undefined = the AWS endpoint of the provider's region. */
  endpoint?: string;
  timeoutMs: number;
}

const LABEL = 'SES';
/** SES error names that say the account or its setup cannot send now, whatever the message. */
const ROUTE_ERRORS = new Set([
  'AccountSuspendedException',
  'SendingPausedException',
  'MailFromDomainNotVerifiedException',
  'LimitExceededException',
  'TooManyRequestsException',
  'NotFoundException',
]);

export function createSesTransport(config: SesConfig, options: SesOptions): Transport {
  const client = new SESv2Client({
    region: config.settings.region,
    ...(options.endpoint ? { endpoint: options.endpoint } : {}),
    credentials: { accessKeyId: config.credentials.access_key_id, secretAccessKey: config.credentials.secret_access_key },
    maxAttempts: 1,
    // without throwOnRequestTimeout the SDK only logs a warning when the deadline passes, and waits on
    requestHandler: { requestTimeout: options.timeoutMs, connectionTimeout: options.timeoutMs, throwOnRequestTimeout: true },
  });
  return {
    route: options.route,
    async send(message: OutgoingMessage): Promise<DeliveryResult> {
      if (message.rcptTo.length === 0) throw new DeliveryError('permanent', 'config', `${LABEL}: no recipient given`);
      const command = new SendEmailCommand({
        ...(message.mailFrom ? { FromEmailAddress: message.mailFrom } : {}),
        Destination: { ToAddresses: message.rcptTo },
        Content: { Raw: { Data: new Uint8Array(message.raw) } },
        ...(config.settings.configuration_set ? { ConfigurationSetName: config.settings.configuration_set } : {}),
        EmailTags: [{ Name: 'outbound_id', Value: message.id.replace(/[^A-Za-z0-9_-]/g, '_') }],
      });
      try {
        const out = await client.send(command);
        return { reply: `200 OK (${LABEL} id ${out.MessageId ?? 'none'})`, providerMessageId: out.MessageId };
      } catch (err) {
        throw sesFailure(err, options.timeoutMs);
      }
    },
    async verify(): Promise<void> {
      let sendingEnabled: boolean | undefined;
      try {
        sendingEnabled = (await client.send(new GetAccountCommand({}))).SendingEnabled;
      } catch (err) {
        throw sesFailure(err, options.timeoutMs);
      }
      if (sendingEnabled === false) throw routeFailure('auth', `${LABEL}: sending is disabled for this account in ${config.settings.region}`);
    },
    close(): void {
      client.destroy();
    },
  };
}

interface SdkError {
  name?: string;
  message?: string;
  code?: string;
  $metadata?: { httpStatusCode?: number };
}

function sesFailure(err: unknown, timeoutMs: number): DeliveryError {
  const e = (typeof err === 'object' && err !== null ? err : {}) as SdkError;
  const status = e.$metadata?.httpStatusCode;
  const reason = `${e.name ?? 'Error'}: ${e.message ?? String(err)}`;
  if (status === undefined) {
    const network = e.name === 'TimeoutError' || e.name === 'RequestTimeout' ? `no answer within ${timeoutMs} ms` : `cannot reach the API (${e.code ?? reason})`;
    return routeFailure('connect', `${LABEL}: ${network}`, err);
  }
  if (e.name && ROUTE_ERRORS.has(e.name)) return routeFailure('http', `${LABEL} ${status}: ${reason}`, err);
  return statusFailure(LABEL, status, reason);
}
