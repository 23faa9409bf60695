/**
 * Per-session command limits that smtp-server does not enforce on its own, modelled on Postfix:
 * - junk commands (smtpd_junk_command_limit): NOOP, RSET, VRFY, HELP and ETRN cost the client
 *   nothing and keep a session busy forever; after SMTP_JUNK_COMMAND_LIMIT of them the session
 *   gets 421 4.7.0 and is closed.
 * - errors (smtpd_hard_error_limit): every 5xx reply counts (unknown recipients, relay denied,
 *   bad syntax, bad sequence), so a client harvesting addresses with endless RCPTs, or sending
 *   junk after RCPTs that never reach DATA, is cut after SMTP_ERROR_LIMIT of them. 4xx replies
 *   do not count: a legitimate client sending more than MAX_RECIPIENTS gets a 452 for each extra
 *   recipient and must still be able to send the message to the rest.
 * Each cut is reported to the listener's metrics probe (reason junk_commands or error_limit).
 * Both counters restart after each delivered message, as smtp-server does for unrecognized
 * commands (which it already cuts after 10), so a long legitimate session is never cut. Line
 * length is bounded by smtp-server itself (16 KB, then 421).
 *
 * smtp-server has no per-command hook, so this wraps SMTPConnection's command dispatcher and
 * its send (through wrapConnectionSend) once; the limits of each listener are looked up by its
 * server, so listeners with different limits can share a process.
 */
import type { SMTPServer } from 'smtp-server';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import { wrapConnectionSend } from './enhanced-codes.js';

export interface CommandLimits {
  /** NOOP/RSET/VRFY/HELP/ETRN allowed between two delivered messages. */
  junkCommands: number;
  /** 5xx replies allowed between two delivered messages. */
  errors: number;
  /** Reports each session cut (metrics: mailserver_smtp_rejects_total). */
  onCut?: (reason: CutReason) => void;
}

export type CutReason = 'junk_commands' | 'error_limit';

interface Counter {
  junk: number;
  errors: number;
  // the connection's delivered-message count when the counters last restarted
  transactions: number;
}

interface ConnectionState {
  _server: object;
  _transactionCounter: number;
}

type OnCommand = (this: SMTPConnection, command: Buffer, callback?: () => void) => unknown;

const JUNK_COMMANDS = new Set(['NOOP', 'RSET', 'VRFY', 'HELP', 'ETRN']);
const limitsByServer = new WeakMap<object, CommandLimits>();
const counters = new WeakMap<object, Counter>();
let installed = false;

/** Applies `limits` to every connection of `server`. */
export function limitCommands(server: SMTPServer, limits: CommandLimits): void {
  install();
  limitsByServer.set(server, limits);
}

function install(): void {
  if (installed) return;
  installed = true;
  const proto = SMTPConnection.prototype as unknown as { _onCommand: OnCommand };
  const dispatch = proto._onCommand;
  proto._onCommand = function onCommand(this: SMTPConnection, command, callback) {
    const state = this as unknown as ConnectionState;
    const limits = limitsByServer.get(state._server);
    if (limits && JUNK_COMMANDS.has(commandName(command))) {
      const counter = counterOf(state);
      counter.junk += 1;
      if (counter.junk > limits.junkCommands) {
        // as smtp-server does for unrecognized commands: the 421 closes, nothing more is read
        limits.onCut?.('junk_commands');
        this.send(421, '4.7.0 Too many NOOP, RSET, VRFY or HELP commands, closing connection');
        return undefined;
      }
    }
    return dispatch.call(this, command, callback);
  };
  wrapConnectionSend((original) => function send(this: SMTPConnection, code, data, context) {
    original.call(this, code, data, context);
    const state = this as unknown as ConnectionState;
    const limits = limitsByServer.get(state._server);
    if (!limits || code < 500) return;
    const counter = counterOf(state);
    counter.errors += 1;
    if (counter.errors !== limits.errors) return;
    limits.onCut?.('error_limit');
    original.call(this, 421, '4.7.0 Too many errors, closing connection', false);
  });
}

function commandName(command: Buffer): string {
  const line = command.toString('latin1', 0, Math.min(command.length, 8));
  return (line.split(/[ \r\n]/, 1)[0] ?? '').toUpperCase();
}

function counterOf(state: ConnectionState): Counter {
  let counter = counters.get(state);
  if (!counter || counter.transactions !== state._transactionCounter) {
    counter = { junk: 0, errors: 0, transactions: state._transactionCounter };
    counters.set(state, counter);
  }
  return counter;
}
