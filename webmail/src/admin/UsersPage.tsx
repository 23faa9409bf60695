/** Placeholder: replaced by the page's implementation. */
export function UsersPage() {
  return <p>UsersPage</p>;
}
