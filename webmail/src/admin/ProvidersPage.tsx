/** Placeholder: replaced by the page's implementation. */
export function ProvidersPage() {
  return <p>ProvidersPage</p>;
}
