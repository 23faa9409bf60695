/** Placeholder: replaced by the page's implementation. */
export function AuditPage() {
  return <p>AuditPage</p>;
}
