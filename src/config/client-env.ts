/**
 * The environment of the operator tools that are not the server (scripts/smtp-test-client): they
 * cannot load the server's Config (it wants a database), and src/config/ stays the only reader of
 * process.env. Each tool's variables are listed here by name.
 */

/** smtp-test-client: the AUTH password, so it need not be on the command line. */
export function smtpTestClientEnv(): { SMTP_TEST_PASSWORD?: string } {
  return { SMTP_TEST_PASSWORD: process.env.SMTP_TEST_PASSWORD };
}
