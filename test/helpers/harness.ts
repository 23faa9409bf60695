/**
 * Test harness: a fresh database per test file inside the run's embedded PostgreSQL
 * (TEST_PG_ADMIN_URL, set by scripts/run-tests.mjs), and the real server built in-process by
 * createServer() on port 0 with a temporary DATA_DIR. Nothing of ours is mocked.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { loadConfig, type Config } from '../../src/config/load.js';
import { createLogger } from '../../src/core/logger.js';
import type { Mailbox, User } from '../../src/db/types.js';
import { createServer, type RunningServer, type Services } from '../../src/server.js';

export function adminUrl(): string {
  const url = process.env.TEST_PG_ADMIN_URL;
  if (!url) throw new Error('TEST_PG_ADMIN_URL is not set: run the tests with `npm test` (scripts/run-tests.mjs)');
  return url;
}

/** Creates an empty database and returns its URL. */
export async function createTestDatabase(): Promise<string> {
  const name = `t_${randomBytes(6).toString('hex')}`;
  const client = new pg.Client({ connectionString: adminUrl() });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE ${name}`);
  } finally {
    await client.end();
  }
  const url = new URL(adminUrl());
  url.pathname = `/${name}`;
  return url.toString();
}

export function tempDir(prefix = 'mailserver-test-'): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  chmodSync(dir, 0o755);
  return dir;
}

export interface TestServer {
  config: Config;
  server: RunningServer;
  services: Services;
  smtpPort: number;
  submissionPort: number;
  smtpsPort: number;
  apiPort: number;
  dataDir: string;
  stop(): Promise<void>;
}

/** Env defaults for an in-process server; `env` overrides them. */
export function testEnv(dataDir: string, databaseUrl: string, env: Record<string, string> = {}): Record<string, string> {
  return {
    NODE_ENV: 'test',
    DATA_DIR: dataDir,
    DATABASE_URL: databaseUrl,
    BIND_HOST: '127.0.0.1',
    SMTP_PORT: '0',
    API_PORT: '0',
    SUBMISSION_PORT: '0',
    SMTPS_PORT: '0',
    MAIL_HOSTNAME: 'mx.test.local',
    ROLES: 'api,smtp',
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    // inbound verification needs DNS; tests that check it start a local DNS server and enable it
    INBOUND_AUTH_ENABLED: 'false',
    DATABASE_POOL_SIZE: '10',
    ...env,
  };
}

export async function startTestServer(env: Record<string, string> = {}): Promise<TestServer> {
  const dataDir = tempDir();
  const config = loadConfig({ env: testEnv(dataDir, await createTestDatabase(), env), envFile: null });
  const logger = createLogger(config.LOG_LEVEL);
  const server = await createServer(config, logger);
  return {
    config,
    server,
    services: server.services,
    smtpPort: server.ports.smtp ?? 0,
    submissionPort: server.ports.submission ?? 0,
    smtpsPort: server.ports.smtps ?? 0,
    apiPort: server.ports.api ?? 0,
    dataDir,
    async stop() {
      await server.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

let seq = 0;

/** A tenant, its domain and a user with a mailbox at `address`. */
export async function seedMailbox(services: Services, address: string, options: { quotaMb?: number; password?: string } = {}): Promise<{ user: User; mailbox: Mailbox }> {
  const domain = address.split('@')[1]!;
  const existing = await services.db.selectFrom('domains').select(['tenant_id']).where('name', '=', domain).executeTakeFirst();
  let tenantId = existing?.tenant_id;
  if (!tenantId) {
    const tenant = await services.accounts.createTenant(`tenant-${domain}-${process.pid}-${++seq}`);
    await services.accounts.addDomain(tenant.id, domain);
    tenantId = tenant.id;
  }
  const { user, mailbox } = await services.accounts.createUser({
    email: address,
    password: options.password ?? 'password-123',
    quotaMb: options.quotaMb,
    tenantId,
  });
  if (!mailbox) throw new Error('no mailbox created');
  return { user, mailbox };
}

/** Marks a domain verified, as a successful DNS check would (test setup for sending). */
export async function markVerified(services: Services, domain: string): Promise<void> {
  await services.db.updateTable('domains').set({ status: 'verified', verified_at: new Date() }).where('name', '=', domain).execute();
}

/** Rows in `messages` for a mailbox address. */
export async function messagesFor(services: Services, address: string): Promise<{ id: string; raw_sha256: string; subject: string }[]> {
  return services.db
    .selectFrom('messages')
    .innerJoin('mailboxes', 'mailboxes.id', 'messages.mailbox_id')
    .select(['messages.id', 'messages.raw_sha256', 'messages.subject'])
    .where('mailboxes.address', '=', address)
    .execute();
}

export async function countRows(services: Services, table: 'messages' | 'blobs' | 'attachments'): Promise<number> {
  const row = await services.db.selectFrom(table).select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
  return Number(row.n);
}
