/**
 * verifyBackup(dir): checks a whole backup directory before a restore touches anything. Every
 * file the manifest names must exist with its SHA-256, size and row count; every blob must be
 * there with the SHA-256 and size its index gives; the schema's migrations must all be known to
 * this code; and SECRETS_KEY must be the key the backup's secrets were encrypted with. The first
 * problem found is thrown as an AppError naming the file or blob, so the operator knows what is
 * wrong, and the target database and blob store stay exactly as they were.
 */
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { assertSafeKey } from '../blobs/blob-store.js';
import { AppError } from '../core/errors.js';
import {
  BLOBS_DIR,
  forEachLine,
  HashingMeter,
  hashFile,
  MANIFEST_FILE,
  manifestSchema,
  parseBlobLine,
  secretsKeyCheck,
  type Manifest,
  type ManifestTable,
} from './backup-manifest.js';

export interface VerifyOptions {
  /** The migrations this code knows, oldest first. */
  knownMigrations: string[];
  secretsKey: string;
  /** Restore even when SECRETS_KEY differs (the encrypted secrets will not decrypt). */
  allowOtherSecretsKey: boolean;
  progress: (line: string) => void;
}

export interface VerifiedBackup {
  dir: string;
  manifest: Manifest;
}

const VERIFY_CONCURRENCY = 4;

export async function verifyBackup(dir: string, options: VerifyOptions): Promise<VerifiedBackup> {
  const root = path.resolve(dir);
  const manifest = await readManifest(root);
  checkMigrations(manifest, options.knownMigrations);
  if (manifest.secrets_key_check !== secretsKeyCheck(options.secretsKey) && !options.allowOtherSecretsKey) {
    throw new AppError(
      'conflict',
      'this backup was made with a different SECRETS_KEY: the DKIM keys and relay/provider passwords in it would not decrypt. ' +
        'Set SECRETS_KEY to the key of the server the backup came from (its environment, or DATA_DIR/secrets/secrets-key), ' +
        'or pass --new-secrets-key to restore anyway and enter those secrets again',
    );
  }
  for (const table of manifest.tables) await verifyTable(root, table);
  options.progress(`verified ${manifest.tables.length} tables (${manifest.tables.reduce((n, t) => n + t.rows, 0)} rows)`);
  await verifyBlobs(root, manifest);
  options.progress(`verified ${manifest.blobs.count} blobs`);
  return { dir: root, manifest };
}

async function readManifest(root: string): Promise<Manifest> {
  const stat = await fs.stat(root).catch(() => null);
  if (!stat) throw new AppError('not_found', `backup directory ${root} does not exist`);
  if (!stat.isDirectory()) throw new AppError('validation_failed', `${root} is not a directory`);
  let text: string;
  try {
    text = await fs.readFile(path.join(root, MANIFEST_FILE), 'utf8');
  } catch {
    throw new AppError('not_found', `${root} has no ${MANIFEST_FILE}: it is not a backup, or the backup did not finish`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new AppError('validation_failed', `${MANIFEST_FILE} in ${root} is not valid JSON`);
  }
  const parsed = manifestSchema.safeParse(json);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(manifest)'}: ${i.message}`).join('; ');
    throw new AppError('validation_failed', `${MANIFEST_FILE} in ${root} is not a backup manifest this version understands: ${problems}`);
  }
  const manifest = parsed.data;
  const names = new Set(manifest.tables.map((t) => t.name));
  if (names.size !== manifest.tables.length) throw new AppError('validation_failed', `${MANIFEST_FILE} lists a table twice`);
  for (const t of manifest.tables) {
    if (t.file !== `db/${t.name}.copy.gz`) throw new AppError('validation_failed', `${MANIFEST_FILE}: table ${t.name} points at ${t.file}`);
  }
  if (!names.has('kysely_migration')) throw new AppError('validation_failed', `${MANIFEST_FILE} has no kysely_migration table`);
  return manifest;
}

/** The backup's migrations must be exactly the first ones this code knows. */
function checkMigrations(manifest: Manifest, known: string[]): void {
  if (manifest.migrations.at(-1) !== manifest.last_migration) {
    throw new AppError('validation_failed', `${MANIFEST_FILE}: last_migration ${manifest.last_migration} is not the last of its migrations`);
  }
  manifest.migrations.forEach((name, i) => {
    if (known[i] === name) return;
    if (!known.includes(name)) {
      throw new AppError(
        'validation_failed',
        `the backup's schema has migration "${name}", which this version of the mail server does not know (it knows up to "${known.at(-1) ?? 'none'}"): ` +
          `restore with the version that made the backup (${manifest.app_version}) or a later one`,
      );
    }
    throw new AppError('validation_failed', `the backup's migrations are not in this version's order (at "${name}")`);
  });
}

/** The file's SHA-256 and size, and its row count (COPY text: one line per row), in one read. */
async function verifyTable(root: string, table: ManifestTable): Promise<void> {
  const file = path.join(root, table.file);
  const meter = new HashingMeter();
  let rows = 0;
  const counter = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) rows++;
      done();
    },
  });
  try {
    await pipeline(createReadStream(file), meter, createGunzip(), counter);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new AppError('not_found', `backup file ${table.file} is missing`);
    // a hash mismatch below says it better when the bytes were changed
    if (meter.digest() === table.sha256) throw new AppError('validation_failed', `backup file ${table.file} cannot be read: ${(err as Error).message}`);
    throw new AppError('validation_failed', `backup file ${table.file} is damaged: its SHA-256 does not match the manifest`);
  }
  if (meter.digest() !== table.sha256 || meter.bytes !== table.bytes) {
    throw new AppError('validation_failed', `backup file ${table.file} is damaged: its SHA-256 does not match the manifest`);
  }
  if (rows !== table.rows) throw new AppError('validation_failed', `backup file ${table.file} has ${rows} rows; the manifest says ${table.rows}`);
}

async function verifyBlobs(root: string, manifest: Manifest): Promise<void> {
  const index = path.join(root, manifest.blobs.index_file);
  const indexHash = await hashFile(index).catch(() => {
    throw new AppError('not_found', `backup file ${manifest.blobs.index_file} is missing`);
  });
  if (indexHash.sha256 !== manifest.blobs.index_sha256) {
    throw new AppError('validation_failed', `backup file ${manifest.blobs.index_file} is damaged: its SHA-256 does not match the manifest`);
  }
  let count = 0;
  let bytes = 0;
  await forEachLine(index, VERIFY_CONCURRENCY, async (line) => {
    const entry = parseBlobLine(line);
    if (!entry) throw new AppError('validation_failed', `${manifest.blobs.index_file} has a bad line: ${line.slice(0, 200)}`);
    assertSafeKey(entry.key);
    const file = path.join(root, BLOBS_DIR, ...entry.key.split('/'));
    const actual = await hashFile(file).catch(() => null);
    if (!actual) throw new AppError('not_found', `blob ${entry.key} is missing from the backup (${path.join(BLOBS_DIR, entry.key)})`);
    if (actual.sha256 !== entry.sha256 || actual.bytes !== entry.size) {
      throw new AppError('validation_failed', `blob ${entry.key} in the backup is damaged: its SHA-256 is ${actual.sha256}, expected ${entry.sha256}`);
    }
    count++;
    bytes += entry.size;
  });
  if (count !== manifest.blobs.count || bytes !== manifest.blobs.bytes) {
    throw new AppError('validation_failed', `the blob index lists ${count} blobs (${bytes} bytes); the manifest says ${manifest.blobs.count} (${manifest.blobs.bytes} bytes)`);
  }
}
