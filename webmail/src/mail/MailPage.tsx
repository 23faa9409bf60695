/** Placeholder: replaced by the page's implementation. */
export function MailPage({ folder, messageId }: { folder: string; messageId: string | null }) {
  return <p>{folder} {messageId}</p>;
}
