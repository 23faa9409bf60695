import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig, redactedConfig } from '../../src/config/load.js';
import { tempDir } from '../helpers/harness.js';

function load(env: Record<string, string>, envFile: string | null = null) {
  return loadConfig({ env: { DATA_DIR: env.DATA_DIR ?? tempDir(), ...env }, envFile });
}

describe('config', () => {
  it('when nothing is set, then the documented defaults apply', () => {
    const c = load({});
    assert.equal(c.API_PORT, 3000);
    assert.equal(c.SMTP_PORT, 2525);
    assert.equal(c.SUBMISSION_PORT, 2587);
    assert.equal(c.SMTPS_PORT, 2465);
    assert.equal(c.MAX_MESSAGE_SIZE, 25 * 1024 * 1024);
    assert.equal(c.MAX_RECIPIENTS, 100);
    assert.equal(c.STORAGE_DRIVER, 'local');
    assert.deepEqual(c.ROLES, ['api', 'smtp', 'worker']);
    assert.equal(c.DATABASE_URL, undefined);
  });

  it('when several values are bad, then one error lists every bad key', () => {
    assert.throws(
      () => load({ API_PORT: 'abc', SMTP_PORT: '70000', STORAGE_DRIVER: 'ftp', MAX_RECIPIENTS: '0', DNS_SERVERS: 'not-an-ip', ROLES: 'api,mail' }),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        for (const key of ['API_PORT', 'SMTP_PORT', 'STORAGE_DRIVER', 'MAX_RECIPIENTS', 'DNS_SERVERS', 'ROLES']) {
          assert.ok(err.problems.some((p) => p.startsWith(key)), `missing ${key} in ${err.message}`);
        }
        return true;
      },
    );
  });

  it('when NODE_ENV=production lacks JWT_SECRET and SECRETS_KEY, then both are reported', () => {
    assert.throws(
      () => load({ NODE_ENV: 'production' }),
      (err: unknown) => err instanceof ConfigError && err.problems.some((p) => p.startsWith('JWT_SECRET')) && err.problems.some((p) => p.startsWith('SECRETS_KEY')),
    );
  });

  it('when STORAGE_DRIVER=azure has no connection string, then it is reported', () => {
    assert.throws(() => load({ STORAGE_DRIVER: 'azure' }), /AZURE_STORAGE_CONNECTION_STRING/);
  });

  it('when only one of TLS_CERT_FILE and TLS_KEY_FILE is set, then it is reported', () => {
    assert.throws(() => load({ TLS_CERT_FILE: '/x.pem' }), /TLS_KEY_FILE/);
  });

  it('when secrets are not set outside production, then they are generated once into DATA_DIR and reused', () => {
    const dir = tempDir();
    const a = load({ DATA_DIR: dir });
    const b = load({ DATA_DIR: dir });
    assert.equal(a.JWT_SECRET, b.JWT_SECRET);
    assert.equal(a.SECRETS_KEY, b.SECRETS_KEY);
    assert.match(a.SECRETS_KEY, /^[0-9a-f]{64}$/);
    assert.ok(existsSync(path.join(dir, 'secrets', 'jwt-secret')));
  });

  it('when a .env file sets a value, then the environment still wins over it', () => {
    const dir = tempDir();
    const file = path.join(dir, '.env');
    writeFileSync(file, 'API_PORT=4000\nSMTP_PORT=4025\n');
    const c = load({ DATA_DIR: dir, SMTP_PORT: '5025' }, file);
    assert.equal(c.API_PORT, 4000);
    assert.equal(c.SMTP_PORT, 5025);
  });

  it('when the config is printed, then secrets are redacted', () => {
    const c = load({ DATABASE_URL: 'postgres://u:supersecret@127.0.0.1/db', SECRETS_KEY: 'a'.repeat(64) });
    const shown = JSON.stringify(redactedConfig(c));
    assert.ok(!shown.includes('supersecret'));
    assert.ok(!shown.includes('a'.repeat(64)));
    assert.ok(!shown.includes(c.JWT_SECRET));
  });

  it('when a bad secret value is reported, then the value itself is not echoed', () => {
    try {
      load({ SECRETS_KEY: 'short-secret-value' });
      assert.fail('should throw');
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      assert.ok(!err.message.includes('short-secret-value'));
    }
  });

  it('when .env.example lists variables, then every schema variable is documented there', () => {
    const example = readFileSync(path.resolve(import.meta.dirname, '../../../.env.example'), 'utf8');
    const c = load({});
    for (const key of Object.keys(c)) assert.ok(new RegExp(`^#? ?${key}=`, 'm').test(example), `.env.example lacks ${key}`);
  });
});
