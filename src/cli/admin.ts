/**
 * Admin CLI (`npm run admin -- <command> [options]`): operator tasks against the same database
 * and blob store as the server, which may be running at the same time. Errors are one line on
 * stderr and a non-zero exit (2 for usage, 1 for a refused or failed operation).
 */
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from '../config/load.js';
import { describeError, isAppError } from '../core/errors.js';
import { createLogger } from '../core/logger.js';
import type { UserRole } from '../db/types.js';
import { openServices, type Services } from '../server.js';

const USAGE = `usage: npm run admin -- <command> [options]

commands:
  create-tenant --name <name>
  add-domain --tenant <name> --domain <domain>
  create-user --email <address> --password <pw> [--quota-mb N] [--role owner|admin|member] [--name <display name>]
  list-messages --mailbox <address> [--limit N]
  show-message <id> [--raw]
  collect-blobs                      delete blobs no message references (after the grace period)`;

class UsageError extends Error {}

interface Command {
  options: Record<string, { type: 'string' | 'boolean' }>;
  positionals?: number;
  run(s: Services, values: Record<string, string | boolean | undefined>, positionals: string[], out: (line: string) => void): Promise<void>;
}

const COMMANDS: Record<string, Command> = {
  'create-tenant': {
    options: { name: { type: 'string' } },
    async run(s, v, _p, out) {
      const tenant = await s.accounts.createTenant(required(v, 'name'));
      out(`created tenant ${tenant.name} (${tenant.id})`);
    },
  },
  'add-domain': {
    options: { tenant: { type: 'string' }, domain: { type: 'string' } },
    async run(s, v, _p, out) {
      const tenant = await s.accounts.findTenantByName(required(v, 'tenant'));
      const domain = await s.accounts.addDomain(tenant.id, required(v, 'domain'));
      out(`added domain ${domain.name} to ${tenant.name} (${domain.id}), status ${domain.status}`);
      out(`DKIM selector: ${domain.dkim_selector}`);
    },
  },
  'create-user': {
    options: { email: { type: 'string' }, password: { type: 'string' }, 'quota-mb': { type: 'string' }, role: { type: 'string' }, name: { type: 'string' } },
    async run(s, v, _p, out) {
      const role = (v.role as string | undefined) ?? 'member';
      if (!['owner', 'admin', 'member'].includes(role)) throw new UsageError(`--role must be owner, admin or member (got "${role}")`);
      const quota = v['quota-mb'] === undefined ? undefined : Number(v['quota-mb']);
      if (quota !== undefined && !Number.isInteger(quota)) throw new UsageError(`--quota-mb must be a whole number (got "${String(v['quota-mb'])}")`);
      const { user, mailbox } = await s.accounts.createUser({
        email: required(v, 'email'),
        password: required(v, 'password'),
        role: role as UserRole,
        quotaMb: quota,
        name: (v.name as string | undefined) ?? null,
      });
      out(`created user ${user.email} (${user.id}), role ${user.role}`);
      if (mailbox) out(`mailbox ${mailbox.address}, quota ${Math.round(mailbox.quota_bytes / 1048576)} MB, folders INBOX Sent Drafts Trash Junk`);
    },
  },
  'list-messages': {
    options: { mailbox: { type: 'string' }, limit: { type: 'string' } },
    async run(s, v, _p, out) {
      const limit = v.limit === undefined ? 50 : Number(v.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) throw new UsageError('--limit must be a whole number from 1 to 10000');
      const rows = await s.messages.listMessages(required(v, 'mailbox'), limit);
      if (rows.length === 0) out('no messages');
      for (const m of rows) {
        const from = m.from_address ? (m.from_name ? `${m.from_name} <${m.from_address}>` : m.from_address) : '(no sender)';
        out(`${m.id}  ${m.received_at.toISOString()}  ${from}  ${m.subject || '(no subject)'}`);
      }
    },
  },
  'show-message': {
    options: { raw: { type: 'boolean' } },
    positionals: 1,
    async run(s, v, p, out) {
      const id = p[0];
      if (!id) throw new UsageError('show-message needs a message id');
      const { message, attachments } = await s.messages.getMessage(id);
      if (v.raw) {
        const raw = await s.messages.openRaw(message);
        for await (const chunk of raw) process.stdout.write(chunk as Buffer);
        return;
      }
      out(`id:          ${message.id}`);
      out(`mailbox:     ${message.envelope_to ?? ''}`);
      out(`received:    ${message.received_at.toISOString()}`);
      out(`from:        ${message.from_name ? `${message.from_name} <${message.from_address}>` : message.from_address}`);
      out(`to:          ${(message.to_addresses as unknown as { address: string }[]).map((a) => a.address).join(', ')}`);
      out(`subject:     ${message.subject}`);
      out(`message-id:  ${message.message_id ?? ''}`);
      out(`size:        ${message.size} bytes (sha256 ${message.raw_sha256})`);
      out(`auth:        ${JSON.stringify(message.auth_summary)}`);
      for (const a of attachments) out(`attachment:  ${a.filename ?? '(unnamed)'} ${a.content_type} ${a.size} bytes`);
      out('');
      out(message.text_body ?? message.snippet);
    },
  },
  'collect-blobs': {
    options: {},
    async run(s, _v, _p, out) {
      const result = await s.collector.collect();
      out(`deleted ${result.deleted} unreferenced blobs (${result.scanned} objects scanned)`);
    },
  },
};

function required(values: Record<string, string | boolean | undefined>, name: string): string {
  const v = values[name];
  if (typeof v !== 'string' || v.length === 0) throw new UsageError(`--${name} is required`);
  return v;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return name ? 0 : 2;
  }
  const command = COMMANDS[name];
  if (!command) {
    process.stderr.write(`error: unknown command "${name}"\n${USAGE}\n`);
    return 2;
  }
  let parsed;
  try {
    parsed = parseArgs({ args: rest, options: command.options, allowPositionals: (command.positionals ?? 0) > 0, strict: true });
  } catch (err) {
    process.stderr.write(`error: ${describeError(err)}\n`);
    return 2;
  }
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      return 78;
    }
    throw err;
  }
  const logger = createLogger(config.LOG_LEVEL === 'info' ? 'warn' : config.LOG_LEVEL, { name: 'admin' });
  const opened = await openServices(config, logger, 'shared');
  try {
    await command.run(opened.services, parsed.values, parsed.positionals, (line) =>
      process.stdout.write(`${line}\n`),
    );
    return 0;
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`error: ${err.message}\n`);
      return 2;
    }
    if (isAppError(err)) {
      process.stderr.write(`error: ${err.message}\n`);
      return 1;
    }
    throw err;
  } finally {
    await opened.close();
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`error: ${describeError(err)}\n`);
    process.exit(1);
  },
);
