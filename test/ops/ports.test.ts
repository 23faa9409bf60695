/**
 * scripts/ports.sh in a network namespace of its own (`unshare -n`, as root), so the host's
 * rules are never touched (the test compares them before and after): `add` twice leaves one rule
 * per port, a connection to 127.0.0.1:25/587/465 really reaches the listener on the high port,
 * changing a port and adding again replaces the rule, `remove` leaves the nat table as it was.
 * --dry-run prints the commands without root; bad arguments exit 2 naming the problem.
 */
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { tempDir } from '../helpers/harness.js';
import { ROOT } from '../helpers/process-server.js';

const SCRIPT = path.join(ROOT, 'scripts/ports.sh');

function hostRules(): string {
  const v4 = spawnSync('iptables', ['-t', 'nat', '-S'], { encoding: 'utf8' });
  const v6 = spawnSync('ip6tables', ['-t', 'nat', '-S'], { encoding: 'utf8' });
  return `${v4.stdout}${v4.stderr}\n${v6.stdout}${v6.stderr}`;
}

/** Listens on the given ports, greeting with the port's number; stays up until killed. */
const LISTENER = `
const net = require('node:net');
for (const p of process.argv.slice(2)) net.createServer((s) => s.end('hello from ' + p + '\\n')).listen(Number(p), '127.0.0.1');
`;
/** Connects to each port and prints what it heard, or "refused". */
const PROBE = `
const net = require('node:net');
(async () => {
  for (const p of process.argv.slice(2)) {
    const heard = await new Promise((resolve) => {
      const s = net.connect(Number(p), '127.0.0.1');
      let got = '';
      s.on('data', (d) => (got += d));
      s.on('end', () => resolve(got.trim()));
      s.on('error', (e) => resolve(e.code === 'ECONNREFUSED' ? 'refused' : e.code));
    });
    console.log(p + ' -> ' + heard);
  }
})();
`;

describe('scripts/ports.sh', () => {
  let dir: string;
  before(() => {
    dir = tempDir('ports-');
    writeFileSync(path.join(dir, 'first.env'), 'SMTP_PORT=2525\nSUBMISSION_PORT="2587"\nSMTPS_PORT=2465\n');
    writeFileSync(path.join(dir, 'second.env'), 'SMTP_PORT=3525\nSUBMISSION_PORT=2587\nSMTPS_PORT=2465\n');
    writeFileSync(path.join(dir, 'listener.js'), LISTENER);
    writeFileSync(path.join(dir, 'probe.js'), PROBE);
  });

  it('when run in its own network namespace, then the redirects work, are idempotent, follow a port change and go away', () => {
    assert.equal(process.getuid?.(), 0, 'this test creates a network namespace and needs root');
    const hostBefore = hostRules();
    const node = process.execPath;
    const script = `
      set -e
      ip link set lo up
      ${node} ${dir}/listener.js 2525 2587 2465 3525 & listener=$!
      sleep 0.5
      echo '== add'; ${SCRIPT} add --env ${dir}/first.env
      echo '== add again'; ${SCRIPT} add --env ${dir}/first.env
      echo '== rules'; iptables -t nat -S; echo '== rules6'; ip6tables -t nat -S
      echo '== probe'; ${node} ${dir}/probe.js 25 587 465
      echo '== change'; ${SCRIPT} add --env ${dir}/second.env
      echo '== rules after change'; iptables -t nat -S MAILSERVER
      echo '== probe after change'; ${node} ${dir}/probe.js 25
      echo '== status'; ${SCRIPT} status --env ${dir}/second.env
      echo '== remove'; ${SCRIPT} remove --env ${dir}/second.env
      echo '== remove again'; ${SCRIPT} remove --env ${dir}/second.env
      echo '== rules after remove'; iptables -t nat -S; ip6tables -t nat -S
      echo '== probe after remove'; ${node} ${dir}/probe.js 25
      kill $listener
    `;
    const r = spawnSync('unshare', ['-n', 'bash', '-c', script], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    const section = (name: string): string => {
      const start = r.stdout.indexOf(`== ${name}\n`);
      assert.ok(start >= 0, `no section ${name} in:\n${r.stdout}`);
      const rest = r.stdout.slice(start + name.length + 4);
      const end = rest.indexOf('\n== ');
      return end < 0 ? rest : rest.slice(0, end);
    };

    for (const family of ['rules', 'rules6']) {
      const rules = section(family);
      for (const [from, to] of [['25', '2525'], ['587', '2587'], ['465', '2465']]) {
        const matching = rules.split('\n').filter((l) => l.includes(`--dport ${from} `) && l.includes(`--to-ports ${to}`));
        assert.equal(matching.length, 1, `${family}: one rule ${from}→${to} after two adds:\n${rules}`);
      }
      assert.equal(rules.split('\n').filter((l) => l === '-A PREROUTING -p tcp -j MAILSERVER').length, 1, `${family}: one PREROUTING jump`);
      assert.equal(rules.split('\n').filter((l) => l === '-A OUTPUT -o lo -p tcp -j MAILSERVER').length, 1, `${family}: one OUTPUT jump`);
    }
    assert.match(section('probe'), /^25 -> hello from 2525$/m);
    assert.match(section('probe'), /^587 -> hello from 2587$/m);
    assert.match(section('probe'), /^465 -> hello from 2465$/m);

    const changed = section('rules after change');
    assert.match(changed, /--dport 25 .*--to-ports 3525/);
    assert.doesNotMatch(changed, /--to-ports 2525/, 'the old target is gone');
    assert.match(section('probe after change'), /^25 -> hello from 3525$/m);
    assert.match(section('status'), /--dport 587 .*--to-ports 2587/);

    assert.doesNotMatch(section('rules after remove'), /MAILSERVER/, 'nothing of ours is left');
    assert.match(section('probe after remove'), /^25 -> refused$/m);
    assert.equal(hostRules(), hostBefore, "the host's own rules are unchanged");
  });

  it('when --dry-run, then it prints the commands and needs no root; a listener on the standard port gets no rule', () => {
    const r = spawnSync('bash', [SCRIPT, 'add', '--dry-run', '--no-ipv6'], {
      env: { PATH: process.env.PATH, SMTP_PORT: '25', SUBMISSION_PORT: '2587', SMTPS_PORT: '2465' },
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^iptables -t nat -A MAILSERVER -p tcp --dport 587 -m comment --comment mailserver -j REDIRECT --to-ports 2587$/m);
    assert.match(r.stdout, /^iptables -t nat -A PREROUTING -p tcp -j MAILSERVER$/m);
    assert.doesNotMatch(r.stdout, /--dport 25 /, 'SMTP_PORT=25 needs no redirect');
    assert.doesNotMatch(r.stdout, /ip6tables/, '--no-ipv6');
  });

  it('when the arguments or ports are bad, then it exits 2 naming the problem', () => {
    const cases: [string[], Record<string, string>, RegExp][] = [
      [[], {}, /say add, remove or status/],
      [['open'], {}, /unknown argument 'open'/],
      [['add', 'remove'], {}, /one action only/],
      [['add', '--dry-run'], { SMTP_PORT: 'abc' }, /SMTP_PORT must be a port number from 1 to 65535, got 'abc'/],
      [['add', '--dry-run'], { SUBMISSION_PORT: '70000' }, /SUBMISSION_PORT must be a port number/],
      [['add', '--dry-run', '--env', '/nonexistent/.env'], {}, /cannot read \/nonexistent\/\.env/],
    ];
    for (const [args, env, message] of cases) {
      const r = spawnSync('bash', [SCRIPT, ...args], { env: { PATH: process.env.PATH, ...env }, encoding: 'utf8' });
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, message);
    }
  });
});
