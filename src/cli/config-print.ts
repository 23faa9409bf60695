/**
 * `npm run config:print`: the resolved configuration (environment, `.env`, defaults) with
 * secrets redacted, or the list of every bad key. Like WildDuck's printconf.
 */
import { ConfigError, loadConfig, redactedConfig } from '../config/load.js';

try {
  process.stdout.write(`${JSON.stringify(redactedConfig(loadConfig()), null, 2)}\n`);
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  process.stderr.write(`${err.message}\n`);
  process.exitCode = 78;
}
