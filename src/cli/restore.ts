/**
 * Restore CLI (`scripts/restore <dir> [--force]`, `npm run restore -- <dir>`): puts a backup
 * made by scripts/backup into the configured database and blob store. The whole backup is
 * verified first (every file's SHA-256, the migrations, SECRETS_KEY); any problem stops it
 * before the database or the store is touched. The database must be empty (--force empties it)
 * and no server may be using it. What happens in which order: services/backup-restore.service.ts.
 */
import { createDb, checkDurability, migrationNames } from '../db/database.js';
import { openBlobStore } from '../blobs/open-blob-store.js';
import { formatBytes } from '../services/backup.service.js';
import { RESTORE_APPLICATION_NAME, RestoreService } from '../services/backup-restore.service.js';
import { verifyBackup } from '../services/backup-verify.js';
import { formatDuration, openDatabaseUrl, runCli } from './backup-common.js';

const USAGE = `usage: scripts/restore <dir> [--force] [--new-secrets-key] [--verify-only]    (or: npm run restore -- <dir>)

Restores the backup in <dir> into the database and blob store of the current configuration
(.env and the environment: DATABASE_URL or DATA_DIR, STORAGE_DRIVER, SECRETS_KEY). The mail
server must be stopped. The blob store may use another driver than the backup's (local -> azure).

options:
  --force             empty a database that already holds data, then restore into it
  --new-secrets-key   restore although SECRETS_KEY is not the backup's key (DKIM keys and
                      relay/provider passwords will not decrypt and must be entered again)
  --verify-only       check the backup (every file's SHA-256, the migrations, SECRETS_KEY) and
                      stop: touches no database or blob store; the server may be running
  --help              show this text

exit codes: 0 done, 1 refused or failed (the reason on stderr), 2 bad arguments or configuration`;

runCli(
  {
    usage: USAGE,
    flags: ['force', 'new-secrets-key', 'verify-only'],
    async run({ config, logger, dir, flags, out }) {
      out(`verifying the backup in ${dir}`);
      const knownMigrations = migrationNames();
      const backup = await verifyBackup(dir, {
        knownMigrations,
        secretsKey: config.SECRETS_KEY,
        allowOtherSecretsKey: flags['new-secrets-key'] === true,
        progress: out,
      });
      if (flags['verify-only']) {
        out(`the backup is complete and intact (made ${backup.manifest.created_at} by version ${backup.manifest.app_version}, schema ${backup.manifest.last_migration})`);
        return;
      }
      const database = await openDatabaseUrl(config, logger, 'own');
      const url = new URL(database.url);
      url.searchParams.set('application_name', RESTORE_APPLICATION_NAME);
      const { db } = createDb({ url: url.toString(), poolSize: 2, logger });
      try {
        await checkDurability(db);
        const blobs = await openBlobStore(config);
        try {
          out(`restoring into the database and the ${blobs.driver} blob store`);
          const summary = await new RestoreService({ db, databaseUrl: url.toString(), blobs, knownMigrations, logger, progress: out }).restore(
            backup,
            flags.force === true,
          );
          out(
            `done: ${summary.tables} tables, ${summary.rows} rows, ${summary.blobs} blobs (${formatBytes(summary.blobBytes)}) ` +
              `restored in ${formatDuration(summary.durationMs)}; start the mail server`,
          );
        } finally {
          await blobs.close();
        }
      } finally {
        await db.destroy();
        await database.stop();
      }
    },
  },
  process.argv.slice(2),
);
