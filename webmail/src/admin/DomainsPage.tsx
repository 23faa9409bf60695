/** Placeholder: replaced by the page's implementation. */
export function DomainsPage() {
  return <p>DomainsPage</p>;
}
