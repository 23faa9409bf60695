/**
 * Backup CLI (`scripts/backup <dir>`, `npm run backup -- <dir>`): a consistent copy of the
 * database and every blob into a new directory, while the server keeps running (it reads one
 * snapshot and holds the backup lock so the blob collector deletes nothing meanwhile). With the
 * embedded PostgreSQL it uses the running server's instance, or starts one for the command.
 * What is in a backup and why: services/backup.service.ts and backup-manifest.ts.
 */
import { formatBytes, BackupService } from '../services/backup.service.js';
import { openBlobStore } from '../blobs/open-blob-store.js';
import { appVersion, formatDuration, openDatabaseUrl, runCli } from './backup-common.js';

const USAGE = `usage: scripts/backup <dir>        (or: npm run backup -- <dir>)

Writes a consistent backup of the database and the blob store to <dir>, which must not exist
or be empty. The server may keep running. Reads the same configuration as the server (.env and
the environment: DATABASE_URL or DATA_DIR, STORAGE_DRIVER, SECRETS_KEY).

options:
  --help    show this text

exit codes: 0 done, 1 failed (the reason on stderr; nothing is left at <dir>), 2 bad arguments or configuration`;

runCli(
  {
    usage: USAGE,
    flags: [],
    async run({ config, logger, dir, out }) {
      const database = await openDatabaseUrl(config, logger, 'shared');
      try {
        const blobs = await openBlobStore(config);
        try {
          out(`backup of the database and the ${blobs.driver} blob store to ${dir}`);
          const summary = await new BackupService({
            databaseUrl: database.url,
            blobs,
            appVersion: appVersion(),
            secretsKey: config.SECRETS_KEY,
            progress: out,
          }).backup(dir);
          out(
            `done: ${summary.tables} tables, ${summary.rows} rows, ${summary.blobs} blobs (${formatBytes(summary.blobBytes)}), ` +
              `${formatBytes(summary.bytes)} written to ${summary.dir} in ${formatDuration(summary.durationMs)}`,
          );
        } finally {
          await blobs.close();
        }
      } finally {
        await database.stop();
      }
    },
  },
  process.argv.slice(2),
);
