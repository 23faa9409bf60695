/**
 * A real Postfix, Debian's package, run as a throwaway instance: its own main.cf, master.cf, queue
 * and data directories in a temporary directory, smtpd on 127.0.0.1:<port> only, started with
 * `postfix -c DIR start` and stopped with `postfix -c DIR stop`. Used by the interoperability suite
 * (Postfix relaying into our MX, Postfix receiving our outbound mail) and by `npm run bench`
 * (Postfix accepting into its own durable queue). The system's /etc/postfix is never touched and no
 * system-wide Postfix is started.
 *
 * Postfix needs root to start its master (it drops to `mail_owner`). Its logs go to
 * `DIR/maillog` (maillog_file, Postfix ≥ 3.4), since there is no syslog here.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import net from 'node:net';
import path from 'node:path';

const POSTFIX = '/usr/sbin/postfix';

/** Why a Postfix instance cannot run here, or null when it can. */
export function postfixUnavailable(): string | null {
  if (!existsSync(POSTFIX)) return `${POSTFIX} is missing (apt-get install postfix)`;
  if (userInfo().uid !== 0) return 'starting a Postfix master needs root';
  if (spawnSync('id', ['postfix']).status !== 0) return 'the postfix user does not exist';
  return null;
}

export interface PostfixOptions {
  /** smtpd listens on 127.0.0.1:port. */
  port: number;
  /** main.cf settings added to (and overriding) the defaults below. */
  main?: Record<string, string>;
  /** Extra master.cf lines (e.g. a second listener). */
  masterLines?: string[];
  /** Files written into the config directory before start (e.g. maps), name → content. */
  files?: Record<string, string>;
}

export interface PostfixInstance {
  readonly dir: string;
  readonly configDir: string;
  readonly port: number;
  /** The log so far. */
  log(): string;
  /** Waits until the log matches `re` (polls), or throws with the log's tail. */
  waitForLog(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Runs `postconf -c DIR name` style queries, or any postfix tool with `-c DIR`. */
  postconf(name: string): string;
  /** Number of messages in the named queue directories (default: all that hold mail). */
  queued(queues?: string[]): number;
  stop(): Promise<void>;
}

/** The master.cf Debian ships, with the public smtp listener moved to 127.0.0.1:port, unchrooted. */
function masterCf(port: number, extra: string[]): string {
  const proto = ['/etc/postfix/master.cf.proto', '/etc/postfix/master.cf'].find((p) => existsSync(p));
  if (!proto) throw new Error('no master.cf(.proto) in /etc/postfix to start from');
  const lines = readFileSync(proto, 'utf8').split('\n');
  const at = lines.findIndex((l) => /^smtp\s+inet\s/.test(l));
  if (at < 0) throw new Error(`${proto} has no "smtp inet" line`);
  lines[at] = `127.0.0.1:${port} inet n - n - - smtpd`;
  return [...lines, ...extra, ''].join('\n');
}

export async function startPostfix(options: PostfixOptions): Promise<PostfixInstance> {
  const why = postfixUnavailable();
  if (why) throw new Error(`cannot start Postfix: ${why}`);
  const dir = mkdtempSync(path.join(tmpdir(), 'postfix-'));
  // the postfix user must reach the queue and data directories below it
  chmodSync(dir, 0o755);
  const configDir = path.join(dir, 'etc');
  const dataDir = path.join(dir, 'data');
  const maillog = path.join(dir, 'maillog');
  for (const d of [configDir, path.join(dir, 'spool'), dataDir]) mkdirSync(d, { recursive: true });
  const postfixUid = Number(execFileSync('id', ['-u', 'postfix']).toString().trim());
  const postfixGid = Number(execFileSync('id', ['-g', 'postfix']).toString().trim());
  chownSync(dataDir, postfixUid, postfixGid);

  const main: Record<string, string> = {
    compatibility_level: '3.6',
    config_directory: configDir,
    queue_directory: path.join(dir, 'spool'),
    data_directory: dataDir,
    mail_owner: 'postfix',
    setgid_group: 'postdrop',
    inet_interfaces: '127.0.0.1',
    inet_protocols: 'ipv4',
    myhostname: 'postfix.test.local',
    mydestination: '',
    mynetworks: '127.0.0.0/8',
    maillog_file: maillog,
    maillog_file_prefixes: dir,
    smtputf8_enable: 'no',
    // never look anything up on the internet: no DNS for relays ([host] nexthops), no biff
    smtp_dns_support_level: 'disabled',
    biff: 'no',
    // load from one address must not be throttled (anvil)
    smtpd_client_connection_count_limit: '0',
    smtpd_client_connection_rate_limit: '0',
    smtpd_client_message_rate_limit: '0',
    default_process_limit: '200',
    ...options.main,
  };
  writeFileSync(path.join(configDir, 'main.cf'), Object.entries(main).map(([k, v]) => `${k} = ${v}`).join('\n') + '\n');
  writeFileSync(path.join(configDir, 'master.cf'), masterCf(options.port, options.masterLines ?? []));
  for (const f of ['dynamicmaps.cf']) if (existsSync(`/etc/postfix/${f}`)) copyFileSync(`/etc/postfix/${f}`, path.join(configDir, f));
  for (const [name, content] of Object.entries(options.files ?? {})) writeFileSync(path.join(configDir, name), content);

  const run = (args: string[]): { status: number | null; out: string } => {
    // Postfix writes its own errors only to a terminal or syslog: the log file has them
    const r = spawnSync(POSTFIX, ['-c', configDir, ...args], { encoding: 'utf8', timeout: 30_000 });
    return { status: r.status, out: `${r.stdout}${r.stderr}` };
  };
  const log = (): string => (existsSync(maillog) ? readFileSync(maillog, 'utf8') : '');
  const started = run(['start']);
  if (started.status !== 0) {
    const text = log();
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`postfix start failed (exit ${started.status}): ${started.out}\n${text.slice(-2000)}`);
  }
  await waitListening(options.port, log);

  let stopped = false;
  return {
    dir,
    configDir,
    port: options.port,
    log,
    async waitForLog(re, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const m = log().match(re);
        if (m) return m;
        if (Date.now() > deadline) throw new Error(`Postfix log never matched ${re}; its tail:\n${log().slice(-3000)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    postconf(name) {
      return execFileSync('/usr/sbin/postconf', ['-c', configDir, '-h', name], { encoding: 'utf8' }).trim();
    },
    queued(queues = ['incoming', 'active', 'deferred', 'hold', 'maildrop']) {
      let n = 0;
      for (const q of queues) n += countFiles(path.join(dir, 'spool', q));
      return n;
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      run(['stop']);
      // postfix stop returns before master has gone: wait for its pid file to be released
      const deadline = Date.now() + 10_000;
      while (Date.now() < deadline && spawnSync(POSTFIX, ['-c', configDir, 'status']).status === 0) await new Promise((r) => setTimeout(r, 100));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function countFiles(d: string): number {
  if (!existsSync(d)) return 0;
  let n = 0;
  for (const e of readdirSync(d, { withFileTypes: true })) n += e.isDirectory() ? countFiles(path.join(d, e.name)) : 1;
  return n;
}

async function waitListening(port: number, log: () => string): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`Postfix never listened on 127.0.0.1:${port}; log tail:\n${log().slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
