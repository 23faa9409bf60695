/**
 * The shapes /api/mails returns (API.md "Mails", snake_case): a submission (draft or sent) as a
 * list entry, and in full with its bodies, attachments and per-recipient delivery state from
 * `outbound` and `delivery_events`. Pure functions over rows; MailsService loads the rows.
 */
import type { Attachment, DeliveryEvent, Message, Outbound, OutboundStatus, Submission } from '../db/types.js';
import type { ParsedAddress } from './address-validation.js';

/** What a draft keeps in `submissions.draft` until it is sent (its attachments live with its Drafts copy). */
export interface DraftFields {
  from: ParsedAddress;
  to: ParsedAddress[];
  cc: ParsedAddress[];
  bcc: ParsedAddress[];
  subject: string;
  text: string | null;
  html: string | null;
  in_reply_to: string | null;
  references: string[];
  attachment_count: number;
}

export interface MailSummary {
  id: string;
  status: 'draft' | 'submitted';
  source: string;
  from: string;
  to: string[];
  cc: string[];
  bcc: string[];
  subject: string;
  message_id: string | null;
  created_at: Date;
  submitted_at: Date | null;
}

export interface RecipientView {
  address: string;
  status: OutboundStatus;
  attempts: number;
  last_reply: string | null;
  route: string | null;
  next_attempt_at: Date | null;
  sent_at: Date | null;
  last_event: string | null;
  events: { id: string; provider: string; event: string; occurred_at: Date; payload: unknown }[];
}

export interface MailView extends MailSummary {
  text: string | null;
  html: string | null;
  /** The copy in the sender's Drafts (a draft) or Sent (a sent mail) folder. */
  stored_message_id: string | null;
  attachments: { id: string; filename: string | null; content_type: string; size: number }[];
  recipients: RecipientView[];
}

export function mailSummary(s: Submission): MailSummary {
  return {
    id: s.id,
    status: s.status,
    source: s.source,
    from: s.from_address,
    to: s.to_addresses,
    cc: s.cc_addresses,
    bcc: s.bcc_addresses,
    subject: s.subject,
    message_id: s.message_id,
    created_at: s.created_at,
    submitted_at: s.submitted_at,
  };
}

export function mailView(s: Submission, stored: Message | null, attachments: Attachment[], outbound: Outbound[], events: DeliveryEvent[]): MailView {
  const draft = s.status === 'draft' ? (s.draft as DraftFields | null) : null;
  return {
    ...mailSummary(s),
    text: draft ? draft.text : (stored?.text_body ?? null),
    html: draft ? draft.html : (stored?.html_body ?? null),
    stored_message_id: s.stored_message_id,
    attachments: attachments.map((a) => ({ id: a.id, filename: a.filename, content_type: a.content_type, size: Number(a.size) })),
    recipients: outbound.map((o) => ({
      address: o.rcpt_to,
      status: o.status,
      attempts: o.attempts,
      last_reply: o.last_reply,
      route: o.route,
      // only a recipient still waiting has a next attempt
      next_attempt_at: o.status === 'queued' || o.status === 'deferred' ? o.next_attempt_at : null,
      sent_at: o.sent_at,
      last_event: o.last_event,
      events: events
        .filter((e) => e.outbound_id === o.id)
        .map((e) => ({ id: e.id, provider: e.provider, event: e.event, occurred_at: e.occurred_at, payload: e.payload })),
    })),
  };
}
