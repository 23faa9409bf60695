/**
 * /api/smtp/* (API.md "Per-user SMTP settings", exact shapes of the original design): any
 * authenticated user reads, saves, removes and tests their own outgoing SMTP server. The body
 * schema checks the shape (host well formed, port 1–65535, user and pass non-empty); the SSRF
 * policy, encryption, auditing and the connection test live in services/smtp-settings.service.ts.
 */
import { z } from 'zod';
import { isPlausibleHost } from '../../services/host-guard.js';
import type { SmtpSettingsCaller, SmtpSettingsService } from '../../services/smtp-settings.service.js';
import type { Caller } from '../middleware/authenticate.js';
import { defineRoute, type RouteDeps } from '../route.js';

/** Longest user name or password accepted; real ones are far shorter, this bounds what we store. */
const MAX_CREDENTIAL_LENGTH = 1024;

const settingsBody = z.strictObject({
  host: z.string().trim().min(1, 'is required').max(255).refine(isPlausibleHost, 'must be a host name or an IP address'),
  port: z.number().int('must be a whole number').min(1, 'must be 1–65535').max(65535, 'must be 1–65535'),
  secure: z.boolean().optional(),
  user: z.string().min(1, 'is required').max(MAX_CREDENTIAL_LENGTH),
  pass: z.string().min(1, 'is required').max(MAX_CREDENTIAL_LENGTH),
});

function self(caller: Caller | null): SmtpSettingsCaller {
  return { userId: caller!.userId, tenantId: caller!.tenantId, email: caller!.email };
}

export function registerSmtpSettingsRoutes(deps: RouteDeps, smtp: SmtpSettingsService): void {
  const base = { tag: 'smtp', auth: 'user' as const };
  defineRoute(
    deps,
    {
      ...base,
      method: 'get',
      path: '/api/smtp/settings',
      summary: "The caller's own SMTP server {host, port, secure, user, hasPassword, isGlobal}; with none, isGlobal and the global relay's host and port (or nulls). Never a password",
      responses: { 200: { description: '{host, port, secure, user, hasPassword, isGlobal}' } },
    },
    async ({ caller }) => ({ status: 200, body: await smtp.getSettings(self(caller)) }),
  );
  defineRoute(
    deps,
    {
      ...base,
      method: 'post',
      path: '/api/smtp/settings',
      summary: 'Save the caller\'s own SMTP server; secure defaults to true on port 465 (otherwise STARTTLS is required). Private and loopback hosts are refused',
      body: settingsBody,
      responses: { 200: { description: '{message, settings: {host, port, secure, user, updatedAt, updatedBy}}' } },
    },
    async ({ body, caller, ip }) => ({ status: 200, body: await smtp.saveSettings(self(caller), body, ip) }),
  );
  defineRoute(
    deps,
    {
      ...base,
      method: 'delete',
      path: '/api/smtp/settings',
      summary: "Remove the caller's own SMTP server; mail then goes out by the tenant's or the global route",
      responses: { 200: { description: '{message}' } },
    },
    async ({ caller, ip }) => ({ status: 200, body: await smtp.deleteSettings(self(caller), ip) }),
  );
  defineRoute(
    deps,
    {
      ...base,
      method: 'post',
      path: '/api/smtp/test',
      summary: 'Try an SMTP server without saving it: connect, EHLO, STARTTLS, AUTH (10 s limit). A failed test is a 200 with success: false',
      body: settingsBody,
      responses: { 200: { description: '{success: true, message} or {success: false, error}' } },
    },
    async ({ body }) => ({ status: 200, body: await smtp.testSettings(body) }),
  );
}
